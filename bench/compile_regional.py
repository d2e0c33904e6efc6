"""torch.compile on every decoder layer (regional compilation) vs plain eager PyTorch, per layout.

    python bench/compile_regional.py                              # packed and naive at 128/64, fp32
    python bench/compile_regional.py --methods ours,naive --configs 256x128 --tag compile_256

A lever tried against the per-call floor of the short-list step (the framework's cost per operator,
element-wise passes between the products): two SmolLM2-135M LoRA-r16 models in one process, one
with `layer.compile()` on each of its 30 decoder layers (one graph, reused by every layer), timed
round-robin (listwise_steps.time_listwise_steps, one list per AdamW step, N = 4). The first step of
each compiled method (compilation included) is reported apart. lambda-dpo does not compile: see
bench/README.md for what this measured. Results: bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from listwise_steps import time_listwise_steps  # noqa: E402
from round_robin import add_common_args, environment, lora_models, medians, parse_and_start, round_robin, save  # noqa: E402,E501
from workload import make_lists  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="128x64")
    ap.add_argument("--methods", default="ours_packed,naive")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--recompile-limit", type=int, default=128, help="torch._dynamo recompile_limit (default %(default)s)")
    add_common_args(ap, "compile_regional")
    args = parse_and_start(ap, argv)
    import torch._dynamo

    # Dynamo specialises on each layer's integer attributes (layer_idx), so the 30 layers compile
    # 30 graphs (x grad / no-grad); at the default limit of 8 the rest would silently run uncompiled.
    torch._dynamo.config.recompile_limit = args.recompile_limit
    torch._dynamo.config.accumulated_recompile_limit = max(args.recompile_limit * 4, 256)
    methods = args.methods.split(",")
    models = {"plain": lora_models(args, ("float32",))["float32"], "compiled": lora_models(args, ("float32",))["float32"]}
    for layer in models["compiled"].base_model.model.model.layers:
        layer.compile(dynamic=False)
    results = {}
    for cfg in args.configs.split(","):
        p, r = map(int, cfg.split("x"))
        lists = make_lists(p, r, args.n, 3, models["plain"].config.vocab_size)
        first = {}
        for method in methods:
            start = time.perf_counter()
            time_listwise_steps(models["compiled"], lists, method, warmup=0, steps=1)
            first[method] = time.perf_counter() - start
            print(f"{cfg} {method}: first compiled step (compilation included) {first[method]:.1f} s", flush=True)
        times = round_robin([(k, m) for m in methods for k in models],
                            lambda s: time_listwise_steps(models[s[0]], lists, s[1], warmup=1, steps=2)["step_s"],
                            args.rounds, cfg)
        med = {f"{k}/{m}": v for (k, m), v in medians(times).items()}
        results[cfg] = {"median_s": med, "first_compiled_step_s": first,
                        "steps_s": {f"{k}/{m}": t for (k, m), t in times.items()}}
    record = {**environment(args), "n": args.n, "rounds": args.rounds, "recompile_limit": args.recompile_limit,
              "results": results}
    lines = [f"# Regional torch.compile vs eager PyTorch (fp32, {args.threads} threads, N = {args.n}, LoRA r16, "
             f"{args.rounds} rounds x 2 timed steps, medians, s per list)", "",
             "| P/R | method | plain | compiled | compiled over plain | first compiled step (compiling) |",
             "|---|---|---|---|---|---|"]
    for cfg, res in results.items():
        m = res["median_s"]
        for method in methods:
            lines.append(f"| {cfg.replace('x', '/')} | {method} | {m[f'plain/{method}']:.2f} | "
                         f"{m[f'compiled/{method}']:.2f} | {m[f'plain/{method}'] / m[f'compiled/{method}']:.2f}x | "
                         f"{res['first_compiled_step_s'][method]:.0f} s |")
        if {"naive", "ours_packed"} <= set(methods):
            for k in ("plain", "compiled"):
                lines.append(f"| {cfg.replace('x', '/')} | naive over packed, {k} | | | "
                             f"{m[f'{k}/naive'] / m[f'{k}/ours_packed']:.2f}x | |")
    save(args, record, lines)
    return record


if __name__ == "__main__":
    main()
