"""Demo metrics -> report.md tables and PNG plots (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .steering import pareto_front  # noqa: E402


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def tables(m: dict) -> dict[str, str]:
    aspects, summary = m["aspects"], m["summary"]
    listwise = [["base", *(["n/a"] * 2 * len(aspects))]] + [
        [name, *[_f(lw.get(f"{a}/{k}", float("nan"))) for a in aspects for k in ("top1", "ndcg")]]
        for name, lw in m["listwise"].items()]
    judge_rows = []
    for name, per_point in m["generation"].items():
        for key, v in per_point.items():
            judge_rows.append([name, "any (lambda not seen)" if key == "any" else key,
                               *[_f(v["scores"][a]) for a in aspects]])
    ctrl = [[name, *[_f(s["controllability"][a]) for a in aspects], _f(s["pareto_area"])]
            for name, s in summary.items()]
    return {
        "listwise": _table(["model", *[f"{a} {k}" for a in aspects for k in ("top-1", "NDCG")]], listwise),
        "judges": _table(["model", "lambda", *aspects], judge_rows),
        "control": _table(["model", *[f"rho({a})" for a in aspects],
                           f"Pareto area ({m['conflict'][0]} x {m['conflict'][1]})"], ctrl),
    }


def shortfalls(m: dict) -> list[str]:
    """Plain statements of where the steered model does not beat a baseline (from the numbers)."""
    steered, out = "lambda_dpo_steered", []
    if steered not in m["generation"]:
        return out
    best = {a: max(v["scores"][a] for v in m["generation"][steered].values()) for a in m["aspects"]}
    for name, per_point in m["generation"].items():
        if name == steered:
            continue
        scores = next(iter(per_point.values()))["scores"]
        for a in m["aspects"]:
            if scores[a] > best[a]:
                out.append(f"{a}: {name} scores {scores[a]:.2f}, above the steered model's best over the grid "
                           f"({best[a]:.2f}).")
    for name, lw in m["listwise"].items():
        if name != steered:
            for a in m["aspects"]:
                mine, theirs = m["listwise"].get(steered, {}).get(f"{a}/ndcg"), lw.get(f"{a}/ndcg")
                if mine is not None and theirs is not None and theirs > mine:
                    out.append(f"held-out NDCG on {a}: {name} {theirs:.3f} > steered {mine:.3f}.")
    area = {n: s["pareto_area"] for n, s in m["summary"].items()}
    for name, a in area.items():
        if name != steered and a >= area.get(steered, 0):
            out.append(f"Pareto area: {name} {a:.2f} >= steered {area[steered]:.2f}.")
    weak = [a for a, r in m["summary"].get(steered, {}).get("controllability", {}).items()
            if math.isnan(r) or r < 0.5]
    if weak:
        out.append("weak or no control (rho < 0.5) over: " + ", ".join(weak) + ".")
    return out


def plot_pareto(m: dict, path: Path) -> None:
    x_name, y_name = m["conflict"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, per_point in m["generation"].items():
        pts = [(v["scores"][x_name], v["scores"][y_name]) for v in per_point.values()]
        if len(pts) > 1:
            ax.scatter(*zip(*pts), label=f"{name} (lambda grid)", zorder=3)
            front = pareto_front(pts)
            ax.plot(*zip(*front), linestyle="--", alpha=0.6)
            for key, (x, y) in zip(per_point, pts):
                lam = per_point[key]["lambda"]
                ax.annotate(f"{lam[x_name]:.2f}/{lam[y_name]:.2f}", (x, y), fontsize=7, alpha=0.7,
                            xytext=(3, 3), textcoords="offset points")
        else:
            ax.scatter(*zip(*pts), marker="s" if name == "base" else "D", s=60, label=name, zorder=4)
    ax.set_xlabel(f"{x_name} (mean judge score, 1-5)")
    ax.set_ylabel(f"{y_name} (mean judge score, 1-5)")
    ax.set_title(f"Held-out generations: {x_name} vs {y_name}\n(labels: lambda_{x_name}/lambda_{y_name})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_control(m: dict, path: Path) -> None:
    steered = m["generation"].get("lambda_dpo_steered")
    if not steered:
        return
    aspects = m["aspects"]
    fig, axes = plt.subplots(1, len(aspects), figsize=(3.2 * len(aspects), 3.2), sharey=True)
    for ax, a in zip(axes, aspects):
        xs = [v["lambda"][a] for v in steered.values()]
        ys = [v["scores"][a] for v in steered.values()]
        ax.scatter(xs, ys)
        for name, per_point in m["generation"].items():
            if len(per_point) == 1:
                ax.axhline(next(iter(per_point.values()))["scores"][a], linestyle=":", alpha=0.7, label=name)
        ax.set_title(f"{a}\nrho={_f(m['summary']['lambda_dpo_steered']['controllability'][a])}", fontsize=9)
        ax.set_xlabel(f"lambda_{a}")
    axes[0].set_ylabel("mean judge score")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def single_seed_view(m: dict) -> dict:
    """The demo's flat view of `compare` output: model -> figures of its first seed."""
    first = {name: next(iter(per_seed.values())) for name, per_seed in m["runs"].items()}
    return {**m, "seed": m["seeds"][0], "listwise": {n: r["listwise"] for n, r in first.items() if n != "base"},
            "generation": {n: r["generation"] for n, r in first.items()},
            "summary": {n: r["summary"] for n, r in first.items()}}


def write_report(m: dict, out: Path) -> Path:
    m = single_seed_view(m)
    t = tables(m)
    plot_pareto(m, out / "pareto.png")
    plot_control(m, out / "controllability.png")
    misses = shortfalls(m)
    ex = m["generation"].get("lambda_dpo_steered", {})
    examples = "\n\n".join(f"**lambda = {k}**\n\n> {v['examples'][0]['prompt']}\n\n```\n{v['examples'][0]['reply']}\n```"
                           for k, v in list(ex.items())[:4])
    text = f"""# lambda-dpo demo report

Preset {preset_text(m)}; model `{m['model']}`; seed {m['seed']}; {m['torch_threads']} torch threads;
wall time {m['wall_seconds']:.0f} s. Methods (same data, steps and optimiser):
{chr(10).join(f"- `{n}`: {', '.join(f'{k}={v}' for k, v in c.items())}" for n, c in m['methods'].items())}

## Held-out listwise metrics of the implicit reward

Each aspect's figures condition the policy on that aspect's vertex (where it sees lambda).
The base model has no implicit reward (it is its own reference), hence n/a.

{t['listwise']}

## Judge scores of held-out generations (mean, 1-5)

{t['judges']}

## Controllability and trade-off

rho(aspect): Spearman correlation between lambda_aspect and the aspect's judge score over the
grid; n/a when the model never sees lambda (its replies do not change). Pareto area: the area
above (1, 1) dominated by the model's points on the conflicting pair (larger is better).

{t['control']}

![pareto](pareto.png)

![controllability](controllability.png)

## Where lambda-DPO does not beat the baselines

{chr(10).join(f"- {s}" for s in misses) if misses else "- In this run, no baseline beats the steered model on any figure above."}

## Example replies of the steered model

{examples}
"""
    path = out / "report.md"
    path.write_text(text)
    return path


def _mean_std(values: list[float]) -> str:
    """'mean ± sample std' over the defined values; says how many seeds when some are undefined."""
    vals = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.2f}" + (f" (1/{len(values)} seeds)" if len(values) > 1 else "")
    return f"{mean:.2f} ± {_std(vals):.2f}" + (f" ({len(vals)}/{len(values)} seeds)" if len(vals) < len(values) else "")


def _std(values: list[float]) -> float:
    """Sample std of the defined values; nan with fewer than two."""
    vals = [v for v in values if not math.isnan(v)]
    if len(vals) < 2:
        return float("nan")
    mean = sum(vals) / len(vals)
    return (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5


def _nanmean(values: list[float]) -> float:
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
        row["rho/mean"] = [_nanmean([r["summary"]["controllability"][a] for a in m["aspects"]]) for r in runs]
        rows.append(row)
    return rows


def write_ablation_report(m: dict, out: Path, skipped: dict[str, str]) -> Path:
    rows = ablation_rows(m)
    aspects = m["aspects"]
    header = ["method", "held-out NDCG", "held-out top-1", *[f"rho({a})" for a in aspects], "mean rho",
              f"Pareto area ({m['conflict'][0]} x {m['conflict'][1]})"]
    body = [[r["method"], _mean_std(r["ndcg"]), _mean_std(r["top1"]), *[_mean_std(r[f"rho/{a}"]) for a in aspects],
             _mean_std(r["rho/mean"]), _mean_std(r["area"])] for r in rows]

    def winner(key, label, digits):
        scored = sorted(((_nanmean(r[key]), r["method"], _std(r[key])) for r in rows
                         if r["method"] != "base" and not math.isnan(_nanmean(r[key]))), reverse=True)
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

{_table(header, body)}

Winners (means over seeds):
{chr(10).join(verdict)}

Combinations not run, and why:
{chr(10).join(f"- {k}: {v}" for k, v in skipped.items())}
"""
    path = out / "ablation.md"
    path.write_text(text)
    return path
