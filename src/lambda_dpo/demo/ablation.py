"""`lambda-dpo ablation`: lambda sources x conditioning modes at equal budget over several seeds.

Each arm trains with the demo's settings and preset budget, then is judged on the held-out prompts
under a lambda grid (the simplex vertices, the centre and quarter points of the conflicting edge):
per aspect the Spearman of lambda_k with the aspect's mean score (controllability) and the area of
the front on the conflicting pair. Writes metrics.json and ablation.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .ablation_metrics import controllability, lambda_grid, lambda_key, mean_judge_scores
from .dataset import ASPECTS, PromptSpec, demo_data_dir, judge_all
from .tables import write_ablation_report
from .run import CONFLICT, GEN_BATCH, PRESETS, Preset, read_specs, train_method
from ..evaluation.protocol import hypervolume
from ..generation import SteerableModel, generate, load_steerable
from ..models import DEFAULT_MODEL, load_model, load_tokenizer

_TABLE = [{"weights": {a: 1.0}, "prob": 0.15} for a in ASPECTS] + [{"weights": {a: 1.0 for a in ASPECTS}, "prob": 0.4}]
ABLATION = {
    "none+fixed": {"lambda_source": "fixed", "conditioning": "none"},
    # lambda-contrast off: the arms differ in how lambda is drawn and shown only, at equal compute
    **{f"{cond}+{src}": {"lambda_source": src, "conditioning": cond, "lambda_contrast": False,
                         **({"lambda_table": _TABLE} if src == "table" else {})}
       for cond in ("prompt", "embedding") for src in ("dirichlet", "table", "adaptive")},
}
ABLATION_SKIPPED = {
    "none + dirichlet/table/adaptive": "without conditioning the loss is linear in lambda, so sampling it is "
                                       "only noise around the fixed mixture E[lambda] (docs/design.md, Objective)",
    "prompt/embedding + fixed": "the model would see one lambda only and cannot learn what lambda means",
}


def evaluate_method(name: str, overrides: dict, p: Preset, out: Path, seed: int, model: str,
                    specs: list[PromptSpec], grid: list[dict]) -> dict:
    """Train one method (`max_steps` of the preset), then its listwise metrics and judged generations over the grid."""
    result = train_method(name, {"max_steps": p.max_steps, **overrides}, p, out, seed, model,
                          Path(str(demo_data_dir())))
    listwise = {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}
    sm = load_steerable(result.output_dir)
    del result
    return {"listwise": listwise, "generation": judge_generations(sm, specs, grid, p)}


def judge_generations(sm: SteerableModel, specs: list[PromptSpec], grid: list[dict], p: Preset) -> dict:
    """Mean judge scores per lambda point (one point, 'any', for a model that never sees lambda)."""
    prompts = [s.prompt for s in specs]
    per_point = {}
    points = grid if sm.conditioning != "none" else [None]
    for lam in tqdm(points, desc="judging generations per lambda", unit="lambda", disable=True if len(points) == 1 else None):
        replies = generate(sm, prompts, lam, max_new_tokens=p.max_new_tokens, batch_size=GEN_BATCH)
        per_point[lambda_key(lam) if lam else "any"] = {
            "lambda": lam, "scores": mean_judge_scores(specs, replies, judge_all),
            "examples": [{"prompt": q, "reply": r} for q, r in list(zip(prompts, replies))[:3]]}
    return per_point


def summarise(per_point: dict, grid: list[dict]) -> dict:
    """Controllability and the front's area of one model; a model that never sees lambda is one point."""
    scores = [v["scores"] for v in per_point.values()]
    ctrl = controllability(grid, scores, ASPECTS) if len(per_point) > 1 else {a: float("nan") for a in ASPECTS}
    pts = [(s[CONFLICT[0]], s[CONFLICT[1]]) for s in scores]
    return {"controllability": ctrl, "pareto_area": hypervolume(pts), "points": pts}


def compare(methods: dict[str, dict], preset: str, out: Path, seeds: Sequence[int], model: str = DEFAULT_MODEL,
            include_base: bool = True) -> dict:
    """Train and evaluate every method for every seed with the same budget; returns the metrics."""
    p = PRESETS[preset]
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    specs = read_specs(Path(str(demo_data_dir())) / "eval.jsonl")[: p.prompts]
    grid = lambda_grid(ASPECTS, CONFLICT, edges=False)
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
    return {"preset": preset, "budget": {**asdict(p), "gen_prompts": p.prompts}, "seeds": list(seeds), "model": model,
            "aspects": list(ASPECTS), "conflict": list(CONFLICT), "methods": methods, "runs": runs,
            "wall_seconds": round(time.time() - started, 1), "torch_threads": torch.get_num_threads()}


def run_ablation(preset: str = "quick", out_dir: str | Path | None = None, seeds: Sequence[int] = (0, 1),
                 model: str = DEFAULT_MODEL) -> Path:
    """Lambda sources x conditioning modes at equal budget over several seeds; writes ablation.md."""
    out = Path(out_dir or f"runs/ablation-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = compare(ABLATION, preset, out, seeds, model, include_base=False)
    metrics["skipped"] = ABLATION_SKIPPED
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_ablation_report(metrics, out, ABLATION_SKIPPED)
    return out
