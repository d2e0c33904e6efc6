"""`lambda-dpo demo`: what lambda-DPO is for, on the embedded model and dataset, side by side.

Trains three models with the same budget on the same training split of the shipped dataset:
  1. dpo_best_worst: DPO on the best-vs-worst pair under a uniform lambda (the paper's baseline);
  2. lambda_dpo_fixed: lambda-DPO, fixed uniform mixture, no conditioning (the authors' code);
  3. lambda_dpo_steered: lambda-DPO, Dirichlet lambda, lambda written in the prompt.
Then evaluates the base model and the three on the held-out split: listwise metrics of the
implicit reward, judge scores of replies generated under a lambda grid, controllability, and
the Pareto front of two conflicting aspects. Writes metrics.json, report.md and PNG plots.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .demo_data import ASPECTS, PromptSpec, demo_data_dir, judge_all
from .evaluation.report import write_report
from .evaluation.steering import controllability, front_area, lambda_grid, lambda_key, mean_judge_scores
from .generation import SteerableModel, generate, load_steerable
from .models import DEFAULT_MODEL, load_model, load_tokenizer
from .training.config import load_config
from .training.run import train

logger = logging.getLogger(__name__)
CONFLICT = ("conciseness", "informativeness")  # the pair the judges put in real conflict

METHODS = {
    "dpo_best_worst": {"loss_type": "dpo_best_worst", "lambda_source": "fixed", "conditioning": "none"},
    "lambda_dpo_fixed": {"loss_type": "lambda_dpo", "lambda_source": "fixed", "conditioning": "none"},
    "lambda_dpo_steered": {"loss_type": "lambda_dpo", "lambda_source": "dirichlet", "conditioning": "prompt"},
}


@dataclass(frozen=True)
class Preset:
    train_lists: int | None  # None = the whole training split
    max_steps: int
    eval_lists: int
    gen_prompts: int
    max_new_tokens: int
    full_grid: bool


PRESETS = {
    "quick": Preset(train_lists=64, max_steps=32, eval_lists=16, gen_prompts=12, max_new_tokens=48, full_grid=False),
    "default": Preset(train_lists=None, max_steps=100, eval_lists=40, gen_prompts=24, max_new_tokens=64,
                      full_grid=True),
    "full": Preset(train_lists=None, max_steps=280, eval_lists=40, gen_prompts=40, max_new_tokens=96, full_grid=True),
}


def _read_specs(path: Path) -> list[PromptSpec]:
    with open(path) as f:
        return [PromptSpec(**json.loads(line)["spec"]) for line in f if line.strip()]


def run_demo(preset: str = "default", out_dir: str | Path | None = None, seed: int = 0,
             model: str = DEFAULT_MODEL) -> Path:
    """Run the whole comparison; returns the run directory holding report.md."""
    p = PRESETS[preset]
    out = Path(out_dir or f"runs/demo-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    data = Path(str(demo_data_dir()))
    started = time.time()

    common = dict(model_name_or_path=model, train_file=str(data / "train.jsonl"), eval_file=str(data / "eval.jsonl"),
                  aspects=list(ASPECTS), max_train_lists=p.train_lists, max_eval_lists=p.eval_lists,
                  max_steps=p.max_steps, per_device_train_batch_size=2, learning_rate=5e-4, beta=0.1,
                  max_prompt_length=256, max_response_length=160, logging_steps=10, seed=seed)
    listwise, models = {}, {}
    for name, overrides in METHODS.items():
        logger.info("demo: training %s (%d steps)", name, p.max_steps)
        result = train(load_config(None, output_dir=str(out / "models" / name), **common, **overrides))
        listwise[name] = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
        models[name] = out / "models" / name
        del result

    specs = _read_specs(data / "eval.jsonl")[: p.gen_prompts]
    prompts = [s.prompt for s in specs]
    grid = lambda_grid(ASPECTS, CONFLICT, edges=p.full_grid)
    generations: dict[str, dict[str, dict]] = {}
    base = SteerableModel(load_model(model).eval(), load_tokenizer(model), tuple(ASPECTS), "none")
    for name, sm in [("base", base)] + [(n, None) for n in METHODS]:
        sm = sm or load_steerable(models[name])
        # A model that never sees lambda answers the same under every lambda: generate once.
        points = grid if sm.conditioning != "none" else [None]
        per_point = {}
        for lam in points:
            replies = generate(sm, prompts, lam, max_new_tokens=p.max_new_tokens, batch_size=12)
            per_point[lambda_key(lam) if lam else "any"] = {
                "lambda": lam, "scores": mean_judge_scores(specs, replies, judge_all),
                "examples": [{"prompt": q, "reply": r} for q, r in list(zip(prompts, replies))[:3]]}
        generations[name] = per_point
        logger.info("demo: judged %s under %d lambda(s)", name, len(points))
        del sm

    summary = summarise(generations, grid)
    metrics = {"preset": asdict(p), "seed": seed, "model": model, "aspects": list(ASPECTS), "conflict": list(CONFLICT),
               "methods": METHODS, "listwise": listwise, "generation": generations, "summary": summary,
               "wall_seconds": round(time.time() - started, 1), "torch_threads": torch.get_num_threads()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(metrics, out)
    return out


def summarise(generations: dict, grid: list[dict]) -> dict:
    """Controllability and Pareto area per model; unconditioned models count as one point."""
    out = {}
    for name, per_point in generations.items():
        scores = [v["scores"] for v in per_point.values()]
        if len(per_point) > 1:
            ctrl = controllability(grid, scores, ASPECTS)
        else:
            ctrl = {a: float("nan") for a in ASPECTS}
        pts = [(s[CONFLICT[0]], s[CONFLICT[1]]) for s in scores]
        out[name] = {"controllability": ctrl, "pareto_area": front_area(pts), "points": pts}
    return out
