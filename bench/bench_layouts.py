"""Shared prompt vs one row per response, fp32 and mixed, interleaved in one process (steady state).

    python bench/bench_layouts.py                       # 256/128 and 128/64, 3 rounds
    python bench/bench_layouts.py --configs 256x128 --rounds 4 --tag layouts_256

bench_throughput.py runs each method in a fresh process, for a clean peak-memory figure, and
times 2-3 steps after one warm-up: the first steps of a process also pay for memory touched for
the first time, which costs a naive step (3x the activations) more than ours, and the machine's
drift between processes lands on one method only. This script times both layouts in the same
process, round-robin (round_robin.py), on one SmolLM2-135M LoRA-r16 model per precision: one
list per AdamW step, N = 4; prompt_cache reads reference log-probs computed before timing, naive
runs its reference forward inside every step (as in listwise_steps.py). Each precision runs with
the attention kernel `attn_implementation: auto` picks for it (sdpa in fp32, eager in bf16 here).
Prints the medians and the two ratios issue 12 sets targets for, beside the FLOP model's
prediction (cost_model.predicted_speedup_flops). Results: bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


from cost_model import predicted_speedup_flops  # noqa: E402
from listwise_steps import time_listwise_steps  # noqa: E402
from round_robin import add_common_args, environment, lora_models, medians, parse_and_start, round_robin, save  # noqa: E402,E501
from workload import make_lists  # noqa: E402

DTYPES = ("float32", "bfloat16")


def ratios(med: dict, methods: list[str]) -> dict:
    """The speed-ups the efficiency issue sets targets for, from {"dtype/method": median s}."""
    out = {}
    if {"ours", "naive"} <= set(methods):
        out.update(naive_over_prompt_cache_fp32=med["float32/naive"] / med["float32/ours"],
                   naive_over_prompt_cache_mixed=med["bfloat16/naive"] / med["bfloat16/ours"],
                   mixed_over_fp32_naive=med["float32/naive"] / med["bfloat16/naive"])
    if "ours" in methods:
        out["mixed_over_fp32_prompt_cache"] = med["float32/ours"] / med["bfloat16/ours"]
    if {"ours", "ours_packed"} <= set(methods):
        out.update(packed_over_prompt_cache_fp32=med["float32/ours"] / med["float32/ours_packed"],
                   packed_over_prompt_cache_mixed=med["bfloat16/ours"] / med["bfloat16/ours_packed"])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="256x128,128x64", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds, 2 timed steps each (default 3)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--methods", default="ours,naive",
                    help="listwise_steps methods: ours (prompt_cache), ours_packed, naive (default %(default)s)")
    add_common_args(ap, "layouts")
    args = parse_and_start(ap, argv)
    from lambda_dpo.models import resolve_attn_implementation

    methods = args.methods.split(",")
    models = lora_models(args)
    results, kernels = {}, {}
    for cfg in args.configs.split(","):
        p, r = map(int, cfg.split("x"))
        lists = make_lists(p, r, args.n, 3, models["float32"].config.vocab_size)
        for dtype, model in models.items():
            kernels[dtype] = resolve_attn_implementation("auto", dtype, "cpu", p + r)[0]
            model.set_attn_implementation(kernels[dtype])

        def run(setting):
            dtype, method = setting
            return time_listwise_steps(models[dtype], lists, method, warmup=1, steps=2)["step_s"]

        times = round_robin([(d, m) for d in DTYPES for m in methods], run, args.rounds, cfg)
        med = {f"{d}/{m}": s for (d, m), s in medians(times).items()}
        results[cfg] = {"median_s": med, "steps_s": {f"{d}/{m}": t for (d, m), t in times.items()},
                        "kernels": dict(kernels), **ratios(med, methods),
                        "flop_model_naive_over_prompt_cache": predicted_speedup_flops("naive", p, r, args.n)}
    record = {**environment(args), "n": args.n, "rounds": args.rounds, "results": results}
    lines = [f"# Layouts x precision, interleaved ({args.threads} threads, N = {args.n}, LoRA r16, "
             f"{args.rounds} rounds x 2 timed steps, medians, s per list)", ""]
    if {"ours", "naive"} <= set(methods):
        lines += ["| P/R | fp32 prompt_cache | fp32 naive | mixed prompt_cache | mixed naive | "
                  "prompt_cache over naive, fp32 (target 2.4x) | FLOP model | prompt_cache over naive, mixed | "
                  "mixed over fp32, prompt_cache (target 1.6x) | mixed over fp32, naive |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for cfg, res in results.items():
            m = res["median_s"]
            lines.append(f"| {cfg.replace('x', '/')} | {m['float32/ours']:.2f} | {m['float32/naive']:.2f} | "
                         f"{m['bfloat16/ours']:.2f} | {m['bfloat16/naive']:.2f} | "
                         f"**{res['naive_over_prompt_cache_fp32']:.2f}x** | "
                         f"{res['flop_model_naive_over_prompt_cache']:.2f}x | "
                         f"{res['naive_over_prompt_cache_mixed']:.2f}x | "
                         f"**{res['mixed_over_fp32_prompt_cache']:.2f}x** | "
                         f"{res['mixed_over_fp32_naive']:.2f}x |")
    if {"ours", "ours_packed"} <= set(methods):
        lines += ["", "| P/R | packed row (P + N*R) | fp32 prompt_cache | fp32 packed | mixed prompt_cache | "
                  "mixed packed | packed over prompt_cache, fp32 | packed over prompt_cache, mixed | "
                  "mixed over fp32, best layout of each |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for cfg, res in results.items():
            m = res["median_s"]
            p, r = map(int, cfg.split("x"))
            best = {d: min(m[f"{d}/ours"], m[f"{d}/ours_packed"]) for d in DTYPES}
            lines.append(f"| {cfg.replace('x', '/')} | {p + args.n * r} | {m['float32/ours']:.2f} | "
                         f"{m['float32/ours_packed']:.2f} | {m['bfloat16/ours']:.2f} | "
                         f"{m['bfloat16/ours_packed']:.2f} | {res['packed_over_prompt_cache_fp32']:.2f}x | "
                         f"{res['packed_over_prompt_cache_mixed']:.2f}x | "
                         f"{best['float32'] / best['bfloat16']:.2f}x |")
    lines.append("")
    lines.append("Kernels (attn_implementation auto): " + ", ".join(f"{d}: {k}" for d, k in kernels.items()))
    save(args, record, lines)
    return record


if __name__ == "__main__":
    main()
