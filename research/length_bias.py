"""How much of the demo data's ratings is reply length (numbers quoted in research/steering-study.md).

    python research/length_bias.py [train.jsonl|eval.jsonl ...]   # default: both shipped files

Per aspect: Spearman of word count with rating over all replies, and, among lists whose ratings
for that aspect differ, how often the shortest / longest reply is rated best (ties count).
Then the within-list Spearman of a pure length scorer (Delta := word count) with
r_informativeness - r_conciseness, the measure the steering study reports for Delta.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lambda_dpo.demo.dataset import ASPECTS, demo_data_dir
from lambda_dpo.evaluation.ranks import spearman
from lambda_dpo.evaluation.delta import delta_summary, word_count


def main(files: list[str]) -> int:
    for name in files or ["train.jsonl", "eval.jsonl"]:
        path = Path(name) if Path(name).exists() else Path(str(demo_data_dir())) / name
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        print(f"{path.name}: {len(recs)} lists")
        for a in ASPECTS:
            words = [word_count(r) for rec in recs for r in rec["responses"]]
            ratings = [x for rec in recs for x in rec["ratings"][a]]
            differ = short = long = 0
            for rec in recs:
                w, r = [word_count(x) for x in rec["responses"]], rec["ratings"][a]
                if len(set(r)) > 1:
                    differ += 1
                    short += r[w.index(min(w))] == max(r)
                    long += r[w.index(max(w))] == max(r)
            print(f"  {a}: Spearman(words, rating) {spearman(words, ratings):+.2f}; best is the shortest in "
                  f"{short}/{differ} lists, the longest in {long}/{differ}")
        n = max(len(rec["responses"]) for rec in recs)
        grid = lambda f: torch.tensor([[float(v) for v in f(rec)] + [0.0] * (n - len(rec["responses"]))  # noqa: E731
                                       for rec in recs])
        mask = torch.tensor([[True] * len(rec["responses"]) + [False] * (n - len(rec["responses"])) for rec in recs])
        length = delta_summary(grid(lambda rec: map(word_count, rec["responses"])),
                               grid(lambda rec: rec["ratings"]["informativeness"]),
                               grid(lambda rec: rec["ratings"]["conciseness"]), mask)
        print(f"  a length scorer's within-list Spearman with r_inf - r_conc: {length['spearman']:.2f} "
              f"({length['lists']} lists)")
    return 0


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # no argparse here: the docstring is the usage
        print(__doc__)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
