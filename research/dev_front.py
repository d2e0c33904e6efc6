"""Tune steering on dev data only: train a recipe on the demo's training split minus a dev split, then run the
steering protocol on the dev lists' prompts and on the dev general questions, against the base model and any
control given the same lambda text.

    python research/dev_front.py ROW [key=value ...]            # train the steered model with these overrides
    python research/dev_front.py ROW key=@FILE.yaml             # a value read from a YAML file (e.g. lambda_table)
    python research/dev_front.py ROW --method dpo_best_worst     # a control (trained without lambda)
    python research/dev_front.py ROW --eval-only --control runs/dev/base_recipe/models/dpo_best_worst-seed0
    python research/dev_front.py ROW --seed 1 --reuse-controls   # another seed; the controls' fronts of an earlier row
    python research/dev_front.py --table                         # the rows so far
    python research/dev_front.py --seeds                         # per row, the model's figures over its seeds

The dev split: 24 lists of the shipped train.jsonl chosen with random.Random(7) (the remaining 256 train;
`lambda_dpo.demo.dev_split`).
The dev prompt sets: those 24 lists' prompts (the demo's rule judges) and resources/ood/dev_questions.jsonl
(the length judges). eval.jsonl and resources/ood/questions.jsonl are never read. Each row appends its
figures to research/dev_front.jsonl.

The controls (the base model and saved models given the same lambda text) do not depend on the row's training,
only on the text and the decoding: `--reuse-controls` copies their fronts from the latest row with the same
decoding, controls and rendering (lambda_text, lambda_text_order, aspect_instructions) instead of generating them
again, which takes two thirds of a row's evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
RENDERING = ("lambda_text", "lambda_text_order", "aspect_instructions")


def earlier_controls(decoding: str, controls: list[str], overrides: dict) -> dict | None:
    """The latest row of RESULTS whose control fronts hold for this row (same decoding, controls and rendering)."""
    rendering = {k: overrides.get(k) for k in RENDERING}
    for line in reversed(RESULTS.read_text().splitlines()):
        r = json.loads(line)
        if (r.get("decoding", "prompt") == decoding and r["controls"] == controls and "controls_from" not in r
                and {k: r["overrides"].get(k) for k in RENDERING} == rendering):
            return r
    return None


def dev_split() -> tuple[Path, Path]:
    """runs/dev/train.jsonl and runs/dev/eval.jsonl (the 24 dev lists): `lambda_dpo.demo.dev_split`."""
    root = write_dev_split(ROOT)
    return root / "train.jsonl", root / "eval.jsonl"


def summary(result: dict) -> dict:
    """Per model: hypervolume, Spearman(w, words), mean words per weight, each judge's mean score over the weights
    (quality kept), unseen-weight shortfalls."""
    out = {}
    for name, m in result["models"].items():
        st, sw = m["steerability"], m["sweep"]
        out[name] = {"hv": round(st["hypervolume"], 3), "rho_words": round(st["spearman"]["words"], 3),
                     "words": [round(x, 1) for x in sw["mean_words"]],
                     "scores": {a: round(statistics.mean(v), 3) for a, v in sw["means"].items()},
                     "unseen_shortfall": [round(u["shortfall"], 3) for u in m["unseen"]],
                     "unseen_between": [u["between"] for u in m["unseen"]]}
    return out


def over_seeds(rows: list[dict]) -> list[str]:
    """Per (row, prompt set): the model's HV (mean, sample sd), Spearman(w, words) and words per weight over the
    seeds measured under the kernel the model trained with (rows without a recorded kernel ran under sdpa and are
    left out), and the mean over the weights of each other judge's score where every seed's row records it; the
    latest row per seed counts."""
    latest = {(r["row"], r.get("seed", 0)): r for r in rows if r.get("kernel")}
    groups: dict[str, list[dict]] = {}
    for (name, _), r in sorted(latest.items(), key=lambda kv: kv[0]):
        groups.setdefault(name, []).append(r)
    lines = []
    for name, rs in groups.items():
        for prompts in ("dev lists", "dev questions"):
            hv = [r[prompts]["model"]["hv"] for r in rs]
            rho = [r[prompts]["model"]["rho_words"] for r in rs]
            scores = [r[prompts]["model"].get("scores") for r in rs]
            quality = "" if None in scores else "  " + " ".join(
                f"{a[:6]} {statistics.mean(s[a] for s in scores):.2f}" for a in scores[0] if a not in PAIR)
            lines.append(f"{name:<30} {prompts:<14} seeds {','.join(str(r.get('seed', 0)) for r in rs):<6} "
                         f"HV {statistics.mean(hv):.2f} ± {statistics.stdev(hv) if len(hv) > 1 else 0:.2f}  "
                         f"rho {statistics.mean(rho):.2f}  ({' '.join(f'{x:.2f}' for x in hv)}){quality}  words "
                         + " ".join(f"{statistics.mean(w):.0f}"
                                    for w in zip(*(r[prompts]["model"]["words"] for r in rs))))
    return lines


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
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--reuse-controls", action="store_true",
                    help="copy the controls' fronts from the latest row they hold for instead of generating them")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--seeds", action="store_true", help="per row, the model's figures over its seeds")
    args = ap.parse_args()
    if args.seeds:
        print("\n".join(over_seeds([json.loads(line) for line in RESULTS.read_text().splitlines()])))
        return 0
    if args.table:
        for line in RESULTS.read_text().splitlines():
            r = json.loads(line)
            for prompts in ("dev lists", "dev questions"):
                for name, s in r[prompts].items():
                    print(f"{r['row'] + ' s' + str(r.get('seed', 0)):<27} {prompts:<14} {name[:34]:<34} "
                          f"HV {s['hv']:.2f}  rho {s['rho_words']:.2f}  words {' '.join(f'{x:.0f}' for x in s['words'])}")
        return 0
    train_file, dev = dev_split()
    overrides = {k: yaml.safe_load(Path(v[1:]).read_text() if v.startswith("@") else v)
                 for k, v in (o.split("=", 1) for o in args.overrides)}
    model_dir = ROOT / args.row / "models" / f"{args.method}-seed{args.seed}"
    source = earlier_controls(args.decoding, args.control, overrides) if args.reuse_controls else None
    if args.reuse_controls and source is None:
        raise SystemExit(f"--reuse-controls: no row of {RESULTS} has {args.decoding} decoding, controls "
                         f"{args.control} and this rendering; run the row once without it")
    started = time.time()
    if not args.eval_only:
        steps = args.steps or (200 if args.method == STEERED else 100)
        train_method(args.method, {"model_dtype": "auto", **METHODS[args.method], "max_steps": steps,
                                   "train_file": str(train_file), "eval_file": str(dev), **overrides},
                     PRESETS["default"], ROOT / args.row, args.seed, "smollm2-135m-instruct",
                     Path(str(demo_data_dir())))
    if args.method != STEERED:
        return 0
    row = {"row": args.row + ("" if args.decoding == "prompt" else f" ({args.decoding} decoding)"),
           "overrides": overrides, "controls": args.control, "decoding": args.decoding,
           "seed": args.seed, "command": "python research/dev_front.py " + " ".join(sys.argv[1:]),
           "kernel": saved_settings(model_dir).attn_implementation}  # trained models load under their own
    for key, prompts, judge in (("dev lists", dev, "lambda_dpo.demo.dataset.judges:judge_record"),
                                ("dev questions", ood_questions_file(dev=True), "length")):
        result = evaluate_front(model_dir, prompts, PAIR, judge=judge, decoding=args.decoding,
                                controls=() if source else ("base", *args.control))
        (ROOT / args.row / f"front-{key.replace(' ', '-')}-{args.decoding}-seed{args.seed}.json").write_text(
            json.dumps(result, indent=2))
        row[key] = summary(result)
        if source:
            row[key].update({name: s for name, s in source[key].items() if name != "model"})
    if source:
        row["controls_from"] = source["command"]
    row["wall_seconds"] = round(time.time() - started, 1)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
