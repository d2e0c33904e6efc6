"""What a load produced, as numbers (`summarize`) and as text for the CLI (`format_summary`).

``summarize(lists, report)`` returns a JSON-serialisable dict::

    {"source": str, "format": str,
     "records_read": int, "lists_accepted": int, "rejected_total": int,
     "responses_per_list": {"min": int, "mean": float, "max": int,
                            "histogram": {N: number of lists with N responses}},   # int keys, sorted
     "aspects": {name: {"lists": lists carrying the aspect,
                        "lists_usable": lists where every response is rated on it,
                        "ratings": ratings present, "missing_ratings": ratings that are None,
                        "min": float, "max": float, "mean": float}},   # over present ratings
     "rejected": {reason: {"count": int, "example": first message}}}   # most frequent first

Statistics of an empty set are None. ``json.dumps`` writes the histogram's int keys as strings.
"""

from __future__ import annotations

from typing import Sequence

from .schema import LoadReport, PreferenceList

__all__ = ["summarize", "format_summary"]


def summarize(lists: Sequence[PreferenceList], report: LoadReport) -> dict:
    """Counts and rating statistics for `lists`, plus the rejections recorded in `report`."""
    sizes = [lst.n for lst in lists]
    histogram: dict[int, int] = {}
    for n in sorted(sizes):
        histogram[n] = histogram.get(n, 0) + 1

    aspects: dict[str, dict] = {}
    values: dict[str, list[float]] = {}
    for lst in lists:
        for aspect, ratings in lst.ratings.items():
            a = aspects.setdefault(aspect, {"lists": 0, "lists_usable": 0, "ratings": 0, "missing_ratings": 0})
            present = [v for v in ratings if v is not None]
            a["lists"] += 1
            a["lists_usable"] += len(present) == len(ratings)
            a["ratings"] += len(present)
            a["missing_ratings"] += len(ratings) - len(present)
            values.setdefault(aspect, []).extend(present)
    for aspect, a in aspects.items():
        a.update(_stats(values[aspect]))

    rejected = {reason: {"count": count, "example": report.examples.get(reason, "")}
                for reason, count in report.rejected.most_common()}
    return {
        "source": report.source,
        "format": report.format,
        "records_read": report.records_read,
        "lists_accepted": len(lists),
        "rejected_total": report.n_rejected,
        "responses_per_list": {**_stats(sizes), "histogram": histogram},
        "aspects": aspects,
        "rejected": rejected,
    }


def _stats(xs: Sequence[float]) -> dict:
    if not xs:
        return {"min": None, "mean": None, "max": None}
    return {"min": min(xs), "mean": sum(xs) / len(xs), "max": max(xs)}


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if float(x).is_integer() else f"{x:.{digits}f}"


def format_summary(summary: dict) -> str:
    """A few readable lines of a `summarize` result, for the terminal."""
    rpl = summary["responses_per_list"]
    lines = [
        f"source: {summary['source']}  (format: {summary['format']})",
        f"records read: {summary['records_read']}   lists accepted: {summary['lists_accepted']}   "
        f"rejected: {summary['rejected_total']}",
    ]
    if summary["lists_accepted"]:
        hist = ", ".join(f"N={n}: {c}" for n, c in rpl["histogram"].items())
        lines.append(f"responses per list: min {_num(rpl['min'])}, mean {_num(rpl['mean'])}, "
                     f"max {_num(rpl['max'])}  ({hist})")
    if summary["aspects"]:
        lines.append("aspects:")
        width = max(len(a) for a in summary["aspects"])
        for name, a in summary["aspects"].items():
            lines.append(
                f"  {name:<{width}}  usable in {a['lists_usable']}/{summary['lists_accepted']} lists, "
                f"{a['missing_ratings']} missing rating(s), ratings {_num(a['min'])}..{_num(a['max'])} "
                f"(mean {_num(a['mean'])})")
    if summary["rejected"]:
        lines.append(f"rejected records ({summary['rejected_total']}), by reason:")
        for reason, r in summary["rejected"].items():
            lines.append(f"  {reason}: {r['count']}")
            if r["example"]:
                lines.append(f"    first: {r['example']}")
    else:
        lines.append("rejected records: none")
    return "\n".join(lines)
