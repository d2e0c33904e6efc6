"""The scheduler study's metrics -> report.md (one row per lambda source, over seeds) and scheduler.png
(the adaptive arms' candidate probabilities and held-out performance over training)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic import atomic_write_text
from .report import headless_pyplot
from .tables import mean_std, snippet_section, table

logger = logging.getLogger(__name__)


def candidate_names(candidates: list[list[float]], aspects: list[str]) -> list[str]:
    """'conciseness' for a vertex, 'centre' for the uniform mixture, 'random 1' ... for the Dirichlet draws."""
    names, k = [], 0
    for c in candidates:
        if max(c) == 1.0:
            names.append(aspects[c.index(1.0)])
        elif max(c) - min(c) < 1e-6:
            names.append("centre")
        else:
            k += 1
            names.append(f"random {k}")
    return names


def arm_rows(m: dict) -> list[list[str]]:
    rows = []
    for name, runs in m["runs"].items():
        st = [r["steerability"] for r in runs]
        rob = [r["robustness"] for r in runs]
        rows.append([name, mean_std([s["hypervolume"] for s in st]), mean_std([s["spearman"]["words"] for s in st]),
                     mean_std([r["worst"] for r in rob]), mean_std([r["spread"] for r in rob]),
                     *[mean_std([r["own_vertex"][a] for r in rob]) for a in m["aspects"]],
                     mean_std([r["mean_words"][-1] / r["mean_words"][0] if r["mean_words"][0] else float("nan")
                               for r in runs])])
    return rows


def render(m: dict) -> str:
    a, b = m["conflict"]
    head = [f"# How training draws lambda ({len(m['seeds'])} seed{'s' * (len(m['seeds']) > 1)})", "",
            f"`{m['model']}`, the steering recipe at {m['budget']['steered_steps']} steps but for the lambda source; "
            f"{m['prompts']} dev prompts (held out of the training split), greedy replies judged by the demo's "
            "judges (1-5). Mean ± sample std "
            "over seeds.", "",
            f"- front: the {a}-{b} edge at {b} weights {', '.join(f'{w:g}' for w in m['sweep'])}, hypervolume from "
            "(1, 1); Spearman of the weight with reply words per prompt, averaged;",
            "- vertex: each aspect's score under its own vertex lambda (one aspect alone); worst and spread "
            "(max - min) over the aspects: robustness as the paper means it.", ""]
    body = table(["lambda source", "front HV", "Spearman (words)", "worst own-vertex score", "spread",
                  *[f"{x} at its vertex" for x in m["aspects"]], f"words at {b} / at {a}"], arm_rows(m))
    plot = ["", "![scheduler](scheduler.png)", "",
            "The adaptive arms: each candidate's sampling probability (left) and held-out performance, the "
            "signal's input (right), at every update.", ""] if _traces(m) else []
    runs = [r for arm in m["runs"].values() for r in arm]
    spent = f"{sum(r['seconds'] for r in runs) / 60:.0f} min over its {len(runs)} runs at {m['torch_threads']} threads"
    return "\n".join(head + [snippet_section("table", body)] + plot + [f"Training and measurement: {spent}.", ""])


def _traces(m: dict) -> list[tuple[str, dict]]:
    return [(f"{name}, seed {r['seed']}", r) for name, runs in m["runs"].items() for r in runs if r["schedule"]]


def plot_schedules(m: dict, path: Path, plt) -> None:
    traces = _traces(m)
    fig, axes = plt.subplots(len(traces), 2, figsize=(10, 2.6 * len(traces)), squeeze=False)
    for (label, r), (left, right) in zip(traces, axes):
        names = candidate_names(r["candidates"], m["aspects"])
        steps = [u["step"] for u in r["schedule"]]
        for i, name in enumerate(names):
            left.plot(steps, [u["probs"][i] for u in r["schedule"]], marker=".", label=name)
            right.plot(steps, [u["perf"][i] for u in r["schedule"]], marker=".", label=name)
        left.set_title(f"{label}: probability", fontsize=8)
        right.set_title(f"{label}: held-out performance (weighted NDCG)", fontsize=8)
        left.set_ylim(0, 1)
    axes[0][1].legend(fontsize=6, ncols=2)
    axes[-1][0].set_xlabel("optimiser step")
    axes[-1][1].set_xlabel("optimiser step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_scheduler_report(m: dict, out: Path) -> Path:
    """report.md, and scheduler.png when matplotlib is installed and an arm is adaptive."""
    plt = headless_pyplot()
    if plt is None:
        logger.warning("the scheduler study's plot needs matplotlib (pip install 'lambda-dpo[plots]')")
    elif _traces(m):
        plot_schedules(m, out / "scheduler.png", plt)
    atomic_write_text(out / "report.md", render(m))
    return out / "report.md"
