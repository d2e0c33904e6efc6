"""`lambda-dpo ablation --study scheduler`: how training draws lambda, at the budget where steering is reliable.

Arms, each the steering recipe (`lambda-dpo train`'s defaults: lambda written in the prompt, lambda-contrast,
one list under two lambdas per step, the demo's `steered_steps`) but for the lambda source:
- fixed: the uniform mixture only (lambda-contrast needs two lambdas, so it is off and each step takes two
  lists: as many replies scored);
- dirichlet: a fresh Dirichlet(1) draw per list, over the simplex's interior;
- grid: the default, multiples of 1/4 with the vertices;
- adaptive-progress / adaptive-deficit: the performance-driven scheduler with either signal
  (`training.adaptive_lambda`).
Its recommendation sets a default, so it is measured on dev data (`demo.dev_split`: 24 lists held out of the
training split; the arms train on the other 256, the adaptive ones on 248 of them as they keep 8 for their
signal; eval.jsonl is never read), on the dev lists' prompts with
the demo's judges: robustness as the paper means it, per vertex e_k
the aspect-k score of the replies under e_k (the worst of them and their spread, max - min), and the
steering front on the conciseness-informativeness edge with its hypervolume (`evaluation.protocol`).
The adaptive arms' probabilities and per-candidate performance over training come from the log history
(scheduler.png). Each (arm, seed) is saved as soon as it is measured; a rerun keeps it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from .dataset import ASPECTS, judge_all
from .dev_split import write_dev_split
from .run import CONFLICT, METHODS, PRESETS, STEERED, Preset, PromptSet, generator_for, measure_sweep, read_specs, \
    train_method
from ..atomic import atomic_write_text, json_once
from ..evaluation.protocol import vertex_matrix
from ..generation import SteerableModel
from ..models import DEFAULT_MODEL

SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)  # informativeness' weight on the conflicting edge
_STEERED = METHODS[STEERED]
SCHEDULER_ARMS = {
    "fixed": {"lambda_source": "fixed", "per_device_train_batch_size": 2},
    "dirichlet": {**_STEERED, "lambda_source": "dirichlet"},
    "grid": {**_STEERED, "lambda_source": "grid"},
    "adaptive-progress": {**_STEERED, "lambda_source": "adaptive", "adaptive_signal": "progress"},
    "adaptive-deficit": {**_STEERED, "lambda_source": "adaptive", "adaptive_signal": "deficit"},
}


def robustness(matrix: dict[str, dict[str, float]], aspects: Sequence[str]) -> dict:
    """From the vertex matrix {vertex k: {aspect j: mean score}}: each aspect's score at its own vertex,
    the worst of them (and which), and their spread (max - min), in judge points."""
    own = {a: matrix[a][a] for a in aspects}
    worst = min(own, key=own.get)
    return {"own_vertex": own, "worst": own[worst], "worst_aspect": worst, "spread": max(own.values()) - own[worst]}


def schedule_trace(log_history: Sequence[dict]) -> list[dict]:
    """The adaptive source's updates from the trainer's log: [{step, probs [M], perf [M]}] (empty otherwise)."""
    out = []
    for h in log_history:
        if "lambda_prob/0" in h:
            m = sum(1 for k in h if k.startswith("lambda_prob/"))
            out.append({"step": h.get("step"), "probs": [h[f"lambda_prob/{i}"] for i in range(m)],
                        "perf": [h.get(f"lambda_perf/{i}") for i in range(m)]})
    return out


def run_arm(name: str, overrides: dict, p: Preset, out: Path, seed: int, model: str, data: Path,
            dev: PromptSet) -> dict:
    """Train one arm on data/train.jsonl, then its sweep of the edge and its vertex matrix on the dev prompts."""
    started = time.time()
    result = train_method(name, {"max_steps": p.steered_steps, **overrides}, p, out, seed, model, data)
    tr = result.trainer
    trained = time.time() - started
    sm = SteerableModel(tr.model.eval(), tr.processing_class, result.aspects, tr.args.conditioning,
                        tr.data_collator.lambda_text)
    sweep = measure_sweep(sm, dev, SWEEP, p)
    vertices = vertex_matrix(generator_for(sm, p), dev.prompts, dev.records, dev.judge, sm.aspects)
    candidates = getattr(getattr(tr, "adaptive", None), "source", None)
    return {"arm": name, "seed": seed, "steerability": sweep["steerability"], "mean_words": sweep["sweep"]["mean_words"],
            "vertex_matrix": vertices["matrix"], "robustness": robustness(vertices["matrix"], ASPECTS),
            "schedule": schedule_trace(tr.state.log_history),
            "candidates": candidates.candidates.tolist() if candidates is not None else None,
            "train_seconds": round(trained, 1), "seconds": round(time.time() - started, 1)}


def compare_schedulers(preset: str, out: Path, seeds: Sequence[int], model: str = DEFAULT_MODEL,
                       arms: dict[str, dict] | None = None) -> dict:
    """Every arm for every seed (resuming from `out`); returns metrics.json's content."""
    arms = arms or SCHEDULER_ARMS
    p = PRESETS[preset]
    started = time.time()
    data = write_dev_split(out / "data")
    specs = read_specs(data / "eval.jsonl")[: p.prompts]
    dev = PromptSet("dev", [s.prompt for s in specs], specs, judge_all)
    runs = {name: [json_once(out / "runs" / f"{name}-seed{seed}.json",
                             lambda name=name, o=o, seed=seed: run_arm(name, o, p, out, seed, model, data, dev),
                             {"preset": preset, "budget": asdict(p), "model": model, "overrides": o})
                   for seed in seeds] for name, o in arms.items()}
    return {"study": "scheduler", "preset": preset, "budget": asdict(p), "seeds": list(seeds), "model": model,
            "aspects": list(ASPECTS), "conflict": list(CONFLICT), "sweep": list(SWEEP), "arms": arms,
            "prompts": len(specs), "runs": runs, "wall_seconds": round(time.time() - started, 1),
            "torch_threads": torch.get_num_threads()}


def run_scheduler_study(preset: str = "full", out_dir: str | Path | None = None, seeds: Sequence[int] = (0, 1, 2),
                        model: str = DEFAULT_MODEL) -> Path:
    """The lambda sources at the preset's steered budget over `seeds`; writes metrics.json, report.md, scheduler.png."""
    from .scheduler_report import write_scheduler_report

    out = Path(out_dir or f"runs/scheduler-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    metrics = compare_schedulers(preset, out, seeds, model)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_scheduler_report(metrics, out)
    return out
