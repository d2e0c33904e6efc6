"""The reference pass (no grad, batches of lists) on the demo's training lists, per layout, round-robin.

    python bench/reference_layouts.py                           # 48 lists, batches of 8, fp32
    python bench/reference_layouts.py --lists 96 --tag reference_layouts_96

Training computes the reference log-probs of every list once before its first step
(lambda_dpo.reference.compute_reference_logps, `reference_batch_size` lists per forward) and
evaluation scores held-out lists the same way, so this pass is a fixed share of every run (a third
of the demo's training stage). Its lists are real ones: prompts and responses of different lengths,
padded to the longest list of each batch. Layouts: prompt_cache (two calls per batch), packed (one
row per list, attention under a dense block mask over the padded row) and packed with segment
attention (lambda_dpo.segment_attention: the same row, attention over each list's own segments).
Every layout's log-probs are checked against prompt_cache's before timing. Results:
bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from round_robin import add_common_args, environment, medians, parse_and_start, round_robin, save  # noqa: E402

SETTINGS = ("prompt_cache", "packed", "packed_segments")
DEMO_TRAIN = ROOT / "src" / "lambda_dpo" / "resources" / "demo" / "train.jsonl"


def demo_lists(tokenizer, count: int):
    """The first `count` demo training lists, tokenised with the example config's length budget."""
    from lambda_dpo.data import load_lists
    from lambda_dpo.tokenization import tokenize_lists

    lists, _ = load_lists(str(DEMO_TRAIN))
    tokenized, _ = tokenize_lists(tokenizer, lists[:count], max_prompt_length=256, max_response_length=128)
    return tokenized


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lists", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8, help="lists per forward (reference_batch_size)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    add_common_args(ap, "reference_layouts")
    args = parse_and_start(ap, argv)
    import torch

    from lambda_dpo.models import load_model, load_tokenizer
    from lambda_dpo.reference import compute_reference_logps
    from lambda_dpo.segment_attention import segmented

    model = load_model(args.model, dtype=args.dtype).eval()
    lists = demo_lists(load_tokenizer(args.model), args.lists)
    row_tokens = sorted(len(t.prompt_ids) + sum(map(len, t.response_ids)) for t in lists)

    def score(setting):
        layout = "prompt_cache" if setting == "prompt_cache" else "packed"
        with segmented(model) if setting == "packed_segments" else contextlib.nullcontext():
            return compute_reference_logps(model, lists, batch_size=args.batch_size, layout=layout, desc=setting)

    expected = torch.cat(score("prompt_cache"))
    errors = {s: float((torch.cat(score(s)) - expected).abs().max()) for s in SETTINGS[1:]}

    def timed(setting):
        start = time.perf_counter()
        score(setting)
        return [(time.perf_counter() - start) / len(lists)]

    times = round_robin(SETTINGS, timed, args.rounds, f"{args.lists} lists")
    med = medians(times)
    record = {**environment(args), "dtype": args.dtype, "lists": len(lists), "batch_size": args.batch_size,
              "median_row_tokens": row_tokens[len(row_tokens) // 2], "max_row_tokens": row_tokens[-1],
              "rounds": args.rounds, "s_per_list": times, "median_s_per_list": med,
              "max_abs_logp_diff_vs_prompt_cache": errors}
    lines = [f"# Reference pass on {len(lists)} demo lists, batches of {args.batch_size}, {args.dtype}, "
             f"{args.threads} threads ({args.rounds} rounds, medians)", "",
             f"Rows (prompt + all responses): median {record['median_row_tokens']}, max {row_tokens[-1]} tokens.", "",
             "| layout | s per list | prompt_cache over it | max abs log-prob diff vs prompt_cache |",
             "|---|---|---|---|"]
    for s in SETTINGS:
        diff = f"{errors[s]:.1e}" if s in errors else "-"
        lines.append(f"| {s} | {med[s]:.3f} | {med['prompt_cache'] / med[s]:.2f}x | {diff} |")
    save(args, record, lines)
    return record


if __name__ == "__main__":
    main()
