"""What every method of the CPU benchmarks trains on: the methods, their shared settings, the data, the LoRA.

Synthetic lists of random token ids (exactly P prompt tokens, N responses of exactly R tokens,
fixed seed), the rank target those lists are trained towards, and the one LoRA every method
gets. Used by bench_throughput.py, bench_scaling.py (through its workers), bench_mixed_precision.py
and bench_gpu.py.
"""

from __future__ import annotations

import torch

METHODS = ("ours", "ours_packed", "ours_segments", "naive", "trl_all", "trl_bw")
LABELS = {
    "ours": "lambda-dpo (shared prompt, cached ref)",
    "ours_packed": "lambda-dpo, packed layout (dense mask)",
    "ours_segments": "lambda-dpo, packed by segment",
    "naive": "naive (per-response rows, ref every step)",
    "trl_all": "TRL DPOTrainer, all pairs",
    "trl_bw": "TRL DPOTrainer, best-vs-worst",
}
BETA = 0.1
LR = 1e-5
SEED = 0


def make_lists(prompt_len: int, response_len: int, n: int, n_lists: int, vocab_size: int, seed: int = SEED,
               low: int = 100) -> list[tuple[list[int], list[list[int]]]]:
    """`n_lists` synthetic lists: (P prompt ids, N responses of R ids), uniform in [low, vocab_size - 1).

    Ids below `low` are skipped so no special token (bos/eos/pad, chat markers) appears. Response i
    is ranked i-th (0 = best) by the targets built from these lists.
    """
    g = torch.Generator().manual_seed(seed)
    high = vocab_size - 1
    out = []
    for _ in range(n_lists):
        prompt = torch.randint(low, high, (prompt_len,), generator=g).tolist()
        responses = [torch.randint(low, high, (response_len,), generator=g).tolist() for _ in range(n)]
        out.append((prompt, responses))
    return out


def rank_target(n: int) -> torch.Tensor:
    """[1, n] target distribution p_i proportional to n - i (response 0 best): what ratings give."""
    w = torch.arange(n, 0, -1, dtype=torch.float32)
    return (w / w.sum())[None]


def lora_config(r: int = 16):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", bias="none",
                      task_type="CAUSAL_LM")


def add_lora(model, r: int = 16):
    from peft import get_peft_model

    torch.manual_seed(SEED)  # same LoRA init for every method
    return get_peft_model(model, lora_config(r))


def tokenized_lists(lists) -> list:
    """`make_lists` output -> lambda-dpo TokenizedLists (a placeholder prompt text; ids as given)."""
    from lambda_dpo.data.schema import PreferenceList
    from lambda_dpo.tokenization import TokenizedList

    out = []
    for prompt, responses in lists:
        src = PreferenceList(prompt=({"role": "user", "content": "synthetic"},),
                             responses=tuple(f"r{i}" for i in range(len(responses))), ratings={})
        out.append(TokenizedList(source=src, prompt=src.prompt, prompt_ids=tuple(prompt),
                                 response_ids=tuple(tuple(r) for r in responses)))
    return out
