"""The steering criteria the project set itself, measured on a demo run's metrics.json.

    python research/criteria.py runs/demo-default-1/metrics.json

Prints one Markdown row per criterion: what it asks, what the run measured (means over seeds), and
by how much it is met or missed. The thresholds: the steered front's hypervolume >= 1.5x each control
given the same lambda text and >= 2x the DPO single point; per-prompt Spearman of w with reply length
>= 0.8; each unseen weight of the front of mean scores over seeds within 5% of its neighbours'
interpolation and between them (words and both scores); each of the
conflicting pair's columns of the vertex matrix maximal on the diagonal; the centre lambda's mean
judge score >= DPO's - 0.1; mean words rising strictly across the weights; >= 3x words between the
ends on the general questions.
"""

from __future__ import annotations

import json
import sys

from lambda_dpo.demo.report import DPO, LABELS, STEERED, SET_TITLES, comparison
from lambda_dpo.demo.tables import nanmean, table
from lambda_dpo.evaluation.protocol import unseen_weights


def rows(m: dict) -> list[list[str]]:
    out = []
    runs = list(m["runs"][STEERED].values())
    a, b = m["conflict"]

    def row(what, value, need, ok):
        out.append([what, value, need, "yes" if ok else "**no**"])

    for set_name in m["sets"]:
        where = SET_TITLES[set_name].split(" (")[0]
        for r in comparison(m, set_name)[1:]:
            need = 2.0 if "one point" in r["model"] and r["model"].startswith("DPO") else 1.5
            if "one point" in r["model"] and not r["model"].startswith("DPO"):
                continue
            row(f"{where}: HV over {LABELS.get(r['model'], r['model'])}", f"{r['ratio']:.2f}x", f">= {need}x",
                r["ratio"] >= need)
        rho = nanmean([x["fronts"][set_name]["steerability"]["spearman"]["words"] for x in runs])
        row(f"{where}: Spearman(w, words) per prompt", f"{rho:.2f}", ">= 0.8", rho >= 0.8)
        words = [nanmean([x["fronts"][set_name]["sweep"]["mean_words"][i] for x in runs])
                 for i in range(len(runs[0]["fronts"][set_name]["sweep"]["weights"]))]
        rising = all(v > u for u, v in zip(words, words[1:]))
        row(f"{where}: mean words rise strictly over the weights", " / ".join(f"{w:.0f}" for w in words),
            "strictly rising", rising)
        sweep = runs[0]["fronts"][set_name]["sweep"]
        mean_front = {"pair": [a, b], "weights": sweep["weights"], "mean_words": words,
                      "means": {k: [nanmean([x["fronts"][set_name]["sweep"]["means"][k][i] for x in runs])
                                    for i in range(len(words))] for k in (a, b)}}
        unseen = unseen_weights(mean_front, m["grid_step"], tuple(m["reference"])) if m["grid_step"] else []
        for i, u in enumerate(unseen):
            seeds = sum(x["fronts"][set_name]["unseen"][i]["between"] for x in runs)
            row(f"{where}: unseen w = {u['w']:g} on the front, between its neighbours",
                f"shortfall {u['shortfall']:.1%}, {'between' if u['between'] else 'not between'} "
                f"(between in {seeds} of {len(runs)} seeds)", "<= 5%, between", u["on_front"] and u["between"])
        if set_name == "general":
            ratio = words[-1] / words[0] if words[0] else float("inf")
            row("general questions: words, w = 1 over w = 0", f"{ratio:.2f}x", ">= 3x", ratio >= 3)
    for k in (a, b):
        diag = all(x["vertices"]["diagonal_is_column_max"].get(k, False) for x in runs)
        row(f"vertex matrix: {k}'s column maximal at its vertex", "yes" if diag else "no", "yes", diag)
    centre = nanmean([nanmean(list(x["centre"]["means"].values())) for x in runs])
    dpo = nanmean([nanmean(list(x["single"]["held-out"]["means"].values())) for x in m["runs"][DPO].values()])
    row("centre lambda: mean judge score against DPO's", f"{centre:.2f} vs {dpo:.2f}", ">= DPO - 0.1",
        centre >= dpo - 0.1)
    return out


def main() -> int:
    m = json.loads(open(sys.argv[1]).read())
    print(table(["criterion", "measured", "required", "met"], rows(m)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
