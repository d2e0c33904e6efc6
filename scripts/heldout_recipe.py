"""Held-out check of a steering recipe, at part of `make demo-full`'s cost.

Trains only the steered method, for the full preset's seeds and its steered budget (200 steps; a
max_steps=N override replaces it) with the given key=value overrides (the study's syntax),
measures it on eval.jsonl exactly as `lambda-dpo demo --preset full` does, and takes the
baselines that do not depend on the steered recipe (DPO best-vs-worst and the lambda-fixed model,
both never shown lambda; the rating-blind picks) from a committed demo-full run,
so the report's 14 targets compare like with like. The untrained model given the same lambda text is
measured again only when an override changes what it reads (lambda_text, conditioning, how cut
replies are scored). Use it after the dev split (scripts/steering_study.py) has picked a recipe;
eval.jsonl is for final numbers only.

  python scripts/heldout_recipe.py --out runs/heldout-steps200 max_steps=200
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from lambda_dpo.demo.data import demo_data_dir
from lambda_dpo.demo.run import METHODS, PRESETS, RECIPE_KEYS, STEERED, _read_specs, _train, measure_base, measure_model
from lambda_dpo.evaluation.steering_report import save_demo_outputs
from lambda_dpo.models import DEFAULT_MODEL
from lambda_dpo.training.config import load_config

BASE_READS = ("lambda_text", "conditioning", "score_cut_ends", "aspect_instructions")


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="run directory (metrics.json, report.md, plots, models/)")
    ap.add_argument("--baselines", default="docs/demo-full-open-ends/metrics.json",
                    help="a demo-full metrics.json whose DPO / lambda-fixed runs and picks are reused")
    ap.add_argument("overrides", nargs="*", help="key=value training options of the steered method")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(None, args.overrides)  # parsed and validated before any training: a typo fails here
    overrides = {item.partition("=")[0].strip(): getattr(cfg, item.partition("=")[0].strip()) for item in args.overrides}
    ref = json.loads(Path(args.baselines).read_text())
    p = PRESETS["full"]  # budget stays the baselines' (what DPO and lambda-fixed trained for)
    steps = int(overrides.pop("max_steps", p.steered_steps))  # the steered model's, beside it
    if ref["budget"]["eval_lists"] != p.eval_lists or ref["budget"]["gen_prompts"] != p.gen_prompts:
        raise SystemExit(f"{args.baselines}: measured on a different budget ({ref['budget']}); rerun "
                         "`lambda-dpo demo --preset full` first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = Path(str(demo_data_dir()))
    specs = _read_specs(data / "eval.jsonl")[: p.gen_prompts]
    steered = {**METHODS[STEERED], "model_dtype": "auto", **overrides, "max_steps": steps}
    runs, base, recipe = {}, ref["base_with_text"], None
    remeasure_base = any(k in overrides for k in BASE_READS)
    for s in p.seeds:
        result = _train(STEERED, steered, p, out, s, DEFAULT_MODEL, data)
        runs[str(s)] = measure_model(result, specs, p, steered=True)
        if recipe is None:
            recipe = {k: getattr(result.trainer.args, k) for k in RECIPE_KEYS}
            if remeasure_base:
                base = measure_base(result, specs, p, DEFAULT_MODEL)
        del result
    metrics = {**ref, "steered_max_steps": steps, "recipe": recipe, "base_with_text": base,
               "methods": {**ref["methods"], STEERED: steered},
               "runs": {**ref["runs"], STEERED: runs}, "baselines_from": args.baselines,
               "base_remeasured": remeasure_base, "wall_seconds": round(time.time() - started, 1)}
    save_demo_outputs(metrics, out)
    return out


if __name__ == "__main__":
    print(main())
