"""Recompute a finished demo run's listwise figures from its saved models, without retraining.

    python scripts/rescore_listwise.py runs/demo-full-100-t96 --models runs/demo-full-100/models \
        --out runs/demo-full-100-t96-rescored

Reads RUN/metrics.json, evaluates every trained model (MODELS/<method>-seed<s>) on the demo's
eval.jsonl with `lambda-dpo evaluate`'s function (the run's own settings, the reference as in
training) and writes OUT/metrics.json, report.md and plots with those listwise figures; everything
else is copied. It prints the largest change per model. The lists, batches and settings are the
run's; in fp32 the figures move only by the precision they are stored in (runs before the float64
fix stored float32 means: 36 of 40 lists read 0.89999998, which failed a ">= 0.90" target), in
bf16 also by numeric noise (docs/steering.md, "How precise the figures are"). The base model's figures
(the untrained model given the same text) are copied as they are. `--dtype float32` scores the
bf16-trained models in fp32, whose figures do not move with the batch's padding.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from lambda_dpo.demo.data import demo_data_dir
from lambda_dpo.evaluate_saved import evaluate_saved
from lambda_dpo.evaluation.steering_report import save_demo_outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a demo output directory (its metrics.json)")
    ap.add_argument("--models", type=Path, required=True, help="the run's trained models (<method>-seed<s>)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"],
                    help="score in this dtype (default: the one each model trained in); float32 makes the "
                         "figures independent of the batch's padding (scripts/eval_noise.py)")
    ap.add_argument("--methods", nargs="+", help="only these methods (the others' figures are copied)")
    args = ap.parse_args()
    started = time.time()
    m = json.loads((args.run / "metrics.json").read_text())
    new = copy.deepcopy(m)
    data = Path(str(demo_data_dir())) / "eval.jsonl"
    for name, seeds in m["runs"].items():
        if args.methods and name not in args.methods:
            continue
        for seed, run in seeds.items():
            got = evaluate_saved(args.models / f"{name}-seed{seed}", data, dtype=args.dtype,
                                 max_lists=m["budget"]["eval_lists"])
            old = run["listwise"]
            change = max(abs(got["metrics"][k] - v) for k, v in old.items() if k in got["metrics"])
            print(f"{time.time() - started:6.0f} s  {name} seed {seed}: {got['n_lists']} lists, "
                  f"largest change {change:.2e}", flush=True)
            new["runs"][name][seed]["listwise"] = got["metrics"]
    flags = ([f"--dtype {args.dtype}"] if args.dtype else []) + \
        ([f"--methods {' '.join(args.methods)}"] if args.methods else [])
    new["listwise_rescored"] = {"from": str(args.run), "models": str(args.models), "data": str(data),
                                "dtype": args.dtype, "methods": args.methods,
                                "command": "python scripts/rescore_listwise.py " + " ".join(
                                    [str(args.run), "--models", str(args.models), "--out", str(args.out), *flags])}
    save_demo_outputs(new, args.out)
    print(f"wrote {args.out}/report.md ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
