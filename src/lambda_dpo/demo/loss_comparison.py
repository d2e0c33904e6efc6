"""`lambda-dpo ablation --study losses`: does listwise lambda-DPO beat pairwise DPO at equal data and compute?

Five losses (`lambda_dpo.losses`), each trained on the same lists, steps and batch (every loss scores
all N responses of a list, so the response forward passes are equal) with the same learning rate and beta
(not tuned per loss), lambda fixed at the uniform mixture and never shown to the model: lambda-DPO
(listwise), DPO on the best-vs-worst pair, DPO on all pairs, Plackett-Luce and LiPO-lambda. Then on the held-out split, per (seed, prompt or list):
- the demo's judges on each model's greedy reply (per aspect, and their mean), and the reply's words;
- the win / tie / loss of each reply against DPO best-vs-worst's reply to the same prompt (same seed);
- listwise top-1 and NDCG of the implicit reward per aspect (`evaluation.listwise.per_list_metrics`);
- KL(pi || pi_ref) on one reply sampled from the policy per prompt (`evaluation.kl`): how far it moved.
Means with 95% bootstrap intervals over seeds and prompts (`evaluation.intervals`). Each (method, seed)
is saved as soon as it is measured and kept when the command is run again on the same directory with the
same settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .dataset import ASPECTS, demo_data_dir, judge_all
from .run import GEN_BATCH, PRESETS, Preset, read_specs, train_method
from ..atomic import atomic_write_text, json_once
from ..evaluation.delta import word_count
from ..evaluation.intervals import bootstrap_mean, win_tie_loss
from ..evaluation.kl import sampled_kl
from ..evaluation.listwise import per_list_metrics
from ..generation import SteerableModel, generate, steered_prompt_ids
from ..models import DEFAULT_MODEL, load_model, load_tokenizer

ANCHOR = "dpo_best_worst"  # every reply is compared with this method's reply to the same prompt
_COMMON = {"lambda_source": "fixed", "conditioning": "none", "per_device_train_batch_size": 2}
LOSS_METHODS = {
    "lambda_dpo": {"loss_type": "lambda_dpo", **_COMMON},
    ANCHOR: {"loss_type": "dpo_best_worst", **_COMMON},
    "dpo_all_pairs": {"loss_type": "dpo_all_pairs", **_COMMON},
    "plackett_luce": {"loss_type": "plackett_luce", **_COMMON},
    "lipo_lambda": {"loss_type": "lipo_lambda", **_COMMON},
}
LISTWISE_FIGURES = ("top1", "ndcg")


def measure_model(sm: SteerableModel, specs: Sequence, p: Preset, seed: int) -> dict:
    """Greedy replies to the held-out prompts, judged per aspect, with their words and the sampled KL."""
    prompts = [s.prompt for s in specs]
    replies = generate(sm, prompts, None, max_new_tokens=p.max_new_tokens, batch_size=GEN_BATCH)
    judged = [judge_all(s, r) for s, r in zip(specs, replies)]
    kl = sampled_kl(sm.model, sm.tokenizer, [steered_prompt_ids(sm, q, None) for q in prompts],
                    max_new_tokens=p.max_new_tokens, seed=seed)
    return {"judge": {a: [float(j[a]) for j in judged] for a in ASPECTS},
            "words": [word_count(r) for r in replies], "kl": kl.tolist(), "replies": replies}


def run_one(name: str, overrides: dict, p: Preset, out: Path, seed: int, model: str, specs: Sequence) -> dict:
    """Train one loss (saved under out/models), then measure it."""
    started = time.time()
    result = train_method(name, {"max_steps": p.max_steps, **overrides}, p, out, seed, model, Path(str(demo_data_dir())))
    tr = result.trainer
    trained = time.time() - started
    sm = SteerableModel(tr.model.eval(), tr.processing_class, result.aspects, "none")
    lists = per_list_metrics(tr.model, tr.data_collator, tr.eval_dataset.items, score_type=tr.args.score_type,
                             batch_size=tr.args.per_device_eval_batch_size, chunk_size=tr.args.logprob_chunk_size)
    return {"method": name, "seed": seed, **measure_model(sm, specs, p, seed),
            "listwise": {k: v.tolist() for k, v in lists.items() if k.endswith(LISTWISE_FIGURES)},
            "train_loss": [h["loss"] for h in tr.state.log_history if "loss" in h],
            "train_seconds": round(trained, 1), "seconds": round(time.time() - started, 1)}


def run_base(p: Preset, model: str, specs: Sequence) -> dict:
    """The untrained model under the same prompt: where every method started (its KL is 0)."""
    sm = SteerableModel(load_model(model).eval(), load_tokenizer(model), tuple(ASPECTS), "none")
    prompts = [s.prompt for s in specs]
    replies = generate(sm, prompts, None, max_new_tokens=p.max_new_tokens, batch_size=GEN_BATCH)
    judged = [judge_all(s, r) for s, r in zip(specs, replies)]
    return {"method": "base", "seed": 0, "judge": {a: [float(j[a]) for j in judged] for a in ASPECTS},
            "words": [word_count(r) for r in replies], "replies": replies}


def compare_losses(preset: str, out: Path, seeds: Sequence[int], model: str = DEFAULT_MODEL,
                   methods: dict[str, dict] | None = None) -> dict:
    """Train and measure every loss for every seed (resuming from `out`); returns the summary (metrics.json)."""
    methods = methods or LOSS_METHODS
    p = PRESETS[preset]
    started = time.time()
    specs = read_specs(Path(str(demo_data_dir())) / "eval.jsonl")
    def settings(overrides: dict | None) -> dict:
        return {"preset": preset, "budget": asdict(p), "model": model, "overrides": overrides}

    runs = {"base": [json_once(out / "runs" / "base.json", lambda: run_base(p, model, specs), settings(None))]}
    for seed in seeds:
        for name, overrides in methods.items():
            runs.setdefault(name, []).append(json_once(
                out / "runs" / f"{name}-seed{seed}.json", lambda: run_one(name, overrides, p, out, seed, model, specs),
                settings(overrides)))
    return {"study": "losses", "preset": preset, "budget": asdict(p), "seeds": list(seeds), "model": model,
            "aspects": list(ASPECTS), "anchor": ANCHOR, "methods": methods, "prompts": len(specs),
            "summary": summarise(runs, list(ASPECTS)), "wall_seconds": round(time.time() - started, 1),
            "torch_threads": torch.get_num_threads()}


def _grid(runs: list[dict], get) -> np.ndarray:
    """[S, P] of one figure over a method's seeds."""
    return np.array([get(r) for r in runs], dtype=float)


def summarise(runs: dict[str, list[dict]], aspects: Sequence[str]) -> dict:
    """Per method: judge scores per aspect and their mean, words, KL, listwise figures (each a bootstrap
    mean with its interval) and, against the anchor, win / tie / loss and the paired difference of scores per
    aspect and for the mean."""
    out = {}
    anchor = runs.get(ANCHOR)
    for name, rs in runs.items():
        judge = {a: _grid(rs, lambda r, a=a: r["judge"][a]) for a in aspects}
        judge["mean"] = np.mean([judge[a] for a in aspects], axis=0)
        row = {"judge": {k: bootstrap_mean(v) for k, v in judge.items()},
               "words": bootstrap_mean(_grid(rs, lambda r: r["words"]))}
        if "kl" in rs[0]:
            row["kl"] = bootstrap_mean(_grid(rs, lambda r: r["kl"]))
        if rs[0].get("listwise"):
            row["listwise"] = {key: bootstrap_mean(_grid(rs, lambda r, key=key: r["listwise"][key]))
                               for key in rs[0]["listwise"]}
        if anchor is not None and name not in (ANCHOR, "base"):
            theirs = {a: _grid(anchor, lambda r, a=a: r["judge"][a]) for a in aspects}
            theirs["mean"] = np.mean([theirs[a] for a in aspects], axis=0)
            row["vs_anchor"] = {k: {**win_tie_loss(judge[k], theirs[k]), "difference": bootstrap_mean(judge[k] - theirs[k])}
                                for k in judge}
        row["seeds"] = [r["seed"] for r in rs]
        out[name] = row
    return out


def run_loss_comparison(preset: str = "full", out_dir: str | Path | None = None, seeds: Sequence[int] = (0, 1, 2),
                        model: str = DEFAULT_MODEL) -> Path:
    """The five losses at the preset's budget over `seeds`; writes metrics.json, report.md and the plots."""
    from .loss_report import write_loss_report

    out = Path(out_dir or f"runs/losses-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    metrics = compare_losses(preset, out, seeds, model)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    write_loss_report(metrics, out)
    return out
