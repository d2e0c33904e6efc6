"""The loss comparison's metrics -> report.md (tables, a verdict per aspect) and its plots (matplotlib, headless).

scores.png: the mean judge score per aspect of every method with its 95% interval; win_rates.png: the
share of prompts where each method's reply beats, ties or loses to DPO best-vs-worst's, per aspect.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic import atomic_write_text
from .report import headless_pyplot
from .tables import snippet_section, table

logger = logging.getLogger(__name__)
ORDER = ("base", "lambda_dpo", "dpo_best_worst", "dpo_all_pairs", "plackett_luce", "lipo_lambda")
LABELS = {"base": "untrained base", "lambda_dpo": "lambda-DPO (listwise, uniform mixture)",
          "dpo_best_worst": "DPO best-vs-worst", "dpo_all_pairs": "DPO all pairs", "plackett_luce": "Plackett-Luce",
          "lipo_lambda": "LiPO-lambda"}


def ci(x: dict, digits: int = 2) -> str:
    """'mean [lo, hi]'."""
    return f"{x['mean']:.{digits}f} [{x['lo']:.{digits}f}, {x['hi']:.{digits}f}]"


def _methods(m: dict) -> list[str]:
    return sorted(m["summary"], key=lambda k: ORDER.index(k) if k in ORDER else len(ORDER))


def verdict(m: dict, method: str = "lambda_dpo") -> str:
    """Where `method`'s paired difference against the anchor has an interval that excludes 0, per aspect."""
    row = m["summary"].get(method, {}).get("vs_anchor")
    if not row:
        return ""
    better, worse, level = [], [], []
    for key in [*m["aspects"], "mean"]:
        d = row[key]["difference"]
        (better if d["lo"] > 0 else worse if d["hi"] < 0 else level).append(f"{key} ({d['mean']:+.2f})")
    parts = [f"better on {', '.join(better)}" if better else "",
             f"worse on {', '.join(worse)}" if worse else "",
             f"no difference its interval can tell on {', '.join(level)}" if level else ""]
    return (f"{LABELS.get(method, method)} against {LABELS[m['anchor']]}, paired by seed and prompt (judge points, "
            f"95% interval excludes 0): " + "; ".join(p for p in parts if p) + ".")


def render(m: dict) -> str:
    aspects, methods, s = m["aspects"], _methods(m), m["summary"]
    b = m["budget"]
    head = [f"# Listwise vs pairwise at equal data and compute ({len(m['seeds'])} seeds)", "",
            f"`{m['model']}`; each loss trained {b['max_steps']} steps of 2 lists (the demo's `{m['preset']}` preset) "
            f"with the same learning rate and beta (not tuned per loss), lambda fixed at the uniform mixture and "
            f"never shown; {m['prompts']} held-out prompts, greedy replies "
            f"of up to {b['max_new_tokens']} tokens judged by the demo's judges (1-5). Means with 95% bootstrap "
            f"intervals over seeds and prompts.", "", snippet_section("verdict", verdict(m)), ""]
    scores = table(["method", *aspects, "mean", "words", "KL to reference (nats)"],
                   [[LABELS.get(k, k), *[ci(s[k]["judge"][a]) for a in aspects], ci(s[k]["judge"]["mean"]),
                     ci(s[k]["words"], 1), ci(s[k]["kl"]) if "kl" in s[k] else "0 (is the reference)"]
                    for k in methods])
    wins = table(["method", *aspects, "mean of aspects"],
                 [[LABELS.get(k, k), *[_wtl(s[k]["vs_anchor"][a]) for a in [*aspects, "mean"]]]
                  for k in methods if "vs_anchor" in s[k]])
    diffs = table(["method", *aspects, "mean of aspects"],
                  [[LABELS.get(k, k), *[ci(s[k]["vs_anchor"][a]["difference"]) for a in [*aspects, "mean"]]]
                   for k in methods if "vs_anchor" in s[k]])
    listwise = table(["method", *[f"{a} {f}" for f in ("top-1", "NDCG") for a in aspects]],
                     [[LABELS.get(k, k), *[ci(s[k]["listwise"][f"{a}/{f}"]) for f in ("top1", "ndcg") for a in aspects]]
                      for k in methods if "listwise" in s[k]])
    return "\n".join(head + [
        "## Judge scores of greedy replies", "", snippet_section("scores", scores), "", "![scores](scores.png)", "",
        f"## Against {LABELS[m['anchor']]}: win / tie / loss per prompt", "",
        "Share of (seed, prompt) pairs where the method's reply scores higher / the same / lower.", "",
        snippet_section("wins", wins), "", "![win rates](win_rates.png)", "",
        "Paired difference of judge scores (method minus DPO best-vs-worst):", "", snippet_section("differences", diffs), "",
        "## Held-out listwise ranking of the implicit reward", "",
        "Top-1: the response the model's implicit reward ranks first is the best rated; NDCG of its order.", "",
        snippet_section("listwise", listwise), "", f"Wall time: {m['wall_seconds'] / 60:.0f} min at {m['torch_threads']} threads.",
        ""])


def _wtl(x: dict) -> str:
    return f"{x['win']['mean']:.2f} / {x['tie']['mean']:.2f} / {x['loss']['mean']:.2f}"


def plot_scores(m: dict, path: Path, plt) -> None:
    aspects, methods, s = [*m["aspects"], "mean"], _methods(m), m["summary"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(methods)
    for i, k in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(aspects))]
        vals = [s[k]["judge"][a] for a in aspects]
        ax.bar(xs, [v["mean"] for v in vals], width, label=LABELS.get(k, k),
               yerr=[[v["mean"] - v["lo"] for v in vals], [v["hi"] - v["mean"] for v in vals]], capsize=2)
    ax.set_xticks(range(len(aspects)), aspects)
    ax.set_ylabel("judge score (1-5), 95% interval")
    ax.set_ylim(1, 5)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_win_rates(m: dict, path: Path, plt) -> None:
    aspects, s = [*m["aspects"], "mean"], m["summary"]
    methods = [k for k in _methods(m) if "vs_anchor" in s[k]]
    fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 3.5), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], methods):
        bottom = [0.0] * len(aspects)
        for part, colour in (("win", "tab:green"), ("tie", "tab:gray"), ("loss", "tab:red")):
            vals = [s[k]["vs_anchor"][a][part]["mean"] for a in aspects]
            ax.bar(range(len(aspects)), vals, bottom=bottom, color=colour, label=part)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(LABELS.get(k, k), fontsize=8)
        ax.set_xticks(range(len(aspects)), aspects, rotation=45, ha="right", fontsize=7)
    axes[0][0].set_ylabel(f"share of prompts vs {LABELS[m['anchor']]}")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_loss_report(m: dict, out: Path) -> Path:
    """report.md, and scores.png / win_rates.png when matplotlib is installed."""
    plt = headless_pyplot()
    if plt is None:
        logger.warning("the loss comparison's plots need matplotlib (pip install 'lambda-dpo[plots]')")
    else:
        plot_scores(m, out / "scores.png", plt)
        plot_win_rates(m, out / "win_rates.png", plt)
    atomic_write_text(out / "report.md", render(m))
    return out / "report.md"
