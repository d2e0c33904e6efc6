"""Read preference data from files, saved datasets or the hub into validated `PreferenceList`s.

Entry point: ``load_lists(source, format="auto")`` returns ``(lists, report)``. `sources` reads the
source into records (jsonl, json, parquet, a ``save_to_disk`` directory, a hub dataset name); each
record goes through its format's parser (`formats`: native, ultrafeedback, helpsteer2, pairwise, one
module each with the record's shape), which ends in ``schema.make_list`` (the checks all formats
share). A record that cannot be used raises ``DataError`` naming where it is (``path:LINE``), the
field, the problem and the fix; with ``skip_bad=True`` it is counted in ``report.rejected`` instead.

``aspects=``: for ``native`` data every aspect must be in the list (a record with another aspect
is rejected, ``unknown_aspect``: it catches typos). For the fixed-schema sources (UltraFeedback,
HelpSteer2, pairwise) ``aspects`` selects which of the source's aspects to keep; naming one the
source does not have raises at once.

Reason keys (``DataError.reason``, the keys of ``LoadReport.rejected``): from the parsers and
sources ``bad_json``, ``bad_encoding``, ``not_an_object``, ``missing_field``, ``bad_prompt_type``,
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

import os
from typing import Iterable, Mapping, Sequence

from .fields import json_type
from .formats import FORMAT_ASPECTS, FORMATS, PARSERS, helpsteer2
from .schema import DataError, LoadReport, PreferenceList
from .sources import SourceNotFoundError, as_record, read_source

__all__ = ["FORMATS", "load_lists", "detect_format", "SourceNotFoundError"]


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
    groups: dict[str, helpsteer2.Group] = {}  # helpsteer2: prompt text -> rows so far
    records = (((f"{src}:row {i}", row) for i, row in enumerate(source, start=1)) if in_memory
               else read_source(src, split))
    for origin, record in records:
        report.records_read += 1
        if report.format == "auto" and isinstance(record, Mapping):
            report.format = detect_format(record, origin=origin)  # never skipped
            _check_requested_aspects(report.format, aspects, src)
        try:
            record = as_record(origin, record)
            try:
                parsed = PARSERS[report.format](record, origin, aspects)
            except DataError as err:
                if err.reason == "missing_field":
                    _raise_if_other_format(record, origin, report.format, format == "auto")
                raise
            if isinstance(parsed, helpsteer2.Row):
                groups.setdefault(parsed.key, helpsteer2.Group(parsed.prompt, origin)).rows.append(parsed)
            else:
                lists.append(parsed)
        except DataError as err:
            if not skip_bad:
                raise
            report.reject(err)

    for group in groups.values():
        try:
            lists.append(helpsteer2.group_list(group, aspects))
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
        raise DataError(origin, "", f"record is a {json_type(record)}, not an object",
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
    known = FORMAT_ASPECTS.get(fmt)
    if aspects is None or known is None:
        return
    unknown = [a for a in aspects if a not in known]
    if unknown:
        raise DataError(src, "aspects", f"{fmt} data has no aspect {', '.join(map(repr, unknown))} "
                        f"(it has: {', '.join(known)})", "choose aspects from that list", "unknown_aspect")


# --------------------------------------------------------------------------------------------
