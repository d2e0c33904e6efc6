"""How large a front could any choice among the replies the demo's models wrote reach?

Reads a `lambda-dpo demo` metrics.json (one run or a merge) and, for each prompt set, pools every judged
reply to each prompt: every model (the steered one and each control given the text) at every weight, every
seed. An oracle then picks, per prompt, the reply that maximises (1 - t) * score_a + t * score_b, for t on a
fine grid in [0, 1]; each t gives one point (mean scores over the prompts), and the oracle's front is the set
of those points. Its hypervolume bounds what a model can reach by writing, for each prompt, replies like the
ones these models wrote, chosen as well as possible (a model writing other replies can go beyond it).

Printed per set: the oracle's HV with t on a fine grid and at nine t; per model (mean over seeds), its HV and
the share of the nine-point oracle it reaches, 1.5 times it (the margin the steering criteria ask of the steered
model over each control) as a share of the oracle, and the oracle restricted to that model's own replies (the
best of its nine replies per prompt).

    python research/front_ceiling.py docs/demo-full/metrics.json [docs/demo-full-mixed/metrics.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lambda_dpo.evaluation.protocol import hypervolume


def sweeps(metrics: dict, set_name: str):
    """(model label, seed, sweep) for every front swept on `set_name`."""
    base = metrics["base_with_text"]["fronts"].get(set_name)
    if base:
        yield "base + text", None, base["sweep"]
    for label, per_seed in metrics["runs"].items():
        for seed, run in per_seed.items():
            front = run.get("fronts", {}).get(set_name)
            if front:
                yield label, seed, front["sweep"]


def pooled(sws, a: str, b: str) -> list[list[tuple[float, float]]]:
    """Per prompt: every (score_a, score_b) of the given sweeps."""
    pool: list[list[tuple[float, float]]] = []
    for sw in sws:
        sa, sb = sw["scores"][a], sw["scores"][b]
        for wi in range(len(sa)):
            for p, (x, y) in enumerate(zip(sa[wi], sb[wi])):
                while len(pool) <= p:
                    pool.append([])
                pool[p].append((x, y))
    return pool


def oracle_front(pool, ts) -> list[tuple[float, float]]:
    """One point per t: the mean (score_a, score_b) of the replies maximising (1 - t) a + t b, per prompt."""
    pts = []
    for t in ts:
        picks = [max(c, key=lambda s: (1 - t) * s[0] + t * s[1]) for c in pool]
        pts.append((sum(s[0] for s in picks) / len(picks), sum(s[1] for s in picks) / len(picks)))
    return pts


def best_subset_hv(points, k: int, ref=(1.0, 1.0)) -> float:
    """The largest HV of any k of `points` (exact: dynamic programming over the non-dominated points)."""
    pts = sorted({(x, y) for x, y in points if x > ref[0] and y > ref[1]}, key=lambda q: (-q[0], -q[1]))
    front, top = [], ref[1]
    for x, y in pts:  # x falls, y must rise
        if y > top:
            front.append((x, y))
            top = y
    # best[j][c]: the largest HV of c chosen points whose last (highest y) is front[j]
    best = [[0.0] * (k + 1) for _ in front]
    for j, (x, y) in enumerate(front):
        best[j][1] = (x - ref[0]) * (y - ref[1])
        for c in range(2, k + 1):
            best[j][c] = max([best[i][c - 1] + (x - ref[0]) * (y - front[i][1]) for i in range(j)], default=0.0)
    return max((max(row) for row in best), default=0.0)


def main(paths: list[str]) -> None:
    fine = [i / 200 for i in range(201)]
    nine = [0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1]
    for path in paths:
        m = json.loads(Path(path).read_text())
        a, b = m["conflict"]
        print(f"# {path} ({m.get('decoding', 'prompt')} decoding, seeds {m.get('seeds')})")
        for set_name in m["sets"]:
            sws = list(sweeps(m, set_name))
            if not sws:
                continue
            pool = pooled([sw for _, _, sw in sws], a, b)
            points = oracle_front(pool, fine)
            all_t, nine_t = hypervolume(points), best_subset_hv(points, len(nine))
            print(f"{set_name}: oracle over every model's replies {all_t:.2f} (its best {len(nine)} points: {nine_t:.2f}; "
                  f"at the sweep's t: {hypervolume(oracle_front(pool, nine)):.2f})")
            for label in dict.fromkeys(lab for lab, _, _ in sws):
                hvs = [front_hv(sw, a, b) for lab, _, sw in sws if lab == label]
                mean = sum(hvs) / len(hvs)
                own = [hypervolume(oracle_front(pooled([sw], a, b), fine)) for lab, _, sw in sws if lab == label]
                print(f"  {label:<20} HV {mean:.2f} ({mean / nine_t:.0%} of the nine-point oracle); 1.5x = {1.5 * mean:.2f} "
                      f"({1.5 * mean / nine_t:.0%}); best of its own replies per prompt {sum(own) / len(own):.2f}")


def front_hv(sw: dict, a: str, b: str) -> float:
    """The HV of a sweep's front: mean scores over the prompts at each weight."""
    return hypervolume([(sum(x) / len(x), sum(y) / len(y)) for x, y in zip(sw["scores"][a], sw["scores"][b])])


if __name__ == "__main__":
    main(sys.argv[1:])
