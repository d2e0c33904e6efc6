"""How much a saved model's implicit rewards move with the evaluation batch (or the CPU thread
count), in bf16 and in fp32.

    python research/eval_noise.py runs/demo-full-100/models/lambda_dpo_fixed-seed0 [--batch-sizes 8 5]
    python research/eval_noise.py MODEL_DIR --dtypes bfloat16 --threads 2 1   # same batches, 2 vs 1 threads
    python research/eval_noise.py MODEL_DIR --dtypes bfloat16 --fp32-head     # bf16 body, fp32 logits

Scores every reply of the demo's eval.jsonl at every aspect's vertex (as `lambda-dpo evaluate`
does) twice per dtype, in batches of each size (so the padding differs), and prints: max and mean
|s_a - s_b| in nats, the reply pairs whose order differs, the (list, aspect) cases whose top-1 pick
differs, and the median gap between a list's two best rewards (the margin a numeric change must
cross to move top-1). fp32 is the yardstick: its differences are those of fp32 rounding. With
--threads A B, both scorings use the first batch size and torch runs them on A, then B threads (how
the products are split over threads changes their rounding too). --fp32-head computes the vocabulary
projection of the scored positions in fp32 (the bf16 hidden states and head weights upcast, autocast
off): how much of the noise is the logits' own bf16 rounding. A measurement hook on the scoring
module's no-grad path, not a library option. Appends one JSON line per dtype to --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lambda_dpo import logprobs
from lambda_dpo.demo.dataset import demo_data_dir
from lambda_dpo.evaluation.listwise import implicit_rewards
from lambda_dpo.evaluate_saved import prepare_saved


def rewards(prepared, batch_size):
    sm, collator, items, cfg, _ = prepared
    k = len(sm.aspects)
    out = [implicit_rewards(sm.model, collator, items, torch.eye(k)[i], batch_size, cfg.logprob_chunk_size,
                            cfg.score_type) for i in range(k)]
    mask = torch.zeros_like(out[0], dtype=torch.bool)
    for j, it in enumerate(items):
        mask[j, : len(it.tokens.response_ids)] = True
    return torch.stack(out), mask  # [K, L, N], [L, N]


def fp32_head_token_logps(hidden, head, targets):
    """`logprobs._token_logps` with the projection in fp32: `head` is the partial(F.linear, weight=,
    bias=) that `chunked_token_logps` passes on its no-grad path."""
    if not isinstance(head, functools.partial):
        raise SystemExit("--fp32-head needs a plain linear output layer (this model's is a module call)")
    weight, bias = head.keywords["weight"], head.keywords["bias"]
    with torch.autocast(hidden.device.type, enabled=False):
        logits = F.linear(hidden.float(), weight.float(), None if bias is None else bias.float())
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def compare(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> dict:
    m = mask.expand_as(a)
    diff = (a - b).abs()[m]
    pair = mask[:, :, None] & mask[:, None, :]
    order_a = torch.sign(a[..., :, None] - a[..., None, :])
    order_b = torch.sign(b[..., :, None] - b[..., None, :])
    flips = ((order_a != order_b) & pair).sum().item() // 2
    top_a = a.masked_fill(~m, float("-inf")).argmax(-1)
    top_b = b.masked_fill(~m, float("-inf")).argmax(-1)
    best2 = a.masked_fill(~m, float("-inf")).topk(2, dim=-1).values
    return {"max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item(), "pairs_reordered": flips,
            "pairs": (pair.sum().item() - mask.sum().item()) // 2 * a.shape[0],
            "top1_changed": (top_a != top_b).sum().item(), "cases": top_a.numel(),
            "median_top_gap": (best2[..., 0] - best2[..., 1]).median().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--data", default=str(Path(str(demo_data_dir())) / "eval.jsonl"))
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--batch-sizes", nargs=2, type=int, default=[8, 5])
    ap.add_argument("--fp32-head", action="store_true", help="the vocabulary projection in fp32 (bf16 body)")
    ap.add_argument("--threads", nargs=2, type=int, help="compare two torch thread counts instead of batch sizes")
    ap.add_argument("--out", default="research/steering-data/eval_noise.jsonl")
    args = ap.parse_args()
    if args.fp32_head:
        logprobs._token_logps = fp32_head_token_logps
    for dtype in args.dtypes:
        started = time.time()
        # loaded and reference-scored once (not through the cache with --fp32-head: it is keyed without it)
        prepared = prepare_saved(args.model_dir, args.data, dtype=dtype,
                                 reference_cache_dir=None if args.fp32_head else "auto")
        if args.threads:
            scored = []
            threads = torch.get_num_threads()
            for n in args.threads:
                torch.set_num_threads(n)
                scored.append(rewards(prepared, args.batch_sizes[0]))
            torch.set_num_threads(threads)
            (a, mask), (b, _) = scored
            varied = {"batch_sizes": args.batch_sizes[:1], "threads": args.threads}
            flag = f"--batch-sizes {args.batch_sizes[0]} {args.batch_sizes[0]} --threads " + " ".join(map(str, args.threads))
        else:
            (a, mask), (b, _) = (rewards(prepared, bs) for bs in args.batch_sizes)
            varied = {"batch_sizes": args.batch_sizes, "threads": [torch.get_num_threads()] * 2}
            flag = "--batch-sizes " + " ".join(map(str, args.batch_sizes))
        if args.fp32_head:
            flag += " --fp32-head"
        row = {"model_dir": str(args.model_dir), "data": args.data, "dtype": dtype, **varied,
               "head": "float32" if args.fp32_head else dtype,
               **compare(a, b, mask), "wall_s": round(time.time() - started, 1),
               "command": f"python research/eval_noise.py {args.model_dir} --dtypes {dtype} {flag}"}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
