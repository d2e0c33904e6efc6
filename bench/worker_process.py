"""One (method, config) of bench_throughput.py in a fresh process, so its peak RSS is its own.

The parent calls run_worker, which runs `bench_throughput.py --worker METHOD ...` and reads the
record back; the child (bench_throughput.main with --worker) measures and calls serve, which
prints that record as one "RESULT <json>" line on stdout, or an "ERROR <message>" line and exit
code 1 if measuring raised. bench_scaling.py uses run_worker for its points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench/ is not a package: siblings import by name from any directory

from cost_model import token_counts  # noqa: E402
from workload import LABELS  # noqa: E402

SCRIPT = HERE / "bench_throughput.py"


def serve(measure, args) -> int:
    """Child side: print measure(args)'s record as a RESULT line, or its exception as an ERROR line."""
    try:
        record = measure(args)
    except Exception as err:  # reported in the table instead of crashing the whole run
        import traceback

        traceback.print_exc()
        print("ERROR " + f"{type(err).__name__}: {err}".replace("\n", " ")[:500], flush=True)
        return 1
    print("RESULT " + json.dumps(record), flush=True)
    return 0


def run_worker(method: str, p: int, r: int, n: int, args, timeout: float = 1800.0) -> dict:
    """Run `method` on (p, r, n) in a fresh subprocess of bench_throughput.py; a failure becomes an error record."""
    cmd = [sys.executable, str(SCRIPT), "--worker", method, "--prompt-len", str(p),
           "--response-len", str(r), "--n", str(n), "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--min-steps", str(args.min_steps),
           "--max-timed-seconds", str(args.max_timed_seconds), "--model", args.model, "--lora-r", str(args.lora_r),
           "--chunk-size", str(args.chunk_size), "--trl-pairs-per-micro-batch", str(args.trl_pairs_per_micro_batch)]
    if args.trl_gradient_checkpointing:
        cmd.append("--trl-gradient-checkpointing")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    base = {"method": method, "label": LABELS[method], "prompt_len": p, "response_len": r, "n": n,
            **token_counts(method, p, r, n)}
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        why = f"exit code {proc.returncode}"
        if proc.returncode in (-9, 137):
            why += " (killed: out of memory?)"
        err_lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
        if err_lines:
            why += ": " + err_lines[-1][6:]
        return {**base, "error": why, "worker_wall_s": wall}
    record = json.loads(lines[-1][7:])
    record["worker_wall_s"] = wall
    record["loadavg_before"] = load_before
    record["loadavg_after"] = os.getloadavg()
    return record
