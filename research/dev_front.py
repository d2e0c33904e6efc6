"""Tune steering on dev data only: train a recipe on the demo's training split minus a dev split, then run the
steering protocol on the dev lists' prompts and on the dev general questions, against the base model and any
control given the same lambda text.

    python research/dev_front.py ROW [key=value ...]            # train the steered model with these overrides
    python research/dev_front.py ROW key=@FILE.yaml             # a value read from a YAML file (e.g. lambda_table)
    python research/dev_front.py ROW --method dpo_best_worst     # a control (trained without lambda)
    python research/dev_front.py ROW --eval-only --control runs/dev/base_recipe/models/dpo_best_worst-seed0
    python research/dev_front.py --table                         # the rows so far

The dev split: 24 lists of the shipped train.jsonl chosen with random.Random(7) (the remaining 256 train;
`lambda_dpo.demo.dev_split`).
The dev prompt sets: those 24 lists' prompts (the demo's rule judges) and resources/ood/dev_questions.jsonl
(the length judges). eval.jsonl and resources/ood/questions.jsonl are never read. Each row appends its
figures to research/dev_front.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from lambda_dpo.demo.dataset import demo_data_dir
from lambda_dpo.demo.dev_split import write_dev_split
from lambda_dpo.demo.run import METHODS, PRESETS, STEERED, ood_questions_file, train_method
from lambda_dpo.evaluate_steering import evaluate_front
from lambda_dpo.generation import DECODINGS
from lambda_dpo.training.settings import saved_settings

ROOT = Path("runs/dev")
RESULTS = Path(__file__).with_name("dev_front.jsonl")
PAIR = ("conciseness", "informativeness")


def dev_split() -> tuple[Path, Path]:
    """runs/dev/train.jsonl and runs/dev/eval.jsonl (the 24 dev lists): `lambda_dpo.demo.dev_split`."""
    root = write_dev_split(ROOT)
    return root / "train.jsonl", root / "eval.jsonl"


def summary(result: dict) -> dict:
    """Per model: hypervolume, Spearman(w, words), mean words per weight, unseen-weight shortfalls."""
    out = {}
    for name, m in result["models"].items():
        st, sw = m["steerability"], m["sweep"]
        out[name] = {"hv": round(st["hypervolume"], 3), "rho_words": round(st["spearman"]["words"], 3),
                     "words": [round(x, 1) for x in sw["mean_words"]],
                     "unseen_shortfall": [round(u["shortfall"], 3) for u in m["unseen"]],
                     "unseen_between": [u["between"] for u in m["unseen"]]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("row", nargs="?")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    ap.add_argument("--method", default=STEERED, choices=list(METHODS))
    ap.add_argument("--steps", type=int, help="default: 200 (steered), 100 (others)")
    ap.add_argument("--eval-only", action="store_true", help="evaluate runs/dev/ROW's saved model again")
    ap.add_argument("--control", action="append", default=[], help="a saved model given the same text")
    ap.add_argument("--decoding", default="prompt", choices=list(DECODINGS),
                    help="how every model of the row generates under lambda (lambda_dpo.evaluate_steering)")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.table:
        for line in RESULTS.read_text().splitlines():
            r = json.loads(line)
            for prompts in ("dev lists", "dev questions"):
                for name, s in r[prompts].items():
                    print(f"{r['row']:<24} {prompts:<14} {name[:34]:<34} HV {s['hv']:.2f}  rho {s['rho_words']:.2f}  "
                          f"words {' '.join(f'{x:.0f}' for x in s['words'])}")
        return 0
    train_file, dev = dev_split()
    overrides = {k: yaml.safe_load(Path(v[1:]).read_text() if v.startswith("@") else v)
                 for k, v in (o.split("=", 1) for o in args.overrides)}
    model_dir = ROOT / args.row / "models" / f"{args.method}-seed0"
    started = time.time()
    if not args.eval_only:
        steps = args.steps or (200 if args.method == STEERED else 100)
        train_method(args.method, {"model_dtype": "auto", **METHODS[args.method], "max_steps": steps,
                                   "train_file": str(train_file), "eval_file": str(dev), **overrides},
                     PRESETS["default"], ROOT / args.row, 0, "smollm2-135m-instruct", Path(str(demo_data_dir())))
    if args.method != STEERED:
        return 0
    row = {"row": args.row + ("" if args.decoding == "prompt" else f" ({args.decoding} decoding)"),
           "overrides": overrides, "controls": args.control, "decoding": args.decoding,
           "command": "python research/dev_front.py " + " ".join(sys.argv[1:]),
           "kernel": saved_settings(model_dir).attn_implementation}  # trained models load under their own
    for key, prompts, judge in (("dev lists", dev, "lambda_dpo.demo.dataset.judges:judge_record"),
                                ("dev questions", ood_questions_file(dev=True), "length")):
        result = evaluate_front(model_dir, prompts, PAIR, judge=judge, controls=("base", *args.control),
                                decoding=args.decoding)
        (ROOT / args.row / f"front-{key.replace(' ', '-')}-{args.decoding}.json").write_text(json.dumps(result, indent=2))
        row[key] = summary(result)
    row["wall_seconds"] = round(time.time() - started, 1)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
