"""The files a label run writes, append-only and resumable.

For ``--output DIR/NAME.jsonl``:

- ``NAME.jsonl``: the listwise records, one per line, each written whole, flushed and fsync'ed before
  the next (`AppendWriter`): a run killed at any moment leaves every finished record on disk and at
  most one partial last line.
- ``NAME.skipped.jsonl``: the prompts skipped after sampling or judging, one per line, written the
  same way: the record as far as it got, plus ``"skipped": {"key", "origin", "reason", "message"}``.
  It is valid label input: a later run on it keeps what it has and judges what is missing.
- ``NAME.label.json``: the config the records were made with and its fingerprint (`config.fingerprint`).
- ``NAME.datasheet.md`` / ``NAME.datasheet.json``: written at the end of each run (`datasheet`).

`open_run` starts or resumes: a partial last line (the run was killed mid-write) is cut off and that
prompt is labeled again; a complete line that is not JSON elsewhere is an error (the file is not
this program's); a config whose fingerprint differs from the one the records were made with is refused,
naming the settings that differ. The keys of the prompts in both files are done.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["OutputPaths", "output_paths", "AppendWriter", "read_records", "open_run", "FORMAT"]

log = logging.getLogger(__name__)

FORMAT = "lambda-dpo-label-v1"


@dataclass(frozen=True)
class OutputPaths:
    records: Path
    skipped: Path
    settings: Path
    datasheet_md: Path
    datasheet_json: Path

    def all(self) -> tuple[Path, ...]:
        return self.records, self.skipped, self.settings, self.datasheet_md, self.datasheet_json


def output_paths(output: str | os.PathLike) -> OutputPaths:
    """The run's files beside `output` (NAME.jsonl -> NAME.skipped.jsonl, NAME.label.json, NAME.datasheet.*)."""
    path = Path(output)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
    beside = path.parent
    return OutputPaths(path, beside / f"{stem}.skipped.jsonl", beside / f"{stem}.label.json",
                       beside / f"{stem}.datasheet.md", beside / f"{stem}.datasheet.json")


class AppendWriter:
    """Appends JSON records to a file, one line each, written whole, flushed and fsync'ed before returning."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The records of an append-only JSONL file. A partial last line (no newline, not JSON) is dropped, and with
    `repair` cut off the file; a bad line before the last is an error naming it."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{path}:{number}: not a JSON record. Fix: this file was not written by lambda-dpo label "
                             "(or was edited): write to another output, or pass --overwrite") from None
    if tail.strip():
        try:
            records.append(json.loads(tail))
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
        except ValueError:
            log.warning("%s: the last line is partial (the run was stopped while writing it); it is dropped and that "
                        "prompt is labeled again", path)
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(len(raw) - len(tail))
    return records


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]


def open_run(paths: OutputPaths, config_hash: str, settings: dict, overwrite: bool = False) -> set[str]:
    """Start or resume the run in `paths`: the keys of the prompts already done (written or skipped)."""
    if overwrite:
        for path in paths.all():
            path.unlink(missing_ok=True)
    if paths.settings.exists():
        saved = json.loads(paths.settings.read_text(encoding="utf-8"))
        if saved.get("fingerprint") != config_hash:
            differ = _differences(saved.get("settings", {}), json.loads(json.dumps(settings, default=str)))
            raise ValueError(f"{paths.records}: its records were made with another label config (it differs in: "
                             f"{', '.join(differ) or 'the format'}). Fix: write to another output, or pass --overwrite "
                             "to start it again")
    elif paths.records.exists() and paths.records.stat().st_size:
        raise ValueError(f"{paths.records} exists but {paths.settings.name} does not, so it cannot be resumed. Fix: "
                         "write to another output, or pass --overwrite")
    else:
        text = json.dumps({"format": FORMAT, "fingerprint": config_hash, "settings": settings}, indent=2,
                          ensure_ascii=False, default=str)
        atomic_write_text(paths.settings, text + "\n")
    done = {r.get("provenance", {}).get("key") for r in read_records(paths.records, repair=True)}
    done |= {r.get("skipped", {}).get("key") for r in read_records(paths.skipped, repair=True)}
    return done - {None}
