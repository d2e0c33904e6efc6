"""Round-robin timing in one process: every setting once per round, so drift of a shared machine
(other jobs, memory first touched, thermal or frequency changes) hits every setting alike.

Used by bench_attention.py (kernel x precision), bench_layouts.py (layout x precision) and
generation_variants.py, with the command-line options and result files they share.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
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


def add_common_args(ap, tag: str) -> None:
    """The options every round-robin script shares: threads, model, where the results go."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tag", default=tag, help="results file name (default %(default)s)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))


def environment(args) -> dict:
    """What a result depends on besides its settings: CPU, torch threads and version, model."""
    import torch

    from lambda_dpo.precision import cpu_bf16_features

    allocator = {k: v for k, v in os.environ.items() if k == "LD_PRELOAD" or k.startswith("MALLOC_")}
    openmp = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "KMP_", "GOMP_"))}
    return {"cpu": platform.processor() or platform.machine(), "cpu_model": _cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": list(cpu_bf16_features()),
            "threads": args.threads, "model": args.model, "torch": torch.__version__,
            "allocator": allocator or "default", "openmp": openmp or "default"}


def _cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The "model name" line of /proc/cpuinfo (hosts differ between sessions), or "unknown"."""
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def save(args, record: dict, lines: list[str]) -> None:
    """bench/results/<tag>.json (the record) and .md (the table lines), and print the table."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps(record, indent=1))
    (out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_and_start(ap, argv) -> "argparse.Namespace":
    """Parse the command line, silence library warnings and set the torch thread count."""
    import warnings

    import torch

    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    return args


def lora_models(args, dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> dict:
    """{dtype: model} for each of `dtypes`: args.model in that precision with the bench's LoRA (r16)."""
    from lambda_dpo.models import load_model
    from workload import add_lora

    return {dtype: add_lora(load_model(args.model, dtype=dtype)) for dtype in dtypes}
