"""Markdown tables and figures over seeds for the demo's reports, and the ablation's report (ablation.md)."""

from __future__ import annotations

import math
from pathlib import Path


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def snippet_section(name: str, text: str) -> str:
    """`text` between markers that a docs page includes by name (pymdownx.snippets' sections)."""
    return f"<!-- --8<-- [start:{name}] -->\n{text}\n<!-- --8<-- [end:{name}] -->"


def mean_std(values: list[float]) -> str:
    """'mean ± sample std' over the defined values; says how many seeds when some are undefined."""
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.2f}" + (f" (1/{len(values)} seeds)" if len(values) > 1 else "")
    return f"{mean:.2f} ± {std(vals):.2f}" + (f" ({len(vals)}/{len(values)} seeds)" if len(vals) < len(values) else "")


def std(values: list[float]) -> float:
    """Sample std of the defined values; nan with fewer than two."""
    vals = [v for v in values if not math.isnan(v)]
    if len(vals) < 2:
        return float("nan")
    mean = sum(vals) / len(vals)
    return (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5


def nanmean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def preset_text(m: dict) -> str:
    """`quick` (24 steps, ...) from the metrics' preset name and budget (older files: budget only)."""
    budget = m.get("budget", m["preset"] if isinstance(m["preset"], dict) else {})
    name = m["preset"] if isinstance(m["preset"], str) else "?"
    grid = "full lambda grid" if budget.get("full_grid") else "vertices, centre and the conflict edge"
    return (f"`{name}` ({budget.get('max_steps')} training steps, {budget.get('eval_lists')} held-out lists, "
            f"{budget.get('gen_prompts')} prompts x {budget.get('max_new_tokens')} new tokens per lambda, {grid})")


def ablation_rows(m: dict) -> list[dict]:
    """Per method, the lists over seeds of each headline figure."""
    rows = []
    for name, per_seed in m["runs"].items():
        runs = list(per_seed.values())
        row = {"method": name,
               "ndcg": [r["listwise"].get("mean/ndcg", float("nan")) for r in runs],
               "top1": [r["listwise"].get("mean/top1", float("nan")) for r in runs],
               "area": [r["summary"]["pareto_area"] for r in runs]}
        for a in m["aspects"]:
            row[f"rho/{a}"] = [r["summary"]["controllability"][a] for r in runs]
        row["rho/mean"] = [nanmean([r["summary"]["controllability"][a] for a in m["aspects"]]) for r in runs]
        rows.append(row)
    return rows


def write_ablation_report(m: dict, out: Path, skipped: dict[str, str]) -> Path:
    rows = ablation_rows(m)
    aspects = m["aspects"]
    header = ["method", "held-out NDCG", "held-out top-1", *[f"rho({a})" for a in aspects], "mean rho",
              f"Pareto area ({m['conflict'][0]} x {m['conflict'][1]})"]
    body = [[r["method"], mean_std(r["ndcg"]), mean_std(r["top1"]), *[mean_std(r[f"rho/{a}"]) for a in aspects],
             mean_std(r["rho/mean"]), mean_std(r["area"])] for r in rows]

    def winner(key, label, digits):
        scored = sorted(((nanmean(r[key]), r["method"], std(r[key])) for r in rows
                         if r["method"] != "base" and not math.isnan(nanmean(r[key]))), reverse=True)
        if not scored:
            return f"- {label}: n/a"
        (m1, _, s1), line = scored[0], f"- {label}: `{scored[0][1]}` ({scored[0][0]:.{digits}f})"
        if len(scored) > 1:
            m2, n2, s2 = scored[1]
            noise = max((x for x in (s1, s2) if not math.isnan(x)), default=float("nan"))
            clear = not math.isnan(noise) and m1 - m2 > noise
            line += (f", ahead of `{n2}` by {m1 - m2:.{digits}f}: "
                     + ("more than" if clear else "within") + f" the larger seed std of the two ({noise:.{digits}f})")
        return line

    verdict = [winner("ndcg", "highest held-out NDCG", 3), winner("rho/mean", "highest mean controllability", 2),
               winner("area", "largest Pareto area", 2)]
    text = f"""# lambda-dpo ablation: lambda source x conditioning

Preset {preset_text(m)}, seeds {m['seeds']}, model `{m['model']}`, {m['torch_threads']} torch threads,
wall time {m['wall_seconds']:.0f} s. Equal budget for every method (same data, steps, optimiser).
Figures are mean ± sample std over seeds. rho: Spearman correlation between lambda_k and the
aspect-k judge score over the lambda grid; n/a where it is undefined because that judge score did
not change with lambda (always so when the model never sees lambda), with the number of seeds
where it was defined in brackets. mean rho: over the aspects where rho is defined.

{table(header, body)}

Winners (means over seeds):
{chr(10).join(verdict)}

Combinations not run, and why:
{chr(10).join(f"- {k}: {v}" for k, v in skipped.items())}
"""
    path = out / "ablation.md"
    path.write_text(text)
    return path
