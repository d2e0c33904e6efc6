"""Demo metrics -> a steering-first report.md and two plots (matplotlib, headless).

Input: the dict `demo.run_demo` writes to metrics.json. Figures over seeds are mean ± sample std;
every target of issue 11 is computed here from those numbers, with its verdict.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .report import _f, _mean_std, _nanmean, _std, _table  # noqa: E402
from .steering import pareto_front  # noqa: E402

STEERED = "lambda_dpo_steered"


def _seeds(m: dict, name: str) -> list[dict]:
    return list(m["runs"][name].values())


def edge_curves(m: dict) -> dict[str, dict[str, list[float]]]:
    """Per model ('steered' over seeds, 'base'): mean words and each aspect's mean score at each w."""
    def curve(edges: list[dict]) -> dict[str, list[float]]:
        n = len(m["edge_ws"])
        out = {"words": [_nanmean([e["points"][i]["mean_words"] for e in edges]) for i in range(n)],
               "words_std": [_std([e["points"][i]["mean_words"] for e in edges]) for i in range(n)]}
        for a in m["aspects"]:
            out[a] = [_nanmean([e["points"][i]["scores"][a] for e in edges]) for i in range(n)]
        return out

    return {"steered": curve([r["edge"] for r in _seeds(m, STEERED)]), "base": curve([m["base_with_text"]["edge"]])}


TIE = 1e-9
"""Means over seeds of fractions such as top-1 are compared with this slack: (0.8 + 0.85 + 0.75) / 3
is 0.7999999999999999 in floating point and (0.775 + 0.8 + 0.825) / 3 is 0.8, a tie either way."""


def _at_least(value: float, bound: float) -> bool:
    return value >= bound - TIE


def targets(m: dict) -> list[tuple[str, str, str, bool]]:
    """(target, measured, required, met) for every target, from the held-out numbers."""
    a0, a1 = m["conflict"]
    runs, base, dpo = _seeds(m, STEERED), m["base_with_text"], _seeds(m, "dpo_best_worst")
    curves = edge_curves(m)
    sw, bw = curves["steered"]["words"], curves["base"]["words"]
    ratio, base_ratio = sw[-1] / max(sw[0], 1e-9), bw[-1] / max(bw[0], 1e-9)
    top1 = {a: _nanmean([r["listwise"].get(f"{a}/top1", float("nan")) for r in runs]) for a in m["aspects"]}
    dpo_top1 = {a: _nanmean([r["listwise"].get(f"{a}/top1", float("nan")) for r in dpo]) for a in m["aspects"]}
    rho = {a0: -_nanmean([r["edge"]["summary"]["spearman"][a0] for r in runs]),  # lambda_a0 = 1 - w
           a1: _nanmean([r["edge"]["summary"]["spearman"][a1] for r in runs])}
    d_rho, d_base = _nanmean([r["delta"]["spearman"] for r in runs]), base["delta"]["spearman"]
    centre = {a: _nanmean([r["centre"]["scores"][a] for r in runs]) for a in m["aspects"]}
    dpo_single = {a: _nanmean([r["single"]["scores"][a] for r in dpo]) for a in m["aspects"]}
    dpo_pt = (dpo_single[a0], dpo_single[a1])
    front = [(x, y) for x, y in zip(curves["steered"][a0], curves["steered"][a1])]
    rows = [
        (f"top-1 at the {a0} vertex", _f(top1[a0]), ">= 0.90", _at_least(top1[a0], 0.90)),
        (f"top-1 at the {a1} vertex", _f(top1[a1]), ">= 0.75", _at_least(top1[a1], 0.75)),
        ("mean words rise strictly with w (5 points)", " / ".join(f"{w:.0f}" for w in sw),
         "strictly increasing", all(b > a for a, b in zip(sw, sw[1:]))),
        (f"Spearman(lambda_{a0}, {a0} score) along the edge", _f(rho[a0]), ">= 0.9", _at_least(rho[a0], 0.9)),
        (f"Spearman(lambda_{a1}, {a1} score) along the edge", _f(rho[a1]), ">= 0.9", _at_least(rho[a1], 0.9)),
        ("mean words, w=1 end / w=0 end", f"{ratio:.2f}x", ">= 3x", _at_least(ratio, 3)),
        ("word ratio over the base model's with the same text", f"{ratio:.2f} / {base_ratio:.2f} = "
         f"{ratio / base_ratio:.2f}x", ">= 1.5x", _at_least(ratio / base_ratio, 1.5)),
        ("Spearman of Delta over the base model's", f"{_f(d_rho)} / {_f(d_base)} = {_f(d_rho / d_base)}x",
         ">= 1.5x", d_base > 0 and _at_least(d_rho / d_base, 1.5)),
    ]
    for a in m["aspects"]:
        if a not in (a0, a1):
            rows.append((f"top-1 at the {a} vertex vs DPO best-vs-worst", f"{_f(top1[a])} vs {_f(dpo_top1[a])}",
                         ">= DPO", _at_least(top1[a], dpo_top1[a])))
            rows.append((f"{a} judge score at the centre lambda vs DPO", f"{_f(centre[a])} vs {_f(dpo_single[a])}",
                         ">= DPO - 0.1", _at_least(centre[a], dpo_single[a] - 0.1)))
    if "lambda_dpo_fixed" in m["runs"]:  # the `default` preset does not train it
        fixed_pt = tuple(_nanmean([r["single"]["scores"][a] for r in _seeds(m, "lambda_dpo_fixed")]) for a in (a0, a1))
        rows.append(("steered front dominates the lambda-fixed point",
                     f"fixed at ({_f(fixed_pt[0])}, {_f(fixed_pt[1])})", "some edge point >= on both",
                     any(_at_least(x, fixed_pt[0]) and _at_least(y, fixed_pt[1]) for x, y in front)))
    not_dominated = any(not (dpo_pt[0] >= x and dpo_pt[1] >= y and dpo_pt != (x, y)) for x, y in front)
    rows.append(("steered front not dominated by the DPO point", f"DPO at ({_f(dpo_pt[0])}, {_f(dpo_pt[1])})",
                 "some edge point not dominated", not_dominated))
    return rows


def plot_edge(m: dict, path: Path) -> None:
    """Mean words and the conflicting pair's judge scores against w, steered vs base (same text) vs DPO."""
    a0, a1 = m["conflict"]
    ws, curves = m["edge_ws"], edge_curves(m)
    panels = [("words", "mean words per reply"), (a0, f"{a0} judge score (1-5)"), (a1, f"{a1} judge score (1-5)")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (key, label) in zip(axes, panels):
        s = curves["steered"][key]
        err = curves["steered"]["words_std"] if key == "words" and len(m["seeds"]) > 1 else None
        ax.errorbar(ws, s, yerr=err, marker="o", label=f"lambda-DPO steered ({len(m['seeds'])} seeds)")
        ax.plot(ws, curves["base"][key], marker="s", linestyle="--", label="base model, same lambda text")
        for name, style in (("dpo_best_worst", ":"), ("lambda_dpo_fixed", "-.")):
            if name not in m["runs"]:
                continue
            vals = [r["single"]["mean_words" if key == "words" else "scores"] for r in _seeds(m, name)]
            y = _nanmean([v if key == "words" else v[key] for v in vals])
            ax.axhline(y, linestyle=style, color="grey", label=f"{name} (lambda not seen)")
        ax.set_xlabel(f"w = lambda_{a1}")
        ax.set_ylabel(label)
        ax.set_xticks(ws)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Held-out prompts, greedy replies along the {a0}-{a1} edge (lambda_{a0} = 1 - w)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(m: dict, path: Path) -> None:
    """Judge scores on the conflicting pair: the steered edge (colour = w), base, DPO and fixed points."""
    a0, a1 = m["conflict"]
    curves = edge_curves(m)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for key, marker, label in (("steered", "o", "lambda-DPO steered, edge points"),
                               ("base", "s", "base model, same lambda text")):
        xs, ys = curves[key][a0], curves[key][a1]
        ax.plot(xs, ys, linestyle="--", alpha=0.4)
        sc = ax.scatter(xs, ys, c=m["edge_ws"], cmap="viridis", marker=marker, s=50, label=label, zorder=3)
    fig.colorbar(sc, ax=ax, label=f"w = lambda_{a1}")
    for name, marker in (("dpo_best_worst", "D"), ("lambda_dpo_fixed", "X")):
        if name not in m["runs"]:
            continue
        pts = [r["single"]["scores"] for r in _seeds(m, name)]
        ax.scatter(_nanmean([p[a0] for p in pts]), _nanmean([p[a1] for p in pts]), marker=marker, s=80,
                   color="black" if marker == "D" else "red", label=name, zorder=4)
    front = pareto_front(list(zip(curves["steered"][a0], curves["steered"][a1])))
    ax.plot(*zip(*front), color="tab:blue", alpha=0.3, linewidth=4, label="steered Pareto front")
    ax.set_xlabel(f"{a0} (mean judge score, 1-5)")
    ax.set_ylabel(f"{a1} (mean judge score, 1-5)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _listwise_table(m: dict) -> str:
    aspects = m["aspects"]
    rows = []
    for name in m["runs"]:
        rows.append([name, *[_mean_std([r["listwise"].get(f"{a}/top1", float("nan")) for r in _seeds(m, name)])
                             for a in aspects]])
    rows.append(["base model, same lambda text", *[_f(m["base_with_text"]["listwise"].get(f"{a}/top1"))
                                                   for a in aspects]])
    rows += [[f"pick: {k}", *[_f(v[f"{a}/top1"]) for a in aspects]] for k, v in m["baselines"].items()]
    return _table(["model", *[f"{a} top-1" for a in aspects]], rows)


def _edge_table(m: dict) -> str:
    a0, a1 = m["conflict"]
    rows = []
    for i, w in enumerate(m["edge_ws"]):
        pts = [r["edge"]["points"][i] for r in _seeds(m, STEERED)]
        bp = m["base_with_text"]["edge"]["points"][i]
        rows.append([f"{w:.2f}", _mean_std([p["mean_words"] for p in pts]), f"{bp['mean_words']:.1f}",
                     *[_mean_std([p["scores"][a] for p in pts]) for a in m["aspects"]],
                     _f(bp["scores"][a0]), _f(bp["scores"][a1])])
    head = ["w", "words (steered)", "words (base)", *[f"{a} (steered)" for a in m["aspects"]],
            f"{a0} (base)", f"{a1} (base)"]
    return _table(head, rows)


def _example(m: dict) -> str:
    first = _seeds(m, STEERED)[0]["edge"]["points"]
    picks = [p for p in first if p["w"] in (0.0, 0.5, 1.0)]
    prompt = m.get("example_prompt", "")
    body = "\n\n".join(f"**w = {p['w']:.2f}** ({p['words'][0]} words)\n\n```\n{p['replies'][0]}\n```" for p in picks)
    return (f"> {prompt}\n\n" if prompt else "") + body


def save_demo_outputs(m: dict, out: Path) -> Path:
    """metrics.json, report.md and the plots of demo metrics `m` into `out` (created); returns report.md."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=2))
    return write_steering_report(m, out)


def write_steering_report(m: dict, out: Path) -> Path:
    plot_edge(m, out / "steering.png")
    plot_pareto(m, out / "pareto.png")
    a0, a1 = m["conflict"]
    rows = targets(m)
    met = sum(r[3] for r in rows)
    runs = _seeds(m, STEERED)
    seeds = ", ".join(map(str, m["seeds"]))
    budget = m["budget"]
    sign = [r["edge"]["summary"]["sign_test"]["words"] for r in runs]
    recipe = ", ".join(f"{k}={v}" for k, v in m["recipe"].items())
    regen = m.get("regenerated_from")
    wall = (f"wall time {m['wall_seconds']:.0f} s for the run, whose generations were then redone at this budget "
            f"(`scripts/regenerate_demo.py`, {m.get('wall_seconds_regenerate', float('nan')):.0f} s; the run itself "
            f"generated {regen['max_new_tokens']} new tokens: `{regen['run']}`)" if regen
            else f"wall time {m['wall_seconds']:.0f} s")
    if m.get("stage_seconds"):
        wall += " (" + ", ".join(f"{k} {v:.0f} s" for k, v in m["stage_seconds"].items()) + ")"
    if m.get("listwise_rescored"):  # listwise figures recomputed from the saved models
        wall += f"; listwise figures recomputed from the saved models: `{m['listwise_rescored']['command']}`"
    steps = str(budget["max_steps"])
    if m.get("steered_max_steps", budget["max_steps"]) != budget["max_steps"]:
        steps += f" ({m['steered_max_steps']} for the steered model)"
    if m.get("baselines_from"):  # scripts/heldout_recipe.py: only the steered model was trained in this run
        wall += (f"; only the steered model was trained here: DPO, the lambda-fixed model and the rating-blind picks "
                 f"are those of `{m['baselines_from']}`" + ("" if m.get("base_remeasured") else ", and so is the base "
                 "model given the same text"))
    text = f"""# lambda-dpo demo: does lambda steer the model?

Model `{m['model']}`; seeds {seeds}; {steps} training steps per method, each scoring the
replies of 2 lists (the steered model: 1 list under 2 lambdas);
{budget['eval_lists']} held-out lists (eval.jsonl); {budget['gen_prompts']} held-out prompts x
{budget['max_new_tokens']} new tokens (greedy) per lambda; {m['torch_threads']} torch threads;
{wall}; preset `{m['preset']}`. Figures over seeds: mean ± sample std.

Steered model's recipe (the training defaults): {recipe}.

## Targets ({met} of {len(rows)} met)

{_table(["target", "measured", "required", "met"], [[t, v, req, "yes" if ok else "**no**"] for t, v, req, ok in rows])}

## Along the {a0}-{a1} edge

w is the weight of {a1}; {a0} gets 1 - w, the other aspects 0. The base model is the untrained
model given exactly the same lambda text (steering by the prompt alone).

![steering](steering.png)

{_edge_table(m)}

Paired sign test, words per prompt at w=1 vs w=0 (steered, per seed): {"; ".join(
        f"{s['up']} longer, {s['down']} shorter, {s['ties']} equal, p={s['p_value']:.2g}" for s in sign)}.

## One held-out prompt at three lambdas (steered model, seed {m['seeds'][0]})

{_example(m)}

## Generation-free: Delta = log pi(y | x, {a1}) - log pi(y | x, {a0})

Over every reply of the held-out lists (the reference cancels; 0 for a model that ignores lambda).
Spearman: within each list, of Delta with r_{a1} - r_{a0}, averaged over lists.

{_table(["model", "mean abs Delta (nats)", "Spearman"],
        [["steered", _mean_std([r['delta']['mean_abs_delta'] for r in runs]),
          _mean_std([r['delta']['spearman'] for r in runs])],
         ["base model, same lambda text", _f(m['base_with_text']['delta']['mean_abs_delta']),
          _f(m['base_with_text']['delta']['spearman'])]])}

## Held-out top-1 of the implicit reward at each aspect's vertex

The steered model is conditioned on the aspect's vertex; DPO and lambda-fixed never see lambda.
Rating-blind picks beside them (random: expected accuracy; ties in rating count as correct).

{_listwise_table(m)}

## Trade-off on the conflicting pair

![pareto](pareto.png)
"""
    path = out / "report.md"
    path.write_text(text)
    return path
