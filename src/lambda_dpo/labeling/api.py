"""`label(config)`: prompts in, listwise records out (what `lambda-dpo label` runs).

The steps, per chunk of `batch_size` prompts in the input's order: sample the replies of the prompts
that have none (`sampling.Sampler`), shuffle each list's replies (seeded by the prompt), rate them
with the judges, keeping the ratings the input gives (`rate.judge_lists`), check each record as
training's loader would, and append it (`output.AppendWriter`: flushed and fsync'ed per record), or
append the prompt to the skipped file with its reason. Chunks whose prompts are all done are passed
over, so an interrupted run, started again with the same config, continues where it stopped and
writes what an uninterrupted run would have. At the end the datasheet is written (`datasheet`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from ..data import DataError, load_lists
from .config import LabelConfig, fingerprint, load_label_config
from .datasheet import write_datasheet
from .inputs import InputReport, LabelItem, read_prompts
from .judges import Judge, RateInput, build_judges
from .output import AppendWriter, OutputPaths, open_run, output_paths
from .rate import Judged, judge_lists
from .sampling import Sampler

__all__ = ["label", "LabelResult"]

log = logging.getLogger(__name__)


@dataclass
class LabelResult:
    """What a `label` run did.

    Attributes:
        output: the records file.
        datasheet: its Markdown datasheet (a ``.json`` twin lies beside it).
        lists: the lists in the file now.
        written: the lists this run wrote.
        skipped: the prompts this run skipped (an empty reply, no usable aspect).
        done_before: the prompts done (written or skipped) before this run.
        input: what was read, and the records rejected, by reason.
        sheet: the datasheet's figures.
    """

    output: Path
    datasheet: Path
    lists: int
    written: int
    skipped: int
    done_before: int
    input: InputReport
    sheet: dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    try:
        return metadata.version("lambda-dpo")
    except metadata.PackageNotFoundError:
        return "unknown"


def _as_config(config: LabelConfig | Mapping[str, Any] | str | Path) -> LabelConfig:
    if isinstance(config, LabelConfig):
        return config
    if isinstance(config, Mapping):
        return load_label_config(None, **config)
    return load_label_config(config)


class _Run:
    """One run's state: the config, judges, output files and counters."""

    def __init__(self, cfg: LabelConfig, judges: Sequence[Judge], config_hash: str, paths: OutputPaths):
        self.cfg, self.judges, self.config_hash, self.paths = cfg, list(judges), config_hash, paths
        self.sampler = Sampler(cfg)
        self.written = self.skipped = 0
        self.version = _version()

    def replies(self, chunk: Sequence[LabelItem], index: int) -> list[tuple[list[str], list, list] | None]:
        """Per prompt of the chunk: (replies, meta, truncated), sampled where the input gives none; None when a
        reply stayed empty."""
        to_sample = [it for it in chunk if it.responses is None]
        sampled = iter(self.sampler.sample([it.prompt for it in to_sample], index).replies if to_sample else ())
        out = []
        for item in chunk:
            if item.responses is not None:
                out.append((list(item.responses), list(item.meta), list(item.truncated)))
                continue
            replies = next(sampled)
            if replies is None:
                out.append(None)
                continue
            if self.cfg.shuffle:
                replies = list(replies)
                random.Random(f"lambda-dpo-label:{self.cfg.seed}:{item.key}").shuffle(replies)
            out.append(([r.text for r in replies], [r.meta() for r in replies], []))
        return out

    def provenance(self, item: LabelItem, judged: Judged) -> dict[str, Any]:
        sampled = item.responses is None
        return {"key": item.key, "origin": item.origin, "config": self.config_hash, "labeled_at": _now(),
                "lambda_dpo": self.version, "model": self.cfg.model if sampled else None,
                "sampling": {"seed": self.cfg.seed, "n_responses": self.cfg.n_responses,
                             "max_new_tokens": self.cfg.max_new_tokens} if sampled else None,
                "ratings": judged.provenance}

    def record(self, item: LabelItem, replies: tuple[list[str], list, list], judged: Judged) -> dict[str, Any]:
        responses, meta, truncated = replies
        record = {**item.extras, "prompt": [dict(m) for m in item.prompt], "responses": responses,
                  "ratings": judged.ratings}
        if any(truncated):
            record["truncated"] = truncated
        if meta:
            record["meta"] = meta
        record["provenance"] = self.provenance(item, judged)
        return record

    def skip(self, writer: AppendWriter, item: LabelItem, reason: str, message: str, record: dict | None) -> None:
        record = dict(record) if record is not None else {**item.extras, "prompt": [dict(m) for m in item.prompt]}
        record["skipped"] = {"key": item.key, "origin": item.origin, "reason": reason, "message": message}
        writer.write(record)
        self.skipped += 1

    def chunk(self, chunk: Sequence[LabelItem], index: int, todo_keys: set[str], out: AppendWriter,
              skipped: AppendWriter) -> None:
        """Label the chunk's prompts in `todo_keys` and append each record (or skip) as soon as it is ready; the
        chunk's other prompts (done, or past the limit) are sampled too, as one run samples them."""
        replies = self.replies(chunk, index)
        todo = [(item, r) for item, r in zip(chunk, replies) if item.key in todo_keys]
        for item, r in todo:
            if r is None:
                self.skip(skipped, item, "empty_reply", f"{item.origin}: a reply was still empty after "
                          f"{self.cfg.empty_retries} retries", None)
        ready = [(item, r) for item, r in todo if r is not None]
        lists = [RateInput(item.prompt, tuple(r[0]), item.record) for item, r in ready]
        judged = judge_lists(lists, [item.ratings for item, _ in ready], self.judges, self.cfg.keep_ratings)
        for (item, r), j in zip(ready, judged):
            record = self.record(item, r, j)
            try:
                load_lists([record], "native")  # what validate-data and train will accept
            except DataError as err:
                self.skip(skipped, item, err.reason, f"{item.origin}: {err.field}: {err.problem}", record)
                continue
            out.write(record)
            self.written += 1


def label(config: LabelConfig | Mapping[str, Any] | str | Path, *, overwrite: bool = False) -> LabelResult:
    """Sample, judge and write the listwise records a label config describes; resumes an interrupted run.

    `config`: a `LabelConfig`, a mapping of its fields, or a YAML file. `overwrite`: start the output again
    instead of resuming it. Raises ValueError for a config or an output that cannot be used (with the fix).
    """
    cfg = _as_config(config)
    judges = build_judges(cfg.judges)
    config_hash, settings = fingerprint(cfg, [j.describe() for j in judges])
    items, report = read_prompts(cfg)  # with a limit, up to the end of the limit's last batch
    wanted = items[:report.usable]
    if report.rejected:
        log.warning("%s: %d record(s) skipped: %s", cfg.input, sum(report.rejected.values()),
                    ", ".join(f"{k} {v}" for k, v in report.rejected.most_common()))
    paths = output_paths(cfg.output)
    done = open_run(paths, config_hash, settings, overwrite)
    todo = {it.key for it in wanted if it.key not in done}
    done_before = len(wanted) - len(todo)
    log.info("%d prompt(s): %d done before, %d to label -> %s", len(wanted), done_before, len(todo), paths.records)
    run, started = _Run(cfg, judges, config_hash, paths), _now()
    with AppendWriter(paths.records) as out, AppendWriter(paths.skipped) as skipped, \
            tqdm(total=len(wanted), initial=done_before, desc="labeling", unit="prompt",
                 disable=not cfg.progress) as bar:
        for index, start in enumerate(range(0, len(items), cfg.batch_size)):
            chunk = items[start:start + cfg.batch_size]
            pending = sum(it.key in todo for it in chunk)
            if pending:
                run.chunk(chunk, index, todo, out, skipped)
                bar.update(pending)
    for judge in judges:
        judge.close()
    sheet = write_datasheet(paths, report, {"started": started, "finished": _now(), "written": run.written,
                                            "skipped": run.skipped, "done_before": done_before})
    return LabelResult(paths.records, paths.datasheet_md, sheet["lists"], run.written, run.skipped, done_before,
                       report, sheet)
