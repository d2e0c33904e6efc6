"""What one training step on one list should cost, per method: token counts and a FLOP model.

The predicted speed-ups of the throughput tables and the dotted lines of the scaling plot. Pure
arithmetic: no torch, no model.
"""

from __future__ import annotations

SHARED = ("ours", "ours_packed", "ours_segments")
"""The shared-prompt methods: P + N*R tokens per list, reference log-probs precomputed once."""


def pairs_of(n: int, which: str) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs of one list whose response i is ranked i-th."""
    if which == "all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if which == "bw":
        return [(0, n - 1)]
    raise ValueError(which)


def token_counts(method: str, p: int, r: int, n: int) -> dict:
    """Tokens one list costs per training step: through forward+backward, and forward-only (reference)."""
    if method in SHARED:
        return {"policy_tokens": p + n * r, "reference_tokens": 0, "precompute_tokens": p + n * r, "rows": 1}
    if method == "naive":
        return {"policy_tokens": n * (p + r), "reference_tokens": n * (p + r), "precompute_tokens": 0, "rows": n}
    pairs = len(pairs_of(n, "all" if method == "trl_all" else "bw"))
    return {"policy_tokens": 2 * pairs * (p + r), "reference_tokens": 2 * pairs * (p + r), "precompute_tokens": 0,
            "rows": 2 * pairs}


def token_cost(method: str, p: int, r: int, n: int, k: float) -> float:
    """Per-step cost in forward-token units: k * (forward+backward tokens) + 1 * (reference tokens)."""
    c = token_counts(method, p, r, n)
    return k * c["policy_tokens"] + c["reference_tokens"]


def predicted_speedup(method: str, p: int, r: int, n: int, k: float) -> float:
    """How much faster ours should be than `method` if time followed token counts."""
    return token_cost(method, p, r, n, k) / token_cost("ours", p, r, n, k)


# SmolLM2-135M: 30 layers, hidden 576, 9 query / 3 key-value heads of 64, MLP 1536, vocabulary 49152.
SMOLLM2_DIMS = {"layers": 30, "hidden": 576, "kv": 192, "mlp": 1536, "vocab": 49152}


def flop_model(method: str, p: int, r: int, n: int, dims: dict = SMOLLM2_DIMS) -> float:
    """Multiply-adds of one training step on one list: a refinement of the token counts.

    Three parts, each with its own backward factor (LoRA: frozen weights get no weight gradient):
      body   every token through the decoder's linear layers; backward = 1 forward (input grads);
      head   the 49k-word output layer on response tokens only (N*R in every method), x2: ours and
             naive form the frozen head's input gradient in forward (logits, then softmax @ W),
             TRL runs the head forward and its input-gradient backward;
      attn   query-key pairs x 2 (scores and weighted values) x hidden; backward ~3 forwards (flash
             kernel recomputes the scores). Ours (prompt_cache): P^2 / 2 causal prompt pairs, then
             each response row's R queries over P cached keys and its own R/2 (causal). The packed
             row pays (P+N*R)^2 pairs: a dense block mask is not skipped by the kernel. Plain rows
             are causal: (P+R)^2 / 2 each.
    Reference forwards (naive, TRL) cost 1x of each part.
    """
    d, layers = dims["hidden"], dims["layers"]
    body_tok = layers * (2 * d * d + 2 * d * dims["kv"] + 3 * d * dims["mlp"])
    head_tok = d * dims["vocab"]
    pair = layers * 2 * d
    if method in SHARED:
        tokens, head_tokens, head_x = p + n * r, n * r, 2
        pairs = (p + n * r) ** 2 if method == "ours_packed" else p * p / 2 + n * r * (p + r / 2)
        return 2 * tokens * body_tok + head_x * head_tokens * head_tok + 4 * pairs * pair
    rows = {"naive": n, "trl_all": 2 * len(pairs_of(n, "all")), "trl_bw": 2}[method]
    head_x = 2
    body = rows * (p + r) * body_tok
    head = rows * r * head_tok
    attn = rows * (p + r) ** 2 / 2 * pair
    return (2 * body + head_x * head + 4 * attn) + (body + head + attn)


def predicted_speedup_flops(method: str, p: int, r: int, n: int) -> float:
    return flop_model(method, p, r, n) / flop_model("ours", p, r, n)
