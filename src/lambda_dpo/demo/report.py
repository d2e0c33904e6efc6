"""Demo metrics -> report.md led by the steering verdict, and the plots of the fronts (matplotlib, headless).

Input: the dict `demo.run.run_demo` writes to metrics.json. Figures over seeds are means (± sample std
where there are several). Hypervolumes are compared at the weights every front was swept at, so a
front with more points is not favoured.

matplotlib is an extra (`pip install 'lambda-dpo[plots]'`; `make install` includes it), imported when the
plots are drawn: without it report.md and metrics.json are written all the same, and the report and the
log say what the plots need.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..evaluation.protocol import hypervolume, pick_examples
from .tables import fmt, mean_std, nanmean, table

logger = logging.getLogger(__name__)

PLOTS_EXTRA = "pip install 'lambda-dpo[plots]'"
NO_PLOTS = "the plots (fronts.png, lengths.png) need matplotlib, which is not installed"

STEERED, DPO, FIXED = "lambda_dpo_steered", "dpo_best_worst", "lambda_dpo_fixed"
LABELS = {STEERED: "lambda-DPO steered", "base": "base model + same text", DPO: "DPO + same text",
          FIXED: "lambda-fixed + same text"}
OWN = {STEERED: "lambda-DPO steered (at each vertex)", DPO: "DPO (never sees lambda)",
       FIXED: "lambda-fixed (never sees lambda)"}
DECODING_TEXT = {"prompt": "Every model reads lambda as text in its prompt (prompt decoding).",
                 "mixed": "Every model decodes mixed: each token from the vertices' next-token log-probs weighted by "
                          "lambda (mixed decoding, docs/steering.md); single points under a model's own prompt "
                          "decode plainly."}
SET_TITLES = {"held-out": "held-out demo prompts (rule judges)", "general": "general questions (length judges)"}


def _plain(name: str) -> str:
    """A control's name without "+ same text" (DPO, lambda-fixed)."""
    return LABELS[name].removesuffix(" + same text")


def _runs_of(remeasured: dict) -> str:
    """The run directories a remeasured report's models came from (one, or one per merged run)."""
    runs = remeasured["from"] if isinstance(remeasured["from"], list) else [remeasured["from"]]
    return ", ".join(f"`{r}`" for r in runs)


def _seeds(m: dict, name: str) -> list[dict]:
    return list(m["runs"].get(name, {}).values())


def _fronts(m: dict, name: str) -> list[dict]:
    """The per-seed `fronts` dicts of a model (the base model: one)."""
    return [m["base_with_text"]] if name == "base" else _seeds(m, name)


def _hv_at(front: dict, weights: list[float], ref: list[float]) -> float:
    """Hypervolume of a measured front restricted to `weights`."""
    sweep = front["sweep"]
    a, b = sweep["pair"]
    pts = [(sweep["means"][a][i], sweep["means"][b][i]) for i, w in enumerate(sweep["weights"])
           if any(abs(w - x) < 1e-9 for x in weights)]
    return hypervolume(pts, tuple(ref))


def comparison(m: dict, set_name: str) -> list[dict]:
    """Per model on one prompt set: HV at the controls' weights (mean over seeds), the steered HV over it,
    Spearman of w with reply length, and the share of adjacent weights moving the right way."""
    common = m["budget"]["control_weights"]
    rows = []
    steered_hv = [_hv_at(r["fronts"][set_name], common, m["reference"]) for r in _seeds(m, STEERED)]
    for name in (STEERED, "base", DPO, FIXED):
        runs = _fronts(m, name)
        if not runs or not runs[0]:
            continue
        hv = [_hv_at(r["fronts"][set_name], common, m["reference"]) for r in runs]
        st = [r["fronts"][set_name]["steerability"] for r in runs]
        ratio = nanmean(steered_hv) / nanmean(hv) if nanmean(hv) > 0 else math.inf
        rows.append({"model": name, "hv": hv, "ratio": ratio,
                     "rho_words": [s["spearman"]["words"] for s in st],
                     "right": [s["adjacent"]["words"]["right"] for s in st],
                     "words": [s["end_ratio_words"] for s in st]})
    for name in (DPO, FIXED):
        singles = [r["single"][set_name] for r in _seeds(m, name) if "single" in r]
        if singles:
            hv = [s["hypervolume"] for s in singles]
            rows.append({"model": f"{_plain(name)}, own prompt (one point)", "hv": hv,
                         "ratio": nanmean(steered_hv) / nanmean(hv) if nanmean(hv) > 0 else math.inf,
                         "rho_words": [], "right": [], "words": []})
    return rows


def verdict(m: dict) -> str:
    """One sentence per prompt set: the steered HV against the best control's, and the length ratio."""
    parts = []
    for set_name in m["sets"]:
        rows = comparison(m, set_name)
        steered = rows[0]
        controls = [r for r in rows[1:]]
        worst = min(controls, key=lambda r: r["ratio"]) if controls else None
        ends = [r["fronts"][set_name]["sweep"]["mean_words"] for r in _seeds(m, STEERED)]
        lo, hi = nanmean([e[0] for e in ends]), nanmean([e[-1] for e in ends])
        beats = all(r["ratio"] > 1 for r in controls)
        parts.append(
            f"On the {SET_TITLES[set_name]}, the steered front's hypervolume is {nanmean(steered['hv']):.2f}, "
            + (f"{worst['ratio']:.2f}x that of the strongest control ({LABELS.get(worst['model'], worst['model'])}, "
               f"{nanmean(worst['hv']):.2f})"
               if worst else "with no control measured")
            + f"; {'above every control' if beats else 'NOT above every control'}. Replies grow from "
            f"{lo:.0f} to {hi:.0f} words ({hi / lo if lo else math.inf:.1f}x) between the two ends.")
    return " ".join(parts)


def plot_fronts(m: dict, path: Path, plt) -> None:
    """One panel per prompt set: every model's front on the conflicting pair, HV in the legend."""
    a, b = m["conflict"]
    sets = list(m["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6.2 * len(sets), 5))
    axes = [axes] if len(sets) == 1 else axes
    styles = {STEERED: ("o", "-", "tab:blue"), "base": ("s", "--", "tab:orange"), DPO: ("D", ":", "black"),
              FIXED: ("X", "-.", "tab:red")}
    common = m["budget"]["control_weights"]
    for ax, set_name in zip(axes, sets):
        for name, (marker, line, colour) in styles.items():
            runs = _fronts(m, name)
            if not runs or not runs[0]:
                continue
            sweeps = [r["fronts"][set_name]["sweep"] for r in runs]
            ws = sweeps[0]["weights"]
            xs = [nanmean([s["means"][a][i] for s in sweeps]) for i in range(len(ws))]
            ys = [nanmean([s["means"][b][i] for s in sweeps]) for i in range(len(ws))]
            hv = nanmean([_hv_at(r["fronts"][set_name], common, m["reference"]) for r in runs])
            ax.plot(xs, ys, linestyle=line, color=colour, alpha=0.6)
            ax.scatter(xs, ys, marker=marker, color=colour, s=40, zorder=3, label=f"{LABELS[name]} (HV {hv:.2f})")
            if name == STEERED:
                for x, y, w in zip(xs, ys, ws):
                    ax.annotate(f"{w:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for name, marker, colour in ((DPO, "D", "grey"), (FIXED, "X", "salmon")):
            singles = [r["single"][set_name] for r in _seeds(m, name) if "single" in r]
            if singles:
                x, y = nanmean([s["point"][0] for s in singles]), nanmean([s["point"][1] for s in singles])
                hv = nanmean([s["hypervolume"] for s in singles])
                ax.scatter([x], [y], marker=marker, s=110, color=colour, edgecolor="black", zorder=4,
                           label=f"{_plain(name)}, own prompt (HV {hv:.2f})")
        ax.set_title(SET_TITLES[set_name], fontsize=10)
        ax.set_xlabel(f"{a} (mean judge score, 1-5)")
        ax.set_ylabel(f"{b} (mean judge score, 1-5)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Fronts along the {a}-{b} edge (labels: w = weight of {b}); HV at w = "
                 f"{', '.join(f'{w:g}' for w in common)}, reference point {tuple(m['reference'])}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lengths(m: dict, path: Path, plt) -> None:
    """Mean words per reply against w, every model given the lambda text, one panel per prompt set."""
    sets = list(m["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 3.8))
    axes = [axes] if len(sets) == 1 else axes
    for ax, set_name in zip(axes, sets):
        for name in (STEERED, "base", DPO, FIXED):
            runs = _fronts(m, name)
            if not runs or not runs[0]:
                continue
            sweeps = [r["fronts"][set_name]["sweep"] for r in runs]
            ws = sweeps[0]["weights"]
            ax.plot(ws, [nanmean([s["mean_words"][i] for s in sweeps]) for i in range(len(ws))], marker="o",
                    label=LABELS[name])
        ax.set_title(SET_TITLES[set_name], fontsize=10)
        ax.set_xlabel(f"w = weight of {m['conflict'][1]}")
        ax.set_ylabel("mean words per reply")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headless_pyplot():
    """matplotlib's pyplot on the headless Agg backend; None when matplotlib is not installed (the plots extra)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(m: dict, out: Path) -> bool:
    """fronts.png and lengths.png into `out`; False, with a warning in the log, when matplotlib is missing."""
    plt = headless_pyplot()
    if plt is None:
        logger.warning("%s: %s", NO_PLOTS, PLOTS_EXTRA)
        return False
    plot_fronts(m, out / "fronts.png", plt)
    plot_lengths(m, out / "lengths.png", plt)
    return True


def _comparison_table(m: dict, set_name: str) -> str:
    rows = [[LABELS.get(r["model"], r["model"]), mean_std(r["hv"]),
             "-" if r["model"] == STEERED else f"{r['ratio']:.2f}x", mean_std(r["rho_words"]) if r["rho_words"] else "-",
             mean_std(r["right"]) if r["right"] else "-", mean_std(r["words"]) if r["words"] else "-"]
            for r in comparison(m, set_name)]
    return table(["model", "hypervolume", "steered HV / this", "Spearman(w, words) per prompt",
                  "adjacent weights: words rise", "words w=1 / w=0"], rows)


def _curve_table(m: dict, set_name: str) -> str:
    a, b = m["conflict"]
    runs = _seeds(m, STEERED)
    sweeps = [r["fronts"][set_name]["sweep"] for r in runs]
    base = m["base_with_text"]["fronts"][set_name]["sweep"] if m.get("base_with_text") else None
    seen = m["grid_step"]
    rows = []
    for i, w in enumerate(sweeps[0]["weights"]):
        bi = base["weights"].index(w) if base and w in base["weights"] else None
        unseen = bool(seen) and abs(w / seen - round(w / seen)) > 1e-6
        rows.append([f"{w:.2f}" + (" (unseen)" if unseen else ""), mean_std([s["mean_words"][i] for s in sweeps]),
                     mean_std([s["means"][a][i] for s in sweeps]), mean_std([s["means"][b][i] for s in sweeps]),
                     "-" if bi is None else f"{base['mean_words'][bi]:.1f}"])
    return table(["w", "words", a, b, "words, base + same text"], rows)


def _unseen_table(m: dict, set_name: str) -> str:
    per_seed = [r["fronts"][set_name]["unseen"] for r in _seeds(m, STEERED)]
    if not per_seed or not per_seed[0]:
        return "No weight of the sweep lies between two weights training drew (it drew no grid, or every weight swept)."
    rows = []
    for i, u in enumerate(per_seed[0]):
        rows.append([f"{u['w']:.2f}", f"{u['neighbours'][0]:.2f} / {u['neighbours'][1]:.2f}",
                     mean_std([s[i]["shortfall"] for s in per_seed]),
                     f"{sum(s[i]['on_front'] for s in per_seed)}/{len(per_seed)}",
                     f"{sum(s[i]['between'] for s in per_seed)}/{len(per_seed)}"])
    return table(["unseen w", "seen neighbours", "shortfall against their interpolation",
                  "on the front (<= 5%)", "between the neighbours (words and both scores)"], rows)


def _vertex_table(m: dict, vertices: list[dict], label: str) -> str:
    aspects = list(vertices[0]["matrix"])
    judged = list(vertices[0]["matrix"][aspects[0]])
    rows = [[f"{label} at {k}'s vertex", *[mean_std([v["matrix"][k][j] for v in vertices]) for j in judged]]
            for k in aspects]
    diag = {j: all(v["diagonal_is_column_max"].get(j, False) for v in vertices) for j in judged}
    rows.append(["diagonal is the column's maximum", *["yes" if diag[j] else "**no**" for j in judged]])
    return table(["", *judged], rows)


def _wording_table(m: dict) -> str:
    rows = []
    for set_name in m["sets"]:
        runs = _seeds(m, STEERED)
        ws = m["budget"]["wording_weights"]
        trained = [_hv_at(r["fronts"][set_name], ws, m["reference"]) for r in runs]
        other = [_hv_at(r["other_wording"][set_name], ws, m["reference"]) for r in runs]
        rows.append([SET_TITLES[set_name], mean_std(trained), mean_std(other),
                     f"{nanmean(other) / nanmean(trained):.2f}" if nanmean(trained) > 0 else "n/a"])
    return table(["prompts", "HV, training's wording", f"HV, `{m['other_wording']}` wording", "kept"], rows)


def _quality_table(m: dict) -> str:
    aspects = m["aspects"]
    centre = [r["centre"]["means"] for r in _seeds(m, STEERED)]
    rows = [["lambda-DPO steered at the centre lambda", *[mean_std([c[a] for c in centre]) for a in aspects],
             mean_std([nanmean([c[a] for a in aspects]) for c in centre])]]
    for name in (DPO, FIXED):
        singles = [r["single"]["held-out"]["means"] for r in _seeds(m, name) if "held-out" in r.get("single", {})]
        if singles:
            rows.append([f"{_plain(name)}, own prompt", *[mean_std([s[a] for s in singles]) for a in aspects],
                         mean_std([nanmean([s[a] for a in aspects]) for s in singles])])
    return table(["held-out prompts", *aspects, "mean of all"], rows)


def _examples(m: dict) -> str:
    """Three general questions chosen by rule (25th/50th/75th percentile of the change in length), three weights."""
    set_name = "general" if "general" in m["sets"] else next(iter(m["sets"]))
    sweep = _seeds(m, STEERED)[0]["fronts"][set_name]["sweep"]
    ws = sweep["weights"]
    shown = [i for i, w in enumerate(ws) if w in (ws[0], 0.5, ws[-1])]
    prompts = m.get("prompts", {}).get(set_name, [])
    out = []
    for q in pick_examples(sweep):
        head = f"> {prompts[q]}" if q < len(prompts) else f"prompt {q}"
        body = "\n\n".join(f"**w = {ws[i]:.2f}** ({sweep['words'][i][q]} words)\n\n```\n{sweep['replies'][i][q]}\n```"
                           for i in shown)
        out.append(f"{head}\n\n{body}")
    return "\n\n".join(out)


def _listwise_table(m: dict) -> str:
    aspects = m["aspects"]
    rows = [[OWN.get(name, name), *[mean_std([r["listwise"].get(f"{a}/top1", math.nan) for r in _seeds(m, name)])
                                       for a in aspects]] for name in m["runs"]]
    if m.get("base_with_text"):
        rows.append(["base model + same text", *[fmt(m["base_with_text"]["listwise"].get(f"{a}/top1")) for a in aspects]])
    rows += [[f"pick: {k}", *[fmt(v[f"{a}/top1"]) for a in aspects]] for k, v in (m.get("baselines") or {}).items()]
    return table(["model", *[f"{a} top-1" for a in aspects]], rows)


def _delta_table(m: dict) -> str:
    runs = _seeds(m, STEERED)
    rows = [["lambda-DPO steered", mean_std([r["delta"]["mean_abs_delta"] for r in runs]),
             mean_std([r["delta"]["spearman"] for r in runs])]]
    if m.get("base_with_text"):
        d = m["base_with_text"]["delta"]
        rows.append(["base model + same text", fmt(d["mean_abs_delta"]), fmt(d["spearman"])])
    return table(["model", "mean abs Delta (nats)", "Spearman with the rating difference"], rows)


def save_demo_outputs(m: dict, out: Path) -> Path:
    """metrics.json, report.md and the plots of demo metrics `m` into `out` (created); returns report.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    return write_report(m, out)


def write_report(m: dict, out: Path) -> Path:
    plotted = write_plots(m, out)
    a, b = m["conflict"]
    budget = m["budget"]
    recipe = ", ".join(f"{k}={v}" for k, v in (m.get("recipe") or {}).items())
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in m.get("stage_seconds", {}).items())
    sets = "; ".join(f"{SET_TITLES[k]}: {n}" for k, n in m["sets"].items())
    sections = [f"# lambda-dpo demo: one model, steered by lambda\n\n**{verdict(m)}**\n",
                f"Model `{m['model']}`; seeds {', '.join(map(str, m['seeds']))}; the steered model trained "
                f"{budget['steered_steps']} steps of one list under two lambdas, "
                f"{' and '.join(_plain(n) for n in m['runs'] if n != STEERED)} {budget['max_steps']} steps of two "
                f"lists (as many lists each). {DECODING_TEXT[m.get('decoding', 'prompt')]} Greedy replies of up to "
                f"{budget['max_new_tokens']} new tokens along the {a}-{b} edge, lambda = (1 - w) e_{a} + w e_{b}: "
                f"the steered model at w = {', '.join(f'{w:g}' for w in budget['weights'])}, every control given exactly "
                f"the same lambda text at w = {', '.join(f'{w:g}' for w in budget['control_weights'])}. Prompts ({sets}). "
                f"Hypervolume: the area the front dominates above the reference point {tuple(m['reference'])}, "
                f"compared at the controls' weights. Wall time {m['wall_seconds']:.0f} s ({stages}); "
                f"{m['torch_threads']} torch threads; preset `{m['preset']}`."
                + (" Figures over seeds: mean ± sample std." if len(m["seeds"]) > 1 else "")
                + (f" Measured again under {m['decoding']} decoding from the models of {_runs_of(m['remeasured'])} "
                   f"(`lambda-dpo demo --remeasure`; training time and diagnostics as measured there)."
                   if m.get("remeasured") else ""),
                "![fronts](fronts.png)" if plotted else f"*No plots: {NO_PLOTS} (`{PLOTS_EXTRA}`).*"]
    for set_name in m["sets"]:
        sections += [f"## {SET_TITLES[set_name].capitalize()}", _comparison_table(m, set_name),
                     "Along the edge (steered model; unseen = a weight training never draws):",
                     _curve_table(m, set_name), _unseen_table(m, set_name)]
    sections += (["![lengths](lengths.png)"] if plotted else []) + [
                 "## Vertex matrix (held-out prompts)\n\nMean judge score of each aspect (columns) at each aspect's "
                 "vertex (rows). Steering shows as each column's maximum on the diagonal.",
                 _vertex_table(m, [r["vertices"] for r in _seeds(m, STEERED)], "steered")]
    if m.get("base_with_text"):
        sections.append(_vertex_table(m, [m["base_with_text"]["vertices"]], "base + text"))
    sections += ["## Another wording of lambda\n\nThe steered model read lambda as "
                 f"`{(m.get('recipe') or {}).get('lambda_text')}` in training; here the same weights are written in the "
                 f"`{m['other_wording']}` style (docs/steering.md). Hypervolume at w = "
                 f"{', '.join(f'{w:g}' for w in budget['wording_weights'])}.", _wording_table(m),
                 "## Quality kept: judge scores at the centre lambda", _quality_table(m),
                 "## Three general questions at three weights\n\nChosen by rule, not by hand: the questions at the "
                 "25th, 50th and 75th percentile of the steered model's change in reply length between the ends.",
                 _examples(m),
                 "## Diagnostics: held-out top-1 of the implicit reward at each aspect's vertex",
                 _listwise_table(m),
                 f"## Diagnostics: Delta = log pi(y | x, {b}) - log pi(y | x, {a}) on the held-out lists",
                 _delta_table(m)]
    if recipe:
        sections.append(f"Steered model's recipe (the training defaults): {recipe}.")
    path = out / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    return path
