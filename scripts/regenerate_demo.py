"""Re-judge a finished demo run's generations at another generation budget, without retraining.

    python scripts/regenerate_demo.py runs/demo-full-100 --max-new-tokens 96 --out runs/demo-full-100-t96

Reads RUN/metrics.json and the trained models in RUN/models/, generates again (greedy) the edge
sweep, the centre replies and the single points of the lambda-blind methods, for the trained models
and for the base model given the same lambda text, and writes OUT/metrics.json, report.md and plots.
Generation-free figures (listwise top-1, Delta, training loss) are copied: they do not depend on the
generation budget. Why: a budget shorter than the data's own (the demo data was sampled with 96 new
tokens) cuts the longest replies, which compresses the words ratio and the informativeness scores at
the informativeness end.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from lambda_dpo.demo.data import demo_data_dir, judge_all
from lambda_dpo.demo.run import CONFLICT, EDGE_WS, GEN_BATCH, _read_specs
from lambda_dpo.evaluation.steering import mean_judge_scores
from lambda_dpo.evaluation.steering_metrics import edge_sweep
from lambda_dpo.evaluation.steering_report import save_demo_outputs
from lambda_dpo.generation import SteerableModel, generate, load_steerable
from lambda_dpo.lambdas import uniform_lambda
from lambda_dpo.models import load_model


def regenerate(sm: SteerableModel, specs, max_new_tokens: int, steered: bool) -> dict:
    """The generation figures of one model: edge sweep + centre (steered) or one point (lambda-blind)."""
    prompts = [s.prompt for s in specs]

    def gen(ps, lam):
        return generate(sm, ps, lam, max_new_tokens=max_new_tokens, batch_size=GEN_BATCH)

    if not steered:
        replies = gen(prompts, None)
        return {"single": {"scores": mean_judge_scores(specs, replies, judge_all),
                           "mean_words": sum(len(r.split()) for r in replies) / len(replies)}}
    centre = gen(prompts, uniform_lambda(sm.aspects))
    return {"edge": edge_sweep(gen, prompts, specs, judge_all, sm.aspects, CONFLICT, EDGE_WS),
            "centre": {"scores": mean_judge_scores(specs, centre, judge_all), "replies": centre}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    started = time.time()
    m = json.loads((args.run / "metrics.json").read_text())
    new = copy.deepcopy(m)
    new["budget"]["max_new_tokens"] = args.max_new_tokens
    new["regenerated_from"] = {"run": str(args.run), "max_new_tokens": m["budget"]["max_new_tokens"]}
    specs = _read_specs(Path(str(demo_data_dir())) / "eval.jsonl")[: m["budget"]["gen_prompts"]]
    steered_sm = None  # the base model is read with a steered model's tokenizer, aspects and lambda text
    for name, seeds in m["runs"].items():
        for seed in seeds:
            sm = load_steerable(args.run / "models" / f"{name}-seed{seed}")
            steered = sm.conditioning != "none"
            print(f"{time.time() - started:6.0f} s  {name} seed {seed}", flush=True)
            new["runs"][name][seed].update(regenerate(sm, specs, args.max_new_tokens, steered))
            steered_sm = sm if steered else steered_sm
    if m.get("base_with_text") and steered_sm is not None:
        print(f"{time.time() - started:6.0f} s  base model with the same text", flush=True)
        base = SteerableModel(load_model(m["model"], dtype=steered_sm.model.dtype).eval(), steered_sm.tokenizer,
                              steered_sm.aspects, "prompt", steered_sm.lambda_text)
        new["base_with_text"].update(regenerate(base, specs, args.max_new_tokens, True))
    new["wall_seconds_regenerate"] = round(time.time() - started, 1)
    save_demo_outputs(new, args.out)
    print(f"wrote {args.out}/report.md ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
