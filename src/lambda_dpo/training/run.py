"""One training run, end to end: records -> lists -> tokens -> reference -> Trainer -> saved model.

Each arrow is a call into one module; this file only wires them and reports what was dropped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..atomic import atomic_write_text
from ..data import PreferenceList, format_summary, load_lists, summarize
from ..saved_model import mark_incomplete
from .config import LambdaDPOConfig
from .prepare import as_lists, infer_aspects, resume_checkpoint
from .trainer import LambdaDPOTrainer

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    output_dir: Path
    aspects: tuple[str, ...]
    train_metrics: dict
    eval_metrics: dict
    trainer: LambdaDPOTrainer


def split_eval(lists: list[PreferenceList], fraction: float, seed: int) -> tuple[list, list]:
    """Seeded hold-out of ceil(fraction * n) lists (none when fraction is 0)."""
    if fraction <= 0 or len(lists) < 2:
        return lists, []
    order = torch.randperm(len(lists), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = min(len(lists) - 1, max(1, math.ceil(fraction * len(lists))))
    held = set(order[:n_eval])
    return [l for i, l in enumerate(lists) if i not in held], [l for i, l in enumerate(lists) if i in held]


def load_data(cfg: LambdaDPOConfig) -> tuple[list[PreferenceList], list[PreferenceList], tuple[str, ...]]:
    """Train and eval lists plus the aspect order; prints each load summary (rejections included).

    With `aspects` set, only those aspects are trained on; the data's other aspects are ignored
    (one log line names them) and lists that rate none of the chosen aspects are dropped and counted.
    """
    if not cfg.train_file:
        raise ValueError("config: train_file is required (a .jsonl/.json/.parquet file or a datasets dir)")

    def load(path: str, name: str) -> list[PreferenceList]:
        lists, report = load_lists(path, cfg.data_format, skip_bad=cfg.skip_bad_records)
        logger.info("%s data\n%s", name, format_summary(summarize(lists, report)))
        return as_lists(lists, cfg, path)  # restricted to `aspects`, the others named once in the log

    train = load(cfg.train_file, "training")
    if cfg.eval_file:
        evals = load(cfg.eval_file, "eval")
    else:
        train, evals = split_eval(train, cfg.eval_fraction, cfg.seed)
    train = train[: cfg.max_train_lists] if cfg.max_train_lists else train
    evals = evals[: cfg.max_eval_lists] if cfg.max_eval_lists else evals
    aspects = tuple(cfg.aspects) if cfg.aspects else infer_aspects(train)
    if not train:
        raise ValueError(f"{cfg.train_file}: no usable training lists (see the rejection summary above)")
    return train, evals, aspects


def train(cfg: LambdaDPOConfig, callbacks: Sequence = ()) -> RunResult:
    """Run one training job described by `cfg`; returns where the model was saved and the metrics.

    The files named in `cfg` are loaded here; everything after (the model, tokens, resolved settings,
    reference, batches, the Trainer) is `LambdaDPOTrainer`'s, the same entry point a Python user calls with
    datasets. `cfg` is only read; what ran is `result.trainer.resolved`.
    `callbacks`: extra transformers TrainerCallbacks (for tests and monitoring).
    """
    from transformers import set_seed

    set_seed(cfg.seed)
    train_lists, eval_lists, _ = load_data(cfg)
    # the trainer loads the model the config names (`settings.load_policy`), as for a Python user
    trainer = LambdaDPOTrainer(args=cfg, train_dataset=train_lists, eval_dataset=eval_lists or None,
                               callbacks=list(callbacks) or None)
    train_metrics = trainer.train(resume_from_checkpoint=resume_checkpoint(cfg)).metrics
    eval_metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    out = Path(cfg.output_dir)
    if trainer.is_world_process_zero():  # lambda_dpo.json marks a complete model: none while the weights are written
        mark_incomplete(out)
    trainer.save_model(str(out))  # weights, then config.yaml, model card and lambda_dpo.json
    if trainer.is_world_process_zero() and trainer.adaptive:  # candidates and their probabilities over time
        atomic_write_text(out / "lambda_schedule.json", json.dumps(trainer.adaptive.state_dict(), indent=1))
    # Every process returns only once the model is written: a rank that ran ahead and exited while
    # process 0 still wrote shards was killed by its own gloo threads at shutdown (SIGABRT).
    trainer.accelerator.wait_for_everyone()
    return RunResult(out, trainer.prepared.aspects, train_metrics, eval_metrics, trainer)
