"""Round-robin timing in one process: every setting once per round, so drift of a shared machine
(other jobs, memory first touched, thermal or frequency changes) hits every setting alike.

Used by bench_attention.py (kernel x precision) and bench_layouts.py (layout x precision).
"""

from __future__ import annotations

import statistics
from typing import Callable, Hashable, Sequence


def round_robin(settings: Sequence[Hashable], timed: Callable[[Hashable], list[float]], rounds: int,
                label: str = "") -> dict:
    """Call `timed(setting)` (which returns seconds, one or more per call) for every setting in
    every round, printing each call's figures. Returns {setting: [all seconds]}."""
    times = {s: [] for s in settings}
    for rnd in range(rounds):
        for setting in settings:
            seconds = timed(setting)
            times[setting] += seconds
            name = " ".join(f"{x:>8}" for x in (setting if isinstance(setting, tuple) else (setting,)))
            print(f"{label} round {rnd + 1} {name}: " + " ".join(f"{t:.2f}" for t in seconds) + " s", flush=True)
    return times


def medians(times: dict) -> dict:
    return {s: statistics.median(t) for s, t in times.items()}
