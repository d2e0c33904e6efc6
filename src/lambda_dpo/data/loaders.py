"""Read preference data from files, saved datasets or the hub into validated `PreferenceList`s.

Entry point: ``load_lists(source, format="auto")`` returns ``(lists, report)``. Every record goes
through its format's parser, which ends in ``schema.make_list`` (the checks all formats share).
A record that cannot be used raises ``DataError`` naming where it is (``path:LINE``), the field,
the problem and the fix; with ``skip_bad=True`` it is counted in ``report.rejected`` instead.

Sources
-------
- ``*.jsonl``: one JSON object per line, blank lines ignored. Origin ``"path:LINE"`` (1-based).
- ``*.json``: one JSON array of records. Origin ``"path:record K"`` (K 0-based, as ``data[K]``).
- ``*.parquet``: origin ``"path:row K"`` (K 0-based).
- a directory written by ``datasets``' ``save_to_disk``; a ``DatasetDict`` gives ``split``.
  Origin ``"path:row K"``.
- anything else that does not exist locally is tried as a hub dataset name,
  ``datasets.load_dataset(name, split=split)``. Origin ``"name:row K"``.

Formats
-------
``native`` (this project's listwise JSONL; ``PreferenceList.to_json`` writes it)::

    {"prompt": "What is 2+2?" | [{"role": "user", "content": "..."}, ...],
     "responses": ["4", "5", ...],                       # N >= 2; str, or assistant message(s)
     "ratings": {"helpfulness": [5, 1, ...],             # one per response; higher is better
                 "honesty": [5, null, ...]}}             # null / "N/A" = missing, never invented

  Ratings may be numbers or numeric strings. An optional ``"truncated": [false, true, ...]``
  marks replies that a length limit cut before their writer ended them (a sampler's
  max_new_tokens); they are scored without the chat template's end-of-turn tokens (see
  ``tokenization.py``). `lambda-dpo build-data`'s per-response ``"meta"`` entries say the same with
  ``"hit_max_new_tokens"`` and are read as such. An optional ``"id"`` and other extra keys are
  ignored. An aspect whose value is ``null`` as a whole is treated as not rated for that list
  (Arrow fills absent struct fields with null when a file is converted to parquet).

``ultrafeedback`` (openbmb/UltraFeedback)::

    {"instruction": str,
     "completions": [{"response": str, "model": str,
                      "annotations": {"helpfulness": {"Rating": "4", "Rationale": "..."},
                                      "honesty": {...}, "instruction_following": {...},
                                      "truthfulness": {...}}}, ...]}

  An aspect's annotation is a dict with "Rating" or a 1-element list of such dicts. "N/A"
  gives None (a missing rating). An aspect missing from a completion's annotations is None for
  that response. Lists with 2 or 3 completions are fine. Other keys are ignored.

``helpsteer2`` (nvidia/HelpSteer2): one row per (prompt, response)::

    {"prompt": str, "response": str, "helpfulness": 3, "correctness": 3, "coherence": 4,
     "complexity": 2, "verbosity": 1}

  Rows with the same prompt text form one list (prompts and responses in first-seen order); the
  list's origin is its first row's. HelpSteer2's multi-turn prompts, which separate turns with
  ``<extra_id_1>User`` / ``<extra_id_1>Assistant`` markers, become chat messages. A missing
  aspect column gives None for that row.

``pairwise`` (TRL's preference format), each row a list of 2 = (chosen, rejected) with the one
aspect ``"preference"`` rated ``[1.0, 0.0]`` (a one-hot target: DPO as the N = 2 case)::

    {"prompt": str, "chosen": str, "rejected": str}                                # standard
    {"prompt": [messages], "chosen": [messages], "rejected": [messages]}           # conversational
    {"chosen": [messages], "rejected": [messages]}                                 # implicit prompt

  In the implicit-prompt form the common leading messages are the prompt and the final
  assistant message of each conversation is the response.

``aspects=``: for ``native`` data every aspect must be in the list (a record with another aspect
is rejected, ``unknown_aspect``: it catches typos). For the fixed-schema sources (UltraFeedback,
HelpSteer2, pairwise) ``aspects`` selects which of the source's aspects to keep; naming one the
source does not have raises at once.

Reason keys (``DataError.reason``, the keys of ``LoadReport.rejected``): from this module
``bad_json``, ``bad_encoding``, ``not_an_object``, ``missing_field``, ``bad_prompt_type``,
``empty_prompt``, ``bad_message``, ``bad_responses_type``, ``bad_ratings_type``,
``bad_completion``, ``bad_annotation``, ``bad_response_type``, ``identical_responses``
(implicit prompt with nothing after the common prefix), ``mixed_format``; from
``schema.make_list``/``check_rating``: ``too_few_responses``, ``empty_response``,
``ratings_length``, ``bad_rating_type``, ``non_finite_rating``, ``unknown_aspect``,
``no_usable_aspect``. Errors about the whole source (always raised, never skipped):
``source_not_found``, ``bad_file``, ``unknown_format``, ``unknown_aspect`` (for ``aspects=``),
``empty_source``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .schema import DataError, LoadReport, Message, PreferenceList, check_rating, make_list

__all__ = ["FORMATS", "load_lists", "detect_format", "SourceNotFoundError"]  # FORMATS: at the end, from the parsers


ULTRAFEEDBACK_ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")
HELPSTEER2_ASPECTS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
PAIRWISE_ASPECT = "preference"
# Aspects a fixed-schema format can give; None = any (native).
_FORMAT_ASPECTS: dict[str, tuple[str, ...] | None] = {
    "native": None,
    "ultrafeedback": ULTRAFEEDBACK_ASPECTS,
    "helpsteer2": HELPSTEER2_ASPECTS,
    "pairwise": (PAIRWISE_ASPECT,),
}
_ROLES = ("system", "user", "assistant")
_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class SourceNotFoundError(DataError, FileNotFoundError):
    """The source is neither a local file/directory nor a dataset the hub could give.

    Both a `DataError` (reason ``source_not_found``) and a `FileNotFoundError`.
    """


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_lists(
    source: str | os.PathLike | Iterable[Mapping],
    format: str = "auto",
    *,
    skip_bad: bool = False,
    aspects: Sequence[str] | None = None,
    split: str = "train",
) -> tuple[list[PreferenceList], LoadReport]:
    """Load preference lists from `source` (see the module docstring for sources and formats).

    Args:
        source: a .jsonl/.json/.parquet file, a ``save_to_disk`` directory, a hub dataset name, or
            records in memory (a ``datasets.Dataset`` or any iterable of dicts; origins read
            "<dataset>:row N", counting from 1).
        format: one of `FORMATS`, or "auto" to detect it from the first record (all records
            must then be that format).
        skip_bad: if False the first bad record raises `DataError`; if True bad records are
            counted in ``report.rejected`` (by reason, with the first message as example) and
            loading goes on. Errors about the whole source always raise.
        aspects: native: the allowed aspect names; other formats: the aspects to keep.
        split: the split to take from a ``DatasetDict`` directory or a hub dataset.

    Returns:
        (lists, report): the accepted lists, in source order, and what was read and rejected.
        ``report.records_read`` counts every record (HelpSteer2: every row).
    """
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; use 'auto' or one of {', '.join(FORMATS)}")
    in_memory = not isinstance(source, (str, os.PathLike))
    src = "<dataset>" if in_memory else os.fspath(source)
    aspects = None if aspects is None else tuple(aspects)
    report = LoadReport(source=src, format=format)
    if format != "auto":
        _check_requested_aspects(format, aspects, src)

    lists: list[PreferenceList] = []
    groups: dict[str, _Group] = {}  # helpsteer2: prompt text -> rows so far
    records = (((f"{src}:row {i}", row) for i, row in enumerate(source, start=1)) if in_memory
               else _read_source(src, split))
    for origin, record in records:
        report.records_read += 1
        if report.format == "auto" and isinstance(record, Mapping):
            report.format = detect_format(record, origin=origin)  # never skipped
            _check_requested_aspects(report.format, aspects, src)
        try:
            if isinstance(record, DataError):
                raise record
            if not isinstance(record, Mapping):
                raise DataError(origin, "", f"record is a JSON {_json_type(record)}, not an object",
                                "give each record as one JSON object {...}", "not_an_object")
            try:
                parsed = _PARSERS[report.format](record, origin, aspects)
            except DataError as err:
                if err.reason == "missing_field":
                    _raise_if_other_format(record, origin, report.format, format == "auto")
                raise
            if isinstance(parsed, _Row):
                groups.setdefault(parsed.key, _Group(parsed.prompt, origin)).rows.append(parsed)
            else:
                lists.append(parsed)
        except DataError as err:
            if not skip_bad:
                raise
            report.reject(err)

    for group in groups.values():
        try:
            lists.append(_helpsteer2_list(group, aspects))
        except DataError as err:
            if not skip_bad:
                raise
            report.reject(err)

    if report.records_read == 0:
        raise DataError(src, "", "the source holds no records", "check the path, the file's contents "
                        "and the split", "empty_source")
    if report.format == "auto":  # only unusable records (bad JSON, non-objects) were seen
        report.format = "unknown"
    report.lists = len(lists)
    return lists, report


def detect_format(record: Mapping, *, origin: str = "<record>") -> str:
    """The format of one record, from its keys (see the module docstring).

    Raises DataError (reason ``unknown_format``) naming the keys seen and the formats accepted.
    """
    if not isinstance(record, Mapping):
        raise DataError(origin, "", f"record is a {_json_type(record)}, not an object",
                        "give each record as one JSON object {...}", "not_an_object")
    keys = set(record)
    if "responses" in keys:
        return "native"
    if "completions" in keys:
        return "ultrafeedback"
    if "chosen" in keys or "rejected" in keys:
        return "pairwise"
    if "response" in keys and "prompt" in keys:
        return "helpsteer2"
    seen = ", ".join(repr(k) for k in sorted(map(str, keys))) or "none"
    raise DataError(
        origin, "", f"cannot tell the data format from the record's keys ({seen})",
        "pass format= explicitly, or give records one of the accepted shapes: "
        "native {prompt, responses, ratings}; ultrafeedback {instruction, completions}; "
        "helpsteer2 {prompt, response, helpfulness, ...}; pairwise {prompt, chosen, rejected}",
        "unknown_format")


# --------------------------------------------------------------------------------------------
# Reading sources: each yields (origin, record), or (origin, DataError) for an unreadable record
# --------------------------------------------------------------------------------------------


def _read_source(src: str, split: str) -> Iterator[tuple[str, Any]]:
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
        raise DataError(src, "", f"a .json source must hold an array of records, not a {_json_type(data)}",
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


# --------------------------------------------------------------------------------------------
# Field helpers shared by the parsers
# --------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _require(record: Mapping, key: str, origin: str, fix: str) -> Any:
    if key not in record or record[key] is None:
        raise DataError(origin, key, "missing", fix, "missing_field")
    return record[key]


def _message(value: Any, origin: str, fname: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise DataError(origin, fname, f"message is a {_json_type(value)}", 'give each message as '
                        '{"role": "user" | "assistant" | "system", "content": "..."}', "bad_message")
    role, content = value.get("role"), value.get("content")
    if role not in _ROLES:
        raise DataError(origin, f"{fname}.role", f"role {role!r} is not one of {', '.join(_ROLES)}",
                        "use role system, user or assistant", "bad_message")
    if not isinstance(content, str):
        raise DataError(origin, f"{fname}.content", f"content is a {_json_type(content)}",
                        "give the message content as a string", "bad_message")
    return {"role": role, "content": content}


def _messages(value: Any, origin: str, fname: str) -> list[dict[str, str]]:
    return [_message(m, origin, f"{fname}[{i}]") for i, m in enumerate(value)]


def _prompt(value: Any, origin: str, fname: str = "prompt") -> tuple[Message, ...]:
    """A prompt: a string (one user message) or a list of chat messages not ending in assistant."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(origin, fname, "prompt is empty", "give the prompt text", "empty_prompt")
        return ({"role": "user", "content": value},)
    if isinstance(value, (list, tuple)):
        msgs = _messages(value, origin, fname)
        if not msgs:
            raise DataError(origin, fname, "prompt has no messages", "give at least one user message",
                            "empty_prompt")
        if msgs[-1]["role"] == "assistant":
            raise DataError(origin, f"{fname}[{len(msgs) - 1}]", "prompt ends with an assistant message",
                            "end the prompt with the user's turn; put replies in the responses",
                            "bad_message")
        return tuple(msgs)
    raise DataError(origin, fname, f"prompt is a {_json_type(value)}",
                    'give a string, or a list of {"role", "content"} messages', "bad_prompt_type")


def _response(value: Any, origin: str, fname: str) -> str:
    """A response: a string, or an assistant message (alone, or last of a list); returns its text."""
    fix = ("give the response as a string, or as one assistant message "
           '{"role": "assistant", "content": "..."}')
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value):
        last = (_message(value, origin, fname) if isinstance(value, Mapping)
                else _message(value[-1], origin, f"{fname}[{len(value) - 1}]"))
        if last["role"] == "assistant":
            return last["content"]
        raise DataError(origin, fname, f"the last message has role {last['role']!r}, not 'assistant'",
                        fix, "bad_response_type")
    what = "an empty array" if isinstance(value, (list, tuple)) else f"a {_json_type(value)}"
    raise DataError(origin, fname, f"response is {what}", fix, "bad_response_type")


def _raise_if_other_format(record: Mapping, origin: str, fmt: str, detected: bool) -> None:
    try:
        other = detect_format(record, origin=origin)
    except DataError:
        return
    if other != fmt:
        how = "detected from the first record" if detected else "as format= asks"
        raise DataError(origin, "", f"record looks like {other} data, but the source is read as {fmt} ({how})",
                        "keep one format per source, or convert the records", "mixed_format")


def _check_requested_aspects(fmt: str, aspects: tuple[str, ...] | None, src: str) -> None:
    known = _FORMAT_ASPECTS.get(fmt)
    if aspects is None or known is None:
        return
    unknown = [a for a in aspects if a not in known]
    if unknown:
        raise DataError(src, "aspects", f"{fmt} data has no aspect {', '.join(map(repr, unknown))} "
                        f"(it has: {', '.join(known)})", "choose aspects from that list", "unknown_aspect")


# --------------------------------------------------------------------------------------------
# One parser per format: (record, origin, aspects) -> PreferenceList (HelpSteer2: one row)
# --------------------------------------------------------------------------------------------


def _parse_native(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    fix_shape = 'give {"prompt": ..., "responses": [...], "ratings": {"aspect": [...]}}'
    prompt = _prompt(_require(record, "prompt", origin, fix_shape), origin)
    raw_responses = _require(record, "responses", origin, fix_shape)
    if not isinstance(raw_responses, (list, tuple)):
        raise DataError(origin, "responses", f"responses is a {_json_type(raw_responses)}",
                        "give a list of 2 or more responses", "bad_responses_type")
    responses = [_response(r, origin, f"responses[{i}]") for i, r in enumerate(raw_responses)]
    ratings = _require(record, "ratings", origin, fix_shape)
    if not isinstance(ratings, Mapping):
        raise DataError(origin, "ratings", f"ratings is a {_json_type(ratings)}",
                        'give an object {"aspect": [one rating per response], ...}', "bad_ratings_type")
    ratings = {str(a): v for a, v in ratings.items() if v is not None}
    return make_list(prompt, responses, ratings, origin, known_aspects=aspects,
                     truncated=_native_truncated(record, len(responses), origin))


def _native_truncated(record: Mapping, n: int, origin: str) -> Any:
    """The record's per-response cut flags: its ``truncated`` list (checked in make_list), else the
    ``hit_max_new_tokens`` of `lambda-dpo build-data`'s per-response ``meta``; None when it has neither."""
    if record.get("truncated") is not None:
        return record["truncated"]
    meta = record.get("meta")
    if isinstance(meta, list) and any(isinstance(m, Mapping) and "hit_max_new_tokens" in m for m in meta):
        flags = [m.get("hit_max_new_tokens") if isinstance(m, Mapping) else None for m in meta]
        if len(flags) != n or not all(isinstance(f, bool) for f in flags):
            raise DataError(origin, "meta", f"hit_max_new_tokens is {flags!r}, not one true/false per response",
                            "give every meta entry a boolean hit_max_new_tokens, one entry per response", "bad_truncated")
        return flags
    return None


def _uf_annotation(value: Any, origin: str, fname: str) -> float | None:
    """One UltraFeedback aspect annotation -> its rating (None for "N/A" or nothing)."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            return None
        if len(value) > 1:
            raise DataError(origin, fname, f"{len(value)} annotations for one aspect",
                            'give one {"Rating": ...} per aspect', "bad_annotation")
        value, fname = value[0], f"{fname}[0]"
    if value is None or isinstance(value, (str, int, float)):
        return check_rating(value, origin, fname)
    if not isinstance(value, Mapping):
        raise DataError(origin, fname, f"annotation is a {_json_type(value)}",
                        'give {"Rating": "1".."5" or "N/A", ...}', "bad_annotation")
    if "Rating" not in value:
        raise DataError(origin, f"{fname}.Rating", "missing", 'give {"Rating": "1".."5" or "N/A", ...}',
                        "missing_field")
    return check_rating(value["Rating"], origin, f"{fname}.Rating")


def _parse_ultrafeedback(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    fix_shape = 'give {"instruction": ..., "completions": [{"response": ..., "annotations": {...}}, ...]}'
    prompt = _prompt(_require(record, "instruction", origin, fix_shape), origin, "instruction")
    completions = _require(record, "completions", origin, fix_shape)
    if not isinstance(completions, (list, tuple)):
        raise DataError(origin, "completions", f"completions is a {_json_type(completions)}",
                        "give a list of completions", "bad_completion")
    responses: list[str] = []
    per_response: list[dict[str, float | None]] = []
    for i, c in enumerate(completions):
        fname = f"completions[{i}]"
        if not isinstance(c, Mapping):
            raise DataError(origin, fname, f"completion is a {_json_type(c)}",
                            'give {"response": ..., "annotations": {...}}', "bad_completion")
        responses.append(_response(_require(c, "response", origin, 'give {"response": "...", ...}'),
                                   origin, f"{fname}.response"))
        ann = c.get("annotations") or {}
        if not isinstance(ann, Mapping):
            raise DataError(origin, f"{fname}.annotations", f"annotations is a {_json_type(ann)}",
                            'give {"helpfulness": {"Rating": ...}, ...}', "bad_annotation")
        per_response.append({str(a): _uf_annotation(v, origin, f"{fname}.annotations.{a}")
                             for a, v in ann.items()
                             if aspects is None or a in aspects})
    if aspects is not None:
        names = list(aspects)
    else:  # the standard four in their usual order, then any others as first seen
        seen = {a: None for r in per_response for a in r}
        names = [a for a in ULTRAFEEDBACK_ASPECTS if a in seen] + [a for a in seen if a not in ULTRAFEEDBACK_ASPECTS]
    ratings = {a: [r.get(a) for r in per_response] for a in names}
    return make_list(prompt, responses, ratings, origin)


@dataclass
class _Row:  # one HelpSteer2 row, checked
    key: str
    prompt: tuple[Message, ...]
    response: str
    ratings: dict[str, float | None]
    origin: str


@dataclass
class _Group:  # HelpSteer2 rows sharing a prompt
    prompt: tuple[Message, ...]
    origin: str
    rows: list[_Row] = field(default_factory=list)


_HS2_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def _helpsteer2_prompt(text: str) -> tuple[Message, ...]:
    """HelpSteer2 multi-turn prompts mark turns with "<extra_id_1>User" / "<extra_id_1>Assistant"."""
    parts = _HS2_TURN.split(text)
    msgs = [{"role": "user", "content": parts[0]}]
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": role.lower(), "content": content})
    return tuple(msgs)


def _parse_helpsteer2(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> _Row:
    fix_shape = 'give {"prompt": "...", "response": "...", "helpfulness": 0-4, ...}'
    text = _require(record, "prompt", origin, fix_shape)
    if not isinstance(text, str):
        raise DataError(origin, "prompt", f"prompt is a {_json_type(text)}", "give the prompt text as a "
                        "string (rows are grouped by it)", "bad_prompt_type")
    prompt = _prompt(text, origin)
    if "<extra_id_1>" in text:
        prompt = _helpsteer2_prompt(text)
    response = _response(_require(record, "response", origin, fix_shape), origin, "response")
    names = aspects if aspects is not None else HELPSTEER2_ASPECTS
    ratings = {a: check_rating(record.get(a), origin, a) for a in names}
    return _Row(text, prompt, response, ratings, origin)


def _helpsteer2_list(group: _Group, aspects: tuple[str, ...] | None) -> PreferenceList:
    names = aspects if aspects is not None else HELPSTEER2_ASPECTS
    ratings = {a: [row.ratings[a] for row in group.rows] for a in names}
    try:
        return make_list(group.prompt, [row.response for row in group.rows], ratings, group.origin)
    except DataError as err:
        if err.reason != "too_few_responses":
            raise
        raise DataError(group.origin, "prompt", f"only {len(group.rows)} usable row has this prompt; rows "
                        "with the same prompt text form one list, which needs 2 or more responses",
                        "add rows with other responses to this prompt, or skip it (skip_bad)",
                        "too_few_responses") from None


def _parse_pairwise(record: Mapping, origin: str, aspects: tuple[str, ...] | None) -> PreferenceList:
    fix_shape = 'give {"prompt": ..., "chosen": ..., "rejected": ...}'
    chosen = _require(record, "chosen", origin, fix_shape)
    rejected = _require(record, "rejected", origin, fix_shape)
    if record.get("prompt") is not None:
        prompt = _prompt(record["prompt"], origin)
        responses = [_response(chosen, origin, "chosen"), _response(rejected, origin, "rejected")]
    else:
        prompt, responses = _split_implicit_prompt(chosen, rejected, origin)
    return make_list(prompt, responses, {PAIRWISE_ASPECT: [1.0, 0.0]}, origin)


def _split_implicit_prompt(chosen: Any, rejected: Any, origin: str) -> tuple[tuple[Message, ...], list[str]]:
    """TRL's implicit prompt: the messages chosen and rejected share are the prompt."""
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(conv, (list, tuple)):
            raise DataError(origin, "prompt", f"missing, and {name} is a {_json_type(conv)}, not a conversation",
                            "add a prompt, or give chosen and rejected as full conversations "
                            "(lists of messages) that share the prompt", "missing_field")
    c, r = _messages(chosen, origin, "chosen"), _messages(rejected, origin, "rejected")
    k = 0
    while k < min(len(c), len(r)) and c[k] == r[k]:
        k += 1
    if k == 0:
        raise DataError(origin, "prompt", "missing, and chosen and rejected share no leading messages",
                        "add a prompt, or start both conversations with the same prompt messages",
                        "missing_field")
    responses = []
    for name, conv in (("chosen", c), ("rejected", r)):
        rest = conv[k:]
        if not rest:
            raise DataError(origin, name, "nothing follows the prompt shared with the other conversation",
                            "make chosen and rejected end in different assistant replies",
                            "identical_responses")
        if len(rest) != 1 or rest[0]["role"] != "assistant":
            raise DataError(origin, name, f"after the shared prompt come {len(rest)} message(s), not one "
                            "assistant reply", "make each conversation the shared prompt plus one final "
                            "assistant message", "bad_response_type")
        responses.append(rest[0]["content"])
    return _prompt(c[:k], origin), responses


_PARSERS: dict[str, Callable[[Mapping, str, tuple[str, ...] | None], Any]] = {
    "native": _parse_native,
    "ultrafeedback": _parse_ultrafeedback,
    "helpsteer2": _parse_helpsteer2,
    "pairwise": _parse_pairwise,
}
FORMATS = tuple(_PARSERS)  # the values of `format` besides "auto": one parser each
