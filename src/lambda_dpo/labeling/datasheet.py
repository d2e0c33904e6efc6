"""The datasheet of a labeled file: how it was made and what it holds, as JSON and as Markdown.

Computed from the files themselves (the records, the skipped prompts) and the run's input report, so
after a resumed run it describes the whole file: counts of lists and replies, replies cut by the token
budget, the prompts skipped by reason (unusable input records, ``empty_reply``, ``no_usable_aspect``,
...), and per aspect the judge, how many ratings were kept from the input, judged, and missing (by
reason: a judge's failures), and the ratings' range, mean and, for 1-5 integer ratings, histogram.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Mapping, Sequence

from ..atomic import atomic_write_text
from .inputs import InputReport
from .output import OutputPaths, read_records

__all__ = ["datasheet", "format_datasheet", "write_datasheet"]


def _aspect_stats(records: Sequence[Mapping], aspect: str) -> dict[str, Any]:
    values = [v for r in records for v in r["ratings"].get(aspect) or () if v is not None]
    n_missing = sum(v is None for r in records for v in r["ratings"].get(aspect) or ())
    prov = [r.get("provenance", {}).get("ratings", {}).get(aspect, {}) for r in records]
    reasons: Counter = Counter()
    for p in prov:
        reasons.update(p.get("missing", {}))
    judges = sorted({p["judge"] for p in prov if p.get("judge")})
    stats: dict[str, Any] = {
        "judge": judges[0] if len(judges) == 1 else judges, "rated": len(values), "missing": n_missing,
        "missing_by_reason": dict(reasons.most_common()), "kept": sum(p.get("kept", 0) for p in prov),
        "judged": sum(p.get("judged", 0) for p in prov),
        "usable_lists": sum(1 for r in records if r["ratings"].get(aspect) and all(
            v is not None for v in r["ratings"][aspect])),
    }
    if values:
        mean = sum(values) / len(values)
        stats.update(min=min(values), max=max(values), mean=mean,
                     std=math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))
        if all(float(v).is_integer() and 1 <= v <= 5 for v in values):
            stats["histogram_1_5"] = [sum(v == k for v in values) for k in range(1, 6)]
    return stats


def datasheet(paths: OutputPaths, report: InputReport, run: Mapping[str, Any]) -> dict[str, Any]:
    """The datasheet's figures (JSON-ready) for the files in `paths`; `run` holds this run's timing and counts."""
    records = read_records(paths.records)
    skipped = read_records(paths.skipped)
    settings = json.loads(paths.settings.read_text(encoding="utf-8")) if paths.settings.exists() else {}
    aspects = list(dict.fromkeys(a for r in records for a in r.get("ratings", {})))
    sizes = [len(r["responses"]) for r in records]
    cut = sum(bool(m.get("hit_max_new_tokens")) for r in records for m in r.get("meta") or () if isinstance(m, dict))
    skip_reasons = Counter(s["skipped"]["reason"] for s in skipped if "skipped" in s)
    return {
        "output": str(paths.records),
        "fingerprint": settings.get("fingerprint"),
        "settings": settings.get("settings", {}),
        "run": dict(run),
        "input": {"source": report.source, "records_read": report.records_read, "usable_prompts": report.usable,
                  "rejected": dict(report.rejected.most_common()), "first_of_each": dict(report.examples)},
        "lists": len(records),
        "replies": sum(sizes),
        "replies_per_list": {"min": min(sizes), "mean": sum(sizes) / len(sizes), "max": max(sizes)} if sizes else {},
        "replies_cut": cut,
        "skipped": {"total": len(skipped), "by_reason": dict(skip_reasons.most_common()),
                    "first_of_each": {k: next(s["skipped"].get("message", "") for s in skipped
                                              if s.get("skipped", {}).get("reason") == k) for k in skip_reasons}},
        "aspects": {a: _aspect_stats(records, a) for a in aspects},
    }


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _settings_lines(settings: Mapping[str, Any]) -> list[str]:
    lines = [f"- input: `{settings.get('input')}` (prompt field: {settings.get('prompt_field')})",
             f"- replies: {settings.get('n_responses')} per prompt from `{settings.get('model')}`, seed "
             f"{settings.get('seed')}, max_new_tokens {settings.get('max_new_tokens')}, batches of "
             f"{settings.get('batch_size')} prompts" + (", order shuffled" if settings.get("shuffle") else "")
             + (" (replies the input gives are kept)" if not settings.get("resample") else "")]
    for k, slot in enumerate(settings.get("slots", [])):
        system = f"system prompt {json.dumps(slot['system'])}" if slot.get("system") else "no system prompt"
        lines.append(f"  - slot {k}: {system}, temperature {slot['temperature']}, top_p {slot['top_p']}")
    lines.append("- judges" + (" (ratings the input gives are kept; only missing ones judged):"
                               if settings.get("keep_ratings") else ":"))
    for judge in settings.get("judges", []):
        lines.append(f"  - `{json.dumps(judge, ensure_ascii=False, sort_keys=True)}`")
    return lines


def format_datasheet(sheet: Mapping[str, Any]) -> str:
    """The datasheet as Markdown."""
    run, inp, skipped = sheet["run"], sheet["input"], sheet["skipped"]
    lines = [f"# Datasheet: {sheet['output']}", "",
             "Listwise records written by `lambda-dpo label` (native format: `lambda-dpo validate-data` and "
             "`lambda-dpo train` read them). Each record's `provenance` says how it was made.", "",
             "## How it was made", "", f"Config fingerprint `{sheet['fingerprint']}`.", "",
             *_settings_lines(sheet["settings"]), "",
             f"Last run: started {run.get('started')}, finished {run.get('finished')} (UTC), {run.get('written', 0)} "
             f"list(s) written and {run.get('skipped', 0)} prompt(s) skipped in it; {run.get('done_before', 0)} "
             "prompt(s) were done before it.", "",
             "## Counts", "",
             f"- input: {inp['records_read']} record(s) read, {inp['usable_prompts']} usable prompt(s)",
             f"- lists written: {sheet['lists']}, replies: {sheet['replies']}"
             + (f" ({sheet['replies_per_list']['min']}-{sheet['replies_per_list']['max']} per list)"
                if sheet["replies_per_list"] else ""),
             f"- replies cut by max_new_tokens: {sheet['replies_cut']}",
             f"- prompts skipped: {sum(inp['rejected'].values()) + skipped['total']}"]
    for reason, count in inp["rejected"].items():
        lines.append(f"  - {reason}: {count} (input; first: {inp['first_of_each'][reason]})")
    for reason, count in skipped["by_reason"].items():
        lines.append(f"  - {reason}: {count} (first: {skipped['first_of_each'][reason]})")
    lines += ["", "## Ratings per aspect", "",
              "| aspect | judge | kept | judged | missing | usable lists | min | mean | max | 1..5 histogram |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for aspect, st in sheet["aspects"].items():
        hist = " ".join(map(str, st["histogram_1_5"])) if "histogram_1_5" in st else ""
        lines.append(f"| {aspect} | {st['judge']} | {st['kept']} | {st['judged']} | {st['missing']} | "
                     f"{st['usable_lists']}/{sheet['lists']} | {_fmt(st.get('min', ''))} | {_fmt(st.get('mean', ''))} "
                     f"| {_fmt(st.get('max', ''))} | {hist} |")
    reasons = [(a, st["missing_by_reason"]) for a, st in sheet["aspects"].items() if st["missing_by_reason"]]
    lines += ["", "Missing ratings by reason: " + ("; ".join(
        f"{a}: " + ", ".join(f"{k} {v}" for k, v in r.items()) for a, r in reasons) if reasons else "none") + ".",
              "", "A missing rating is never filled in: training drops that aspect for that list.", ""]
    return "\n".join(lines)


def write_datasheet(paths: OutputPaths, report: InputReport, run: Mapping[str, Any]) -> dict[str, Any]:
    """Write NAME.datasheet.json and NAME.datasheet.md beside the records; returns the figures."""
    sheet = datasheet(paths, report, run)
    atomic_write_text(paths.datasheet_json, json.dumps(sheet, indent=2, ensure_ascii=False, default=str) + "\n")
    atomic_write_text(paths.datasheet_md, format_datasheet(sheet))
    return sheet
