"""`lambda-dpo demo`: can one trained model be steered, measured the way the field measures it?

Trains on the shipped training split, each on as many lists:
  1. lambda_dpo_steered: the training defaults (the steering recipe, docs/steering.md);
  2. dpo_best_worst: DPO on the best-vs-worst pair under a uniform lambda, lambda never shown;
  3. lambda_dpo_fixed: lambda-DPO on the fixed uniform mixture, lambda never shown.
Then the steering protocol (`lambda_dpo.evaluation.protocol`) on two prompt sets: the held-out
prompts of eval.jsonl (judged by the demo's rule judges) and general questions written apart from
the demo's prompt generator (`resources/ood/questions.jsonl`, judged by the spec-free
`LengthJudge`). The steered model sweeps the conciseness-informativeness edge; each control is
given exactly the same lambda text: the untrained base model, DPO and lambda-fixed (and those two
also once under their own prompt, a single point). Beside the fronts: the vertex matrix, another
wording of lambda, the judge scores at the centre lambda, and the diagnostics (top-1 of the
implicit reward, Delta). Writes metrics.json, report.md and the plots (`demo.report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from .dataset import ASPECTS, PromptSpec, demo_data_dir, judge_all
from ..conditioning import LambdaText
from ..evaluation.judges import LengthJudge
from ..evaluation.listwise import evaluate_lists
from ..evaluation.protocol import (DEFAULT_WEIGHTS, single_point, steerability, sweep_edge, unseen_weights,
                                   vertex_matrix)
from ..evaluation.delta import BASELINE_KINDS, baseline_top1, delta_summary, lambda_deltas
from ..generation import SteerableModel, check_decoding, generate, generate_mixed
from ..lambdas import uniform_lambda
from ..models import DEFAULT_MODEL, load_model
from ..targets import ratings_tensor
from ..training.config import load_config
from ..training.run import train
from .report import save_demo_outputs

logger = logging.getLogger(__name__)
CONFLICT = ("conciseness", "informativeness")  # the pair the judges put in real conflict; w = informativeness
STEERED, DPO, FIXED = "lambda_dpo_steered", "dpo_best_worst", "lambda_dpo_fixed"
REFERENCE = (1.0, 1.0)  # the judges' minimum on the conflicting pair: the hypervolume's reference point
OTHER_WORDING = "priorities"  # lambda written another way, for the wording-robustness sweep
# Replies per generate batch. (prompt, lambda) pairs of a sweep share batches, weight-major, so a batch
# holds replies of similar length and short ones stop early.
GEN_BATCH = 48

METHODS = {
    # The defaults of `lambda-dpo train`: the steering recipe. lambda-contrast scores each list under two
    # lambdas, so 1 list per step gives the same replies scored per step as the others' 2 lists.
    STEERED: {"per_device_train_batch_size": 1},
    DPO: {"loss_type": "dpo_best_worst", "lambda_source": "fixed", "conditioning": "none"},
    FIXED: {"loss_type": "lambda_dpo", "lambda_source": "fixed", "conditioning": "none"},
}


@dataclass(frozen=True)
class Preset:
    """A demo budget. Every model trains on as many lists: the steered model one list per step for
    `steered_steps`, the others two per step for `max_steps` (so steered_steps = 2 * max_steps)."""

    max_steps: int  # DPO's and lambda-fixed's steps (2 lists each)
    steered_steps: int  # the steered model's steps (1 list under 2 lambdas each)
    eval_lists: int  # held-out lists scored for the diagnostics (top-1, Delta)
    prompts: int  # held-out prompts of eval.jsonl swept
    ood_prompts: int  # general questions swept
    max_new_tokens: int
    weights: tuple[float, ...] = DEFAULT_WEIGHTS  # the steered model's sweep
    control_weights: tuple[float, ...] = DEFAULT_WEIGHTS  # the controls' sweeps (same lambda text)
    wording_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # the other wording's sweep
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = tuple(METHODS)
    train_lists: int | None = None  # None: the whole training split


# Budgets on 2 CPU cores in the bf16 mixed mode. `default` (`make demo`) fits 20 minutes cold: the steered
# model at 200 steps (the regime that steers, docs/steering.md) and DPO, the controls at three weights, 16 prompts
# of each set (with 48 replies per generate batch, 16 x 3 weights is one batch per control sweep). `full`
# adds lambda-fixed and repeats it for 3 seeds, every control at the nine weights, every general question.
PRESETS = {
    "quick": Preset(max_steps=12, steered_steps=24, eval_lists=12, prompts=8, ood_prompts=8, max_new_tokens=48,
                    weights=(0.0, 0.25, 0.5, 0.75, 1.0), control_weights=(0.0, 0.5, 1.0), wording_weights=(0.0, 1.0)),
    "default": Preset(max_steps=100, steered_steps=200, eval_lists=24, prompts=16, ood_prompts=16, max_new_tokens=96,
                      control_weights=(0.0, 0.5, 1.0), wording_weights=(0.0, 1.0), methods=(STEERED, DPO)),
    "full": Preset(max_steps=100, steered_steps=200, eval_lists=40, prompts=24, ood_prompts=48, max_new_tokens=96,
                   seeds=(0, 1, 2)),
}

# Where a demo's wall time goes (metrics.json `stage_seconds`): training = loading, tokenising, the
# reference pass, the steps and the trainer's held-out scoring; the rest is generation and judging.
STAGES = ("training", "steered model", "controls")


@contextlib.contextmanager
def timed(stages: dict[str, float], key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[key] += time.perf_counter() - start


@dataclass(frozen=True)
class PromptSet:
    """Prompts swept, the records their judge reads, and the judge."""

    name: str
    prompts: list
    records: list
    judge: object


def prompt_sets(p: Preset) -> list[PromptSet]:
    """The held-out demo prompts (rule judges) and the general questions (spec-free length judge)."""
    specs = read_specs(Path(str(demo_data_dir())) / "eval.jsonl")[: p.prompts]
    questions = read_questions(ood_questions_file())[: p.ood_prompts]
    return [PromptSet("held-out", [s.prompt for s in specs], specs, judge_all),
            PromptSet("general", [q["prompt"] for q in questions], questions, LengthJudge())]


def ood_questions_file(dev: bool = False) -> Path:
    """The general questions (never trained on); `dev`: the separate set to tune on."""
    from importlib.resources import files

    return Path(str(files("lambda_dpo") / "resources" / "ood" / ("dev_questions.jsonl" if dev else "questions.jsonl")))


def read_questions(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_specs(path: Path) -> list[PromptSpec]:
    with open(path) as f:
        return [PromptSpec(**json.loads(line)["spec"]) for line in f if line.strip()]


def run_demo(preset: str = "default", out_dir: str | Path | None = None, seed: int | None = None,
             model: str = DEFAULT_MODEL, model_dtype: str = "auto", decoding: str = "prompt") -> Path:
    """Train the preset's methods for each of its seeds (or `seed` alone), run the steering protocol,
    write metrics.json, report.md and plots; returns the run directory. model_dtype: every trained
    model's (`auto`: bf16 where the hardware has it; the base model follows it). decoding: how every
    model generates under lambda (`generation.DECODINGS`), the steered model and its controls alike."""
    check_decoding(decoding)
    p = PRESETS[preset]
    seeds = p.seeds if seed is None else (seed,)
    out = Path(out_dir or f"runs/demo-{preset}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = Path(str(demo_data_dir()))
    sets = prompt_sets(p)
    runs: dict[str, dict[int, dict]] = {name: {} for name in p.methods}
    base = recipe = baselines = None
    stages = dict.fromkeys(STAGES, 0.0)
    for s in seeds:
        text = None
        for name in p.methods:
            steps = p.steered_steps if name == STEERED else p.max_steps
            with timed(stages, "training"):
                result = train_method(name, {"model_dtype": model_dtype, "max_steps": steps, **METHODS[name]},
                                      p, out, s, model, data)
            tr = result.trainer
            own = SteerableModel(tr.model.eval(), tr.processing_class, result.aspects, tr.args.conditioning,
                                 tr.data_collator.lambda_text)
            if name == STEERED:
                text = own.lambda_text
                recipe = {k: getattr(tr.args, k) for k in RECIPE_KEYS} | {"model_dtype": tr.resolved.model_dtype}
                with timed(stages, "steered model"):
                    runs[name][s] = {**measure_steered(own, sets, p, grid_step(recipe), decoding),
                                     **diagnostics(result, own)}
                if base is None:
                    with timed(stages, "controls"):
                        base = measure_base(result, sets, p, model, decoding)
                    baselines = listwise_baselines(tr.eval_dataset.items, result.aspects)
            else:
                with_text = dataclasses.replace(own, conditioning="prompt", lambda_text=text or LambdaText("instructions"))
                with timed(stages, "controls"):
                    runs[name][s] = {**measure_control(with_text, sets, p, own, decoding),
                                     "listwise": _listwise(result)}
            del result, tr, own
    metrics = {"preset": preset, "budget": asdict(p), "seeds": list(seeds), "model": model, "aspects": list(ASPECTS),
               "conflict": list(CONFLICT), "reference": list(REFERENCE), "grid_step": grid_step(recipe),
               "other_wording": OTHER_WORDING, "decoding": decoding, "sets": {ps.name: len(ps.prompts) for ps in sets},
               "prompts": {ps.name: ps.prompts for ps in sets},
               "recipe": recipe, "runs": runs, "base_with_text": base, "baselines": baselines,
               "wall_seconds": round(time.time() - started, 1),
               "stage_seconds": {k: round(v, 1) for k, v in stages.items()}, "torch_threads": torch.get_num_threads()}
    save_demo_outputs(metrics, out)
    return out


def train_method(name: str, overrides: dict, p: Preset, out: Path, seed: int, model: str, data: Path):
    """Train one of METHODS (or an ablation arm) with the demo's settings; returns training's RunResult."""
    common = dict(model_name_or_path=model, train_file=str(data / "train.jsonl"), eval_file=str(data / "eval.jsonl"),
                  aspects=list(ASPECTS), max_train_lists=p.train_lists, max_eval_lists=p.eval_lists,
                  per_device_train_batch_size=2, max_prompt_length=256,
                  max_response_length=160, logging_steps=10, seed=seed)
    cfg = load_config(None, output_dir=str(out / "models" / f"{name}-seed{seed}"), **{**common, **overrides})
    logger.info("training %s (seed %d, %d steps)", name, seed, cfg.max_steps)
    return train(cfg)


RECIPE_KEYS = ("loss_type", "beta", "rating_temperature", "score_type", "lambda_source", "lambda_grid_steps",
               "lambda_vertex_share", "lambda_contrast", "contrast_alpha", "rpo_alpha", "conditioning", "lambda_text",
               "lambda_text_order", "learning_rate", "lora_r", "model_dtype", "score_cut_ends")


def generator_for(sm: SteerableModel, p: Preset, decoding: str = "prompt"):
    """(prompts, lambdas) -> greedy replies; a lambda of None (a model under its own prompt) decodes plainly."""
    def gen(prompts, lams):
        lams = list(lams)  # generate and generate_mixed named here, not through DECODINGS, so tests can record them
        decode = generate_mixed if decoding == "mixed" and any(lam is not None for lam in lams) else generate
        return decode(sm, list(prompts), lams, max_new_tokens=p.max_new_tokens, batch_size=GEN_BATCH)
    return gen


def grid_step(recipe: dict | None) -> float | None:
    """The weights training drew are multiples of this (1 / lambda_grid_steps); None when not drawn on a grid."""
    if not recipe or recipe.get("lambda_source") != "grid":
        return None
    return 1.0 / recipe["lambda_grid_steps"]


def measure_sweep(sm: SteerableModel, ps: PromptSet, weights: Sequence[float], p: Preset,
                  step: float | None = None, decoding: str = "prompt") -> dict:
    """One sweep of the edge on one prompt set, with its steerability and (given training's grid `step`)
    the figures of the weights it never drew."""
    sweep = sweep_edge(generator_for(sm, p, decoding), ps.prompts, ps.records, ps.judge, sm.aspects, CONFLICT, weights)
    return {"sweep": sweep, "steerability": steerability(sweep, REFERENCE),
            "unseen": unseen_weights(sweep, step, REFERENCE) if step else []}


def measure_steered(sm: SteerableModel, sets: Sequence[PromptSet], p: Preset, step: float | None,
                    decoding: str = "prompt") -> dict:
    """The steered model: the full sweep, the other wording's sweep, the vertex matrix and the centre lambda.
    step: training's grid step (`grid_step`), for the unseen-weight figures."""
    other = dataclasses.replace(sm, lambda_text=LambdaText(OTHER_WORDING, sm.lambda_text.instructions,
                                                                   sm.lambda_text.order))
    held_out = sets[0]
    gen = generator_for(sm, p, decoding)
    return {
        "fronts": {ps.name: measure_sweep(sm, ps, p.weights, p, step, decoding) for ps in sets},
        "other_wording": {ps.name: measure_sweep(other, ps, p.wording_weights, p, None, decoding) for ps in sets},
        "vertices": vertex_matrix(gen, held_out.prompts, held_out.records, held_out.judge, sm.aspects),
        "centre": single_point(gen, held_out.prompts, held_out.records, held_out.judge, CONFLICT,
                               uniform_lambda(sm.aspects), REFERENCE),
    }


def measure_control(with_text: SteerableModel, sets: Sequence[PromptSet], p: Preset,
                    own_prompt: SteerableModel | None = None, decoding: str = "prompt") -> dict:
    """A control given the steered model's lambda text (a front), and under its own prompt (one point)."""
    out = {"fronts": {ps.name: measure_sweep(with_text, ps, p.control_weights, p, None, decoding) for ps in sets}}
    if own_prompt is not None:
        out["single"] = {ps.name: single_point(generator_for(own_prompt, p), ps.prompts, ps.records, ps.judge, CONFLICT,
                                               None, REFERENCE) for ps in sets}
    return out


def measure_base(result, sets: Sequence[PromptSet], p: Preset, model: str, decoding: str = "prompt") -> dict:
    """The untrained model given exactly the steered model's lambda text: steering by the prompt alone.

    Its implicit reward is log pi_base(y | x, c(lambda)) - log pi_base(y | x) (the items' reference)."""
    tr = result.trainer
    base = load_model(model, dtype=tr.resolved.model_dtype).eval()
    collator, items = tr.data_collator, tr.eval_dataset.items
    sm = SteerableModel(base, tr.processing_class, result.aspects, "prompt", collator.lambda_text)
    return {**measure_base_fronts(sm, sets, p, decoding),
            "listwise": evaluate_lists(base, collator, items, batch_size=tr.args.per_device_eval_batch_size),
            "delta": _delta(base, collator, items, result.aspects)}


def measure_base_fronts(sm: SteerableModel, sets: Sequence[PromptSet], p: Preset, decoding: str = "prompt") -> dict:
    """The base model's generated figures (fronts given the text, vertex matrix); `measure_base` adds its scores."""
    held_out = sets[0]
    return {**measure_control(sm, sets, p, None, decoding),
            "vertices": vertex_matrix(generator_for(sm, p, decoding), held_out.prompts, held_out.records, held_out.judge,
                                      sm.aspects)}


def _listwise(result) -> dict:
    return {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}


def _vertex(aspects: Sequence[str], aspect: str) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(list(aspects).index(aspect)), len(aspects)).float()


def _delta(model, collator, items, aspects) -> dict:
    """Delta = log pi(y | x, informativeness) - log pi(y | x, conciseness) on the held-out lists, summarised."""
    delta = lambda_deltas(model, collator, items, _vertex(aspects, CONFLICT[1]), _vertex(aspects, CONFLICT[0]),
                          batch_size=4)
    ratings, mask = ratings_tensor([it.tokens.source for it in items], aspects)
    r = {a: ratings[..., aspects.index(a)] for a in CONFLICT}
    return delta_summary(delta, r[CONFLICT[1]], r[CONFLICT[0]], mask)


def diagnostics(result, sm: SteerableModel) -> dict:
    """Secondary figures of the steered model: held-out top-1 at the vertices, Delta, the training loss."""
    tr = result.trainer
    return {"listwise": _listwise(result), "delta": _delta(sm.model, tr.data_collator, tr.eval_dataset.items,
                                                           result.aspects),
            "train_loss": [h["loss"] for h in tr.state.log_history if "loss" in h]}


def listwise_baselines(items, aspects: Sequence[str]) -> dict:
    """Held-out top-1 per aspect of rating-blind picks: random (expected), shortest, longest reply."""
    ratings, mask = ratings_tensor([it.tokens.source for it in items], aspects)
    lists = [it.tokens.source for it in items]
    return {kind: {f"{a}/top1": torch.nanmean(baseline_top1(lists, ratings[..., k], mask, kind)).item()
                   for k, a in enumerate(aspects)} for kind in BASELINE_KINDS}
