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
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .demo_data import ASPECTS, PromptSpec, demo_data_dir, judge_all
from .evaluation.report import write_ablation_report, write_report
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


# Budgets on 2 CPU cores (measured, idle machine): default 33 min (make demo), quick a few minutes, full more steps.
PRESETS = {
    "quick": Preset(train_lists=None, max_steps=24, eval_lists=12, gen_prompts=12, max_new_tokens=48, full_grid=False),
    "default": Preset(train_lists=None, max_steps=60, eval_lists=24, gen_prompts=24, max_new_tokens=64,
                      full_grid=True),
    "full": Preset(train_lists=None, max_steps=280, eval_lists=40, gen_prompts=40, max_new_tokens=96, full_grid=True),
}


def _read_specs(path: Path) -> list[PromptSpec]:
    with open(path) as f:
        return [PromptSpec(**json.loads(line)["spec"]) for line in f if line.strip()]


def evaluate_method(name: str, overrides: dict, p: Preset, out: Path, seed: int, model: str,
                    specs: list[PromptSpec], grid: list[dict]) -> dict:
    """Train one method, then its listwise metrics and judged generations over the grid."""
    data = Path(str(demo_data_dir()))
    common = dict(model_name_or_path=model, train_file=str(data / "train.jsonl"), eval_file=str(data / "eval.jsonl"),
                  aspects=list(ASPECTS), max_train_lists=p.train_lists, max_eval_lists=p.eval_lists,
                  max_steps=p.max_steps, per_device_train_batch_size=2, learning_rate=5e-4, beta=0.1,
                  max_prompt_length=256, max_response_length=160, logging_steps=10, seed=seed)
    logger.info("training %s (seed %d, %d steps)", name, seed, p.max_steps)
    result = train(load_config(None, output_dir=str(out / "models" / f"{name}-seed{seed}"), **{**common, **overrides}))
    listwise = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    sm = load_steerable(result.output_dir)
    del result
    return {"listwise": listwise, "generation": judge_generations(sm, specs, grid, p)}


def judge_generations(sm: SteerableModel, specs: list[PromptSpec], grid: list[dict], p: Preset) -> dict:
    """Mean judge scores per lambda point (one point, 'any', for a model that never sees lambda)."""
    prompts = [s.prompt for s in specs]
    per_point = {}
    points = grid if sm.conditioning != "none" else [None]
    for lam in tqdm(points, desc="judging generations per lambda", unit="lambda", disable=len(points) == 1):
        replies = generate(sm, prompts, lam, max_new_tokens=p.max_new_tokens, batch_size=12)
        per_point[lambda_key(lam) if lam else "any"] = {
            "lambda": lam, "scores": mean_judge_scores(specs, replies, judge_all),
            "examples": [{"prompt": q, "reply": r} for q, r in list(zip(prompts, replies))[:3]]}
    return per_point


def compare(methods: dict[str, dict], preset: str, out: Path, seeds: Sequence[int], model: str = DEFAULT_MODEL,
            include_base: bool = True) -> dict:
    """Train and evaluate every method for every seed with the same budget; returns the metrics."""
    p = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    specs = _read_specs(Path(str(demo_data_dir())) / "eval.jsonl")[: p.gen_prompts]
    grid = lambda_grid(ASPECTS, CONFLICT, edges=p.full_grid)
    runs: dict[str, dict[int, dict]] = {}
    if include_base:
        base = SteerableModel(load_model(model).eval(), load_tokenizer(model), tuple(ASPECTS), "none")
        runs["base"] = {0: {"listwise": {}, "generation": judge_generations(base, specs, grid, p)}}
        del base
    for name, overrides in methods.items():
        runs[name] = {seed: evaluate_method(name, overrides, p, out, seed, model, specs, grid) for seed in seeds}
    for per_seed in runs.values():
        for r in per_seed.values():
            r["summary"] = summarise(r["generation"], grid)
    return {"preset": preset, "budget": asdict(p), "seeds": list(seeds), "model": model, "aspects": list(ASPECTS),
            "conflict": list(CONFLICT), "methods": methods, "runs": runs,
            "wall_seconds": round(time.time() - started, 1), "torch_threads": torch.get_num_threads()}


def run_demo(preset: str = "default", out_dir: str | Path | None = None, seed: int = 0,
             model: str = DEFAULT_MODEL) -> Path:
    """The three-way comparison on one seed; returns the run directory holding report.md."""
    out = Path(out_dir or f"runs/demo-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = compare(METHODS, preset, out, [seed], model)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(metrics, out)
    return out


def summarise(per_point: dict, grid: list[dict]) -> dict:
    """Controllability and Pareto area of one model; a model that never sees lambda is one point."""
    scores = [v["scores"] for v in per_point.values()]
    ctrl = controllability(grid, scores, ASPECTS) if len(per_point) > 1 else {a: float("nan") for a in ASPECTS}
    pts = [(s[CONFLICT[0]], s[CONFLICT[1]]) for s in scores]
    return {"controllability": ctrl, "pareto_area": front_area(pts), "points": pts}


_TABLE = [{"weights": {a: 1.0}, "prob": 0.15} for a in ASPECTS] + [{"weights": {a: 1.0 for a in ASPECTS}, "prob": 0.4}]
ABLATION = {
    "none+fixed": {"lambda_source": "fixed", "conditioning": "none"},
    **{f"{cond}+{src}": {"lambda_source": src, "conditioning": cond, **({"lambda_table": _TABLE} if src == "table" else {})}
       for cond in ("prompt", "embedding") for src in ("dirichlet", "table", "adaptive")},
}
ABLATION_SKIPPED = {
    "none + dirichlet/table/adaptive": "without conditioning the loss is linear in lambda, so sampling it is "
                                       "only noise around the fixed mixture E[lambda] (design.md section 3)",
    "prompt/embedding + fixed": "the model would see one lambda only and cannot learn what lambda means",
}


def run_ablation(preset: str = "quick", out_dir: str | Path | None = None, seeds: Sequence[int] = (0, 1),
                 model: str = DEFAULT_MODEL) -> Path:
    """Lambda sources x conditioning modes at equal budget over several seeds; writes ablation.md."""
    out = Path(out_dir or f"runs/ablation-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = compare(ABLATION, preset, out, seeds, model, include_base=False)
    metrics["skipped"] = ABLATION_SKIPPED
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_ablation_report(metrics, out, ABLATION_SKIPPED)
    return out
