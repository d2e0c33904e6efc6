"""Single-seed demo runs -> one multi-seed run: `lambda-dpo demo --merge RUN_DIR ... --out OUT`.

`make demo-full` trains and measures three seeds in one process;
`lambda-dpo demo --preset full --seed N` runs one seed at a time, and merging their metrics.json gives
the report the three-seed run would have written: the same preset and recipe, each seed's figures as
they were measured, the untrained model's (seed-independent) figures from the first run, and the wall
and stage seconds summed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .report import save_demo_outputs

# What must agree for runs to be one experiment (everything but the seeds and the timings).
SAME = ("preset", "budget", "model", "aspects", "conflict", "reference", "grid_step", "other_wording", "decoding",
        "sets", "prompts", "recipe")
OLD_DEFAULTS = {"decoding": "prompt"}  # what runs that did not record a field had


def merge_metrics(runs: Sequence[dict]) -> dict:
    """Merge demo metrics (each a metrics.json dict) of disjoint seeds into one; raises ValueError naming
    the first field on which two runs disagree, or a seed two runs both hold."""
    if not runs:
        raise ValueError("demo --merge: no runs given")
    first = runs[0]
    merged = {**first, "runs": {name: {} for name in first["runs"]}, "seeds": []}
    for i, m in enumerate(runs):
        for key in SAME:
            if m.get(key, OLD_DEFAULTS.get(key)) != first.get(key, OLD_DEFAULTS.get(key)):
                raise ValueError(f"demo --merge: run {i + 1} differs from run 1 in {key!r}; only runs of one preset "
                                 "and recipe (differing in their seeds) can be merged")
        if m.get("remeasured", {}).get("decoding") != first.get("remeasured", {}).get("decoding"):
            raise ValueError(f"demo --merge: run {i + 1} and run 1 differ in whether or from which decoding they were "
                             "measured again (`demo --remeasure`); merge runs made the same way")
        if set(m["runs"]) != set(first["runs"]):
            raise ValueError(f"demo --merge: run {i + 1} trained {sorted(m['runs'])}, run 1 {sorted(first['runs'])}")
        for seed in m["seeds"]:
            if seed in merged["seeds"]:
                raise ValueError(f"demo --merge: seed {seed} is in two runs")
            merged["seeds"].append(seed)
        for name, by_seed in m["runs"].items():
            merged["runs"][name].update(by_seed)
    merged["seeds"].sort()
    merged["runs"] = {name: dict(sorted(by_seed.items(), key=lambda kv: int(kv[0])))
                      for name, by_seed in merged["runs"].items()}
    merged["wall_seconds"] = round(sum(m["wall_seconds"] for m in runs), 1)
    merged["stage_seconds"] = {k: round(sum(m["stage_seconds"].get(k, 0.0) for m in runs), 1)
                               for k in first["stage_seconds"]}
    merged["merged_from"] = len(runs)
    if "remeasured" in first:  # `demo --remeasure` runs: which run each seed's models came from
        merged["remeasured"] = {**first["remeasured"], "from": [m["remeasured"]["from"] for m in runs]}
    return merged


def merge_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Read each run directory's metrics.json, merge them, and write metrics.json, report.md and plots to `out`."""
    metrics = []
    for d in run_dirs:
        path = Path(d) / "metrics.json"
        if not path.exists():
            raise FileNotFoundError(f"demo --merge: {path} not found (a finished `lambda-dpo demo` run writes it)")
        metrics.append(json.loads(path.read_text()))
    out = Path(out)
    save_demo_outputs(merge_metrics(metrics), out)
    return out
