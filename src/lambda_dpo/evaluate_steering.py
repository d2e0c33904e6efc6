"""The steering protocol on a saved model, the user's prompts and the user's judge (`lambda-dpo evaluate --front`).

The model sweeps the edge between two aspects (`evaluation.protocol`); each control, given exactly
the model's lambda text, sweeps the same weights: the untrained base model (steering by the prompt
alone) and any other saved model (e.g. DPO trained without lambda). Prints or returns each one's
front, hypervolume and steerability, and the model's unseen-weight figures. Decoding: "prompt" (lambda
written into the prompt, `generation.generate`) or "mixed" (the vertices' log-probs mixed token by token,
`generation.generate_mixed`), the same for the model and its controls.

Prompts: a JSONL file, one record per line with a "prompt" (a string, or chat messages); the whole
record is handed to the judge with each reply. The judge: "length" (`evaluation.judges.LengthJudge`)
or "module:name" naming a callable ``(record, reply) -> {aspect: score}`` (a class is instantiated
with no arguments), e.g. ``lambda_dpo.demo.dataset.judges:judge_record`` for the demo's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import yaml

from .evaluation.judges import LengthJudge
from .evaluation.protocol import DEFAULT_WEIGHTS, steerability, sweep_edge, unseen_weights
from .generation import DECODINGS, SteerableModel, check_decoding, load_steerable, with_text
from .labeling.judges import load_callable
from .saved_model import CONFIG_FILE, base_model_source, read_model_meta, saved_dtype
from .models import load_model


def load_judge(spec: str):
    """"length" or "module:name" -> a judge callable (a name is loaded by `labeling.judges.load_callable`, as the
    label config's callable judges are); errors say what was wrong and how to write it."""
    if spec == "length":
        return LengthJudge()
    try:
        return load_callable(spec, "--judge")
    except ValueError as err:
        raise ValueError(f"{err}; or give 'length' (LengthJudge: conciseness and informativeness from the "
                         "reply's words)") from None


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict]:
    """Records of a JSONL prompts file, each with a "prompt"; errors name the file and line."""
    records = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), (str, list)):
                raise ValueError(f"{path}:{line_no}: a record needs a \"prompt\" (a string or chat messages)")
            records.append(record)
    if not records:
        raise ValueError(f"{path}: no prompts")
    return records[:limit] if limit else records


def _grid_step(model_dir: Path) -> float | None:
    """1 / lambda_grid_steps when the model trained on the grid (its config.yaml), else None (no unseen weights)."""
    path = model_dir / CONFIG_FILE
    cfg = yaml.safe_load(path.read_text()) if path.exists() else {}
    return 1.0 / cfg["lambda_grid_steps"] if cfg.get("lambda_source") == "grid" and cfg.get("lambda_grid_steps") else None



def measure(sm: SteerableModel, records: Sequence[dict], judge, pair: tuple[str, str], weights: Sequence[float],
            max_new_tokens: int, batch_size: int, grid_step: float | None, ref: tuple[float, float],
            decoding: str = "prompt") -> dict:
    """One sweep of the edge with its steerability (and unseen weights against `grid_step`'s grid)."""
    def gen(prompts, lams):
        return DECODINGS[decoding](sm, list(prompts), list(lams), max_new_tokens=max_new_tokens, batch_size=batch_size)

    sweep = sweep_edge(gen, [r["prompt"] for r in records], records, judge, sm.aspects, pair, weights)
    return {"sweep": sweep, "steerability": steerability(sweep, ref),
            "unseen": unseen_weights(sweep, grid_step, ref) if grid_step else []}


def evaluate_front(model_dir: str | Path, prompts_file: str | Path, pair: tuple[str, str], judge: str = "length",
                   weights: Sequence[float] = DEFAULT_WEIGHTS, controls: Sequence[str] = ("base",),
                   max_new_tokens: int = 96, batch_size: int = 48, limit: int | None = None,
                   ref: tuple[float, float] = (1.0, 1.0), decoding: str = "prompt") -> dict:
    """Fronts of the model and its controls on the prompts; see the module docstring.

    controls: "base" (the untrained base model) and/or directories saved by `lambda-dpo train`.
    Returns {"pair", "weights", "reference", "models": {name: measure()}} with "model" first.
    """
    check_decoding(decoding)
    sm = load_steerable(model_dir)
    if sm.conditioning != "prompt":
        raise ValueError(f"{model_dir}: the front needs a model that reads lambda as text (conditioning: prompt), "
                         f"this one has conditioning: {sm.conditioning}")
    meta = read_model_meta(Path(model_dir))
    step = _grid_step(Path(model_dir))
    records, scorer = read_prompts(prompts_file, limit), load_judge(judge)
    args = (records, scorer, tuple(pair), weights, max_new_tokens, batch_size)
    out = {"pair": list(pair), "weights": list(weights), "reference": list(ref), "decoding": decoding,
           "models": {"model": measure(sm, *args, step, ref, decoding)}}
    for control in controls:
        if control == "base":
            base = load_model(base_model_source(meta), dtype=saved_dtype(meta)).eval()
            out["models"]["base + same text"] = measure(with_text(base, sm), *args, None, ref, decoding)
        else:
            other = load_steerable(control)
            out["models"][f"{control} + same text"] = measure(with_text(other.model, sm), *args, None, ref, decoding)
    return out


def format_front(result: dict) -> str:
    """The fronts as text: per model its points, hypervolume and steerability; the model's unseen weights."""
    a, b = result["pair"]
    lines = [f"edge {a} -> {b} (w = weight of {b}); hypervolume above {tuple(result['reference'])}; "
             f"{result.get('decoding', 'prompt')} decoding"]
    for name, r in result["models"].items():
        st, sw = r["steerability"], r["sweep"]
        pts = "  ".join(f"w={w:g}: ({x:.2f}, {y:.2f}) {n:.0f}w"
                        for w, (x, y), n in zip(sw["weights"], st["front"], sw["mean_words"]))
        lines += [f"\n{name}: hypervolume {st['hypervolume']:.3f}; Spearman(w, words) {st['spearman']['words']:.2f}, "
                  f"({a}) {st['spearman'].get(a, float('nan')):.2f}, ({b}) {st['spearman'].get(b, float('nan')):.2f}; "
                  f"adjacent weights with longer replies {st['adjacent']['words']['right']:.2f}; "
                  f"words w=max / w=min {st['end_ratio_words']:.2f}", f"  {pts}"]
        for u in r["unseen"]:
            lines.append(f"  unseen w={u['w']:g}: shortfall {u['shortfall']:.3f} against its neighbours "
                         f"{u['neighbours']}, between them: {'yes' if u['between'] else 'no'}")
    return "\n".join(lines)
