"""Read a source into ``(origin, record)`` pairs; an unreadable record comes as ``(origin, DataError)``.

- ``*.jsonl``: one JSON object per line, blank lines ignored. Origin ``"path:LINE"`` (1-based).
- ``*.json``: one JSON array of records. Origin ``"path:record K"`` (K 0-based, as ``data[K]``).
- ``*.parquet``: origin ``"path:row K"`` (K 0-based).
- a directory written by ``datasets``' ``save_to_disk``; a ``DatasetDict`` gives ``split``.
  Origin ``"path:row K"``.
- anything else that does not exist locally is tried as a hub dataset name,
  ``datasets.load_dataset(name, split=split)``. Origin ``"name:row K"``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping

from .fields import json_type
from .schema import DataError

_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class SourceNotFoundError(DataError, FileNotFoundError):
    """The source is neither a local file/directory nor a dataset the hub could give.

    Both a `DataError` (reason ``source_not_found``) and a `FileNotFoundError`.
    """




def read_source(src: str, split: str) -> Iterator[tuple[str, Any]]:
    path = os.path.expanduser(src)
    if os.path.isdir(path):
        return _read_saved_dataset(path, src, split)
    if os.path.isfile(path):
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".jsonl":
            return _read_jsonl(path, src)
        if suffix == ".json":
            return _read_json(path, src)
        if suffix == ".parquet":
            return _read_parquet(path, src)
        raise DataError(src, "", f"unsupported file type {suffix or '(no suffix)'!r}",
                        "use a .jsonl, .json or .parquet file, or a save_to_disk directory", "bad_file")
    if _looks_local(src):
        raise SourceNotFoundError(src, "", "no such file or directory",
                                  "check the path (relative paths start at the current directory "
                                  f"{os.getcwd()})", "source_not_found")
    return _read_hub(src, split)


def _looks_local(src: str) -> bool:
    return (src.lower().endswith(_LOCAL_SUFFIXES) or src.startswith((".", "/", "~", "\\"))
            or os.path.isabs(src) or src.count("/") > 1)


def _read_jsonl(path: str, src: str) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            origin = f"{src}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield origin, DataError(origin, "", f"line is not valid UTF-8 ({exc.reason} at byte "
                                        f"{exc.start})", "save the file as UTF-8", "bad_encoding")
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:  # also: nested too deeply, integer too long
                yield origin, DataError(origin, "", f"invalid JSON ({_json_problem(exc)})",
                                        "make the line one complete JSON object (check quotes, commas "
                                        "and brackets; one record per line)", "bad_json")
                continue
            yield origin, record


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _read_json(path: str, src: str) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{src}:{line}", "", f"not valid UTF-8 ({exc.reason} at byte {exc.start})",
                        "save the file as UTF-8", "bad_encoding") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also: nested too deeply, integer too long
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else 1
        raise DataError(f"{src}:{line}", "", f"invalid JSON ({_json_problem(exc)})",
                        "fix the JSON; a .json source holds one array of records", "bad_json") from None
    if not isinstance(data, list):
        raise DataError(src, "", f"a .json source must hold an array of records, not a {json_type(data)}",
                        "wrap the records in [...], or write one record per line to a .jsonl file",
                        "bad_file")
    for k, record in enumerate(data):
        yield f"{src}:record {k}", record


def _read_parquet(path: str, src: str) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(src, "", f"cannot read the parquet file ({exc})", "check that it is a valid "
                        "parquet file", "bad_file") from None
    k = 0
    for batch in pfile.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield f"{src}:row {k}", record
            k += 1


def _read_saved_dataset(path: str, src: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(path)
    except Exception as exc:
        raise DataError(src, "", f"the directory is not a dataset saved with save_to_disk ({exc})",
                        "point at a .jsonl/.json/.parquet file, or at a directory written by "
                        "Dataset.save_to_disk", "bad_file") from None
    return _rows(_pick_split(ds, split, src), src)


def _read_hub(name: str, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise SourceNotFoundError(
            name, "", f"does not exist locally, and loading it as a Hugging Face hub dataset "
            f"(split {split!r}) failed: {type(exc).__name__}: {exc}",
            "check the local path; for a hub dataset check the name and split, the network "
            "connection (or HF_DATASETS_OFFLINE with a cached copy) and access rights",
            "source_not_found") from exc
    return _rows(_pick_split(ds, split, name), name)


def _pick_split(ds: Any, split: str, src: str) -> Any:
    if isinstance(ds, dict):  # a DatasetDict
        if split not in ds:
            raise DataError(src, "", f"no split {split!r} (splits: {', '.join(ds.keys())})",
                            "pass split= one of those", "bad_file")
        return ds[split]
    return ds


def _rows(ds: Any, src: str) -> Iterator[tuple[str, Any]]:
    for k, record in enumerate(ds):
        yield f"{src}:row {k}", record


def as_record(origin: str, record: Any) -> Mapping:
    """One item `read_source` yielded, as a record: the `DataError` its reading gave is raised, and so is
    ``not_an_object`` for a JSON value that is not an object."""
    if isinstance(record, DataError):
        raise record
    if not isinstance(record, Mapping):
        raise DataError(origin, "", f"record is a JSON {json_type(record)}, not an object",
                        "give each record as one JSON object {...}", "not_an_object")
    return record
