"""Shared prompt vs one row per response, fp32 and mixed, interleaved in one process (steady state).

    python bench/bench_layouts.py                       # 256/128 and 128/64, 3 rounds
    python bench/bench_layouts.py --configs 256x128 --rounds 4 --tag layouts_256
    python bench/bench_layouts.py --dtypes float32 --methods ours,ours_packed,ours_segments,naive

bench_throughput.py runs each method in a fresh process, for a clean peak-memory figure, and
times 2-3 steps after one warm-up: the first steps of a process also pay for memory touched for
the first time, which costs a naive step (3x the activations) more than ours, and the machine's
drift between processes lands on one method only. This script times both layouts in the same
process, round-robin (round_robin.py), on one SmolLM2-135M LoRA-r16 model per precision: one
list per AdamW step, N = 4; prompt_cache reads reference log-probs computed before timing, naive
runs its reference forward inside every step (as in listwise_steps.py). Each precision runs with
the attention kernel `attn_implementation: auto` picks for it (sdpa in fp32, eager in bf16 here), or
the one --attn names. Methods: ours (prompt_cache), ours_packed (packed, dense block mask),
ours_segments (packed, segment attention: what training runs for the packed layout), naive. Leave
bfloat16 out of --dtypes on a CPU without avx512_bf16 / AMX (emulated there; `auto` picks fp32).
Prints the medians and the two ratios issue 12 sets targets for, beside the FLOP model's
prediction (cost_model.predicted_speedup_flops). Results: bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
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
SHORT = {"float32": "fp32", "bfloat16": "mixed"}


def ratios(med: dict, methods: list[str], dtypes: tuple[str, ...] = DTYPES) -> dict:
    """The speed-ups the efficiency issue sets targets for, from {"dtype/method": median s}."""
    out = {}
    for d in dtypes:
        if {"ours", "naive"} <= set(methods):
            out[f"naive_over_prompt_cache_{SHORT[d]}"] = med[f"{d}/naive"] / med[f"{d}/ours"]
        if {"ours", "ours_packed"} <= set(methods):
            out[f"packed_over_prompt_cache_{SHORT[d]}"] = med[f"{d}/ours"] / med[f"{d}/ours_packed"]
        if {"ours_packed", "naive"} <= set(methods):
            out[f"naive_over_packed_{SHORT[d]}"] = med[f"{d}/naive"] / med[f"{d}/ours_packed"]
        if {"ours_segments", "naive"} <= set(methods):
            out[f"naive_over_segments_{SHORT[d]}"] = med[f"{d}/naive"] / med[f"{d}/ours_segments"]
        if {"ours_segments", "ours_packed"} <= set(methods):
            out[f"packed_over_segments_{SHORT[d]}"] = med[f"{d}/ours_packed"] / med[f"{d}/ours_segments"]
        if {"ours", "ours_segments"} <= set(methods):
            out[f"prompt_cache_over_segments_{SHORT[d]}"] = med[f"{d}/ours"] / med[f"{d}/ours_segments"]
    if set(DTYPES) <= set(dtypes):
        if "naive" in methods:
            out["mixed_over_fp32_naive"] = med["float32/naive"] / med["bfloat16/naive"]
        if "ours" in methods:
            out["mixed_over_fp32_prompt_cache"] = med["float32/ours"] / med["bfloat16/ours"]
        if "ours_segments" in methods:
            out["mixed_over_fp32_segments"] = med["float32/ours_segments"] / med["bfloat16/ours_segments"]
    return out


NAMES = {"ours": "prompt_cache", "ours_packed": "packed", "ours_segments": "packed+segments", "naive": "naive"}
TARGETS = {"naive_over_prompt_cache_fp32": " (target 2.4x)", "mixed_over_fp32_prompt_cache": " (target 1.6x)"}


def table(results: dict, methods: list[str], dtypes: tuple[str, ...], n: int) -> list[str]:
    """Markdown: one row per P/R, the median step of each precision x layout, then every ratio of
    `ratios` (targeted ones in bold) and the FLOP model's naive over prompt_cache."""
    ratio_keys = [k for k in next(iter(results.values())) if "_over_" in k and k != "flop_model_naive_over_prompt_cache"]
    head = (["P/R", "packed row (P + N*R)"] + [f"{SHORT[d]} {NAMES[m]}" for d in dtypes for m in methods]
            + [k.replace("_over_", " over ").replace("_", " ") + TARGETS.get(k, "") for k in ratio_keys]
            + ["FLOP model, naive over prompt_cache"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cfg, res in results.items():
        p, r = map(int, cfg.split("x"))
        cells = [cfg.replace("x", "/"), str(p + n * r)]
        cells += [f"{res['median_s'][f'{d}/{m}']:.2f}" for d in dtypes for m in methods]
        cells += [f"**{res[k]:.2f}x**" if k in TARGETS else f"{res[k]:.2f}x" for k in ratio_keys]
        cells.append(f"{res['flop_model_naive_over_prompt_cache']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="256x128,128x64", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds, 2 timed steps each (default 3)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--methods", default="ours,naive",
                    help="listwise_steps methods: ours (prompt_cache), ours_packed (dense block mask), ours_segments "
                         "(packed, segment attention), naive (default %(default)s)")
    ap.add_argument("--dtypes", default=",".join(DTYPES),
                    help="model precisions (default %(default)s; bfloat16 is the mixed mode, which a CPU "
                         "without avx512_bf16 / AMX emulates: measure it only where auto would pick it)")
    ap.add_argument("--attn", default="auto", help="attention kernel: auto (what training picks per precision), "
                    "sdpa or eager (default %(default)s)")
    ap.add_argument("--retable", action="store_true",
                    help="rewrite bench/results/<tag>.md from its .json (ratios recomputed), timing nothing")
    add_common_args(ap, "layouts")
    args = parse_and_start(ap, argv)
    if args.retable:
        record = json.loads((Path(args.out) / f"{args.tag}.json").read_text())
        record.setdefault("methods", sorted({k.split("/")[1] for r in record["results"].values() for k in r["median_s"]},
                                            key=list(NAMES).index))
        record.setdefault("dtypes", [d for d in DTYPES if any(k.startswith(d + "/") for r in record["results"].values()
                                                               for k in r["median_s"])])
        record.setdefault("kernels", next(iter(record["results"].values()))["kernels"])
        record.setdefault("attn", "not recorded")  # older runs; the kernels themselves were
        save(args, record, report(record))
        return record
    from lambda_dpo.precision import resolve_attn_implementation

    methods, dtypes = args.methods.split(","), tuple(args.dtypes.split(","))
    models = lora_models(args, dtypes)
    results, kernels = {}, {}
    for cfg in args.configs.split(","):
        p, r = map(int, cfg.split("x"))
        lists = make_lists(p, r, args.n, 3, models["float32"].config.vocab_size)
        for dtype, model in models.items():
            kernels[dtype] = resolve_attn_implementation(args.attn, dtype, "cpu", p + r)[0]
            model.set_attn_implementation(kernels[dtype])

        def run(setting):
            dtype, method = setting
            return time_listwise_steps(models[dtype], lists, method, warmup=1, steps=2)["step_s"]

        times = round_robin([(d, m) for d in dtypes for m in methods], run, args.rounds, cfg)
        med = {f"{d}/{m}": s for (d, m), s in medians(times).items()}
        results[cfg] = {"median_s": med, "steps_s": {f"{d}/{m}": t for (d, m), t in times.items()},
                        "kernels": dict(kernels), **ratios(med, methods, dtypes),
                        "flop_model_naive_over_prompt_cache": predicted_speedup_flops("naive", p, r, args.n)}
    record = {**environment(args), "n": args.n, "rounds": args.rounds, "attn": args.attn, "methods": methods,
              "dtypes": list(dtypes), "kernels": kernels, "results": results}
    save(args, record, report(record))
    return record


def report(record: dict) -> list[str]:
    """The markdown of a run's record (its medians; ratios recomputed, so a table gains new ratio
    columns without rerunning: --retable)."""
    methods, dtypes = record["methods"], tuple(record["dtypes"])
    results = {cfg: {**res, **ratios(res["median_s"], methods, dtypes)} for cfg, res in record["results"].items()}
    lines = [f"# Layouts x precision, interleaved ({record['threads']} threads, N = {record['n']}, LoRA r16, "
             f"{record['rounds']} rounds x 2 timed steps, medians, s per list)", ""]
    lines += table(results, methods, dtypes, record["n"])
    lines.append("")
    lines.append(f"Kernels (attn_implementation {record['attn']}): "
                 + ", ".join(f"{d}: {k}" for d, k in record["kernels"].items()))
    lines.append(f"CPU: {record.get('cpu_model', 'unknown')}, bf16 instructions: {record.get('cpu_bf16') or 'none'}; "
                 f"OpenMP environment: {record.get('openmp', 'not recorded')}")
    return lines


if __name__ == "__main__":
    main()
