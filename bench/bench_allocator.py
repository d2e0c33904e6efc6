"""The C memory allocator under a CPU training step: glibc as is, glibc tuned, tcmalloc, jemalloc.

    python bench/bench_allocator.py                          # 128/64, 3 repeats of each allocator
    python bench/bench_allocator.py --configs 256x128 --repeats 2 --tag allocator_256

A CPU step allocates and frees its activations every time. glibc's malloc serves a block of more
than 32 MB (its largest mmap threshold) with a fresh mapping, and returns the top of its heap to
the kernel once more than its trim threshold is free: either way the next step faults the pages
in again, and the kernel zeroes each one. The allocator is chosen when a process starts
(LD_PRELOAD, MALLOC_* variables), so this script runs `bench_layouts.py` (both layouts, fp32
and mixed, round-robin) once per allocator in a fresh process, cycling through the allocators
`--repeats` times so that the machine's drift spreads over all of them, and reports each
setting's median step over all processes with the speed-up over glibc as is. Allocators whose
library is not installed are skipped (Debian: `apt-get install libtcmalloc-minimal4
libjemalloc2`). Results: bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
               "MALLOC_TOP_PAD_": str(256 << 20)}
ALLOCATORS = {
    "glibc": {},
    "glibc_tuned": GLIBC_TUNED,
    "tcmalloc": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"},
    "jemalloc": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},
}
SETTINGS = ("float32/ours", "float32/naive", "bfloat16/ours", "bfloat16/naive")


def available(env: dict) -> bool:
    return "LD_PRELOAD" not in env or Path(env["LD_PRELOAD"]).exists()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="128x64", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--allocators", default=",".join(ALLOCATORS), help="default %(default)s")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per allocator (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tag", default="allocator")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    names = [a for a in args.allocators.split(",") if available(ALLOCATORS[a])]
    skipped = sorted(set(args.allocators.split(",")) - set(names))
    steps: dict = {a: {} for a in names}  # allocator -> "cfg|setting" -> [s]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name in names:
                tag = f"{name}_{repeat}"
                env = {**os.environ, **ALLOCATORS[name], "OMP_NUM_THREADS": str(args.threads)}
                subprocess.run([sys.executable, str(HERE / "bench_layouts.py"), "--configs", args.configs,
                                "--rounds", "1", "--threads", str(args.threads), "--model", args.model,
                                "--tag", tag, "--out", tmp], env=env, check=True, stdout=subprocess.DEVNULL)
                for cfg, res in json.loads((Path(tmp) / f"{tag}.json").read_text())["results"].items():
                    for setting, times in res["steps_s"].items():
                        steps[name].setdefault(f"{cfg}|{setting}", []).extend(times)
                print(f"repeat {repeat + 1}/{args.repeats} {name}: done", flush=True)
    med = {a: {k: statistics.median(v) for k, v in s.items()} for a, s in steps.items()}
    record = {"threads": args.threads, "model": args.model, "repeats": args.repeats, "allocators":
              {a: ALLOCATORS[a] for a in names}, "skipped": skipped, "steps_s": steps, "median_s": med}
    lines = [f"# C allocator under the training step ({args.threads} threads, N = 4, LoRA r16; each allocator in "
             f"{args.repeats} fresh processes, cycled; median s per list over {2 * args.repeats} timed steps; "
             "speed-up over glibc as is)", "",
             "| P/R | setting | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for cfg in args.configs.split(","):
        for setting in SETTINGS:
            key = f"{cfg}|{setting}"
            base = med["glibc"][key] if "glibc" in med else None
            cells = [f"{med[a][key]:.3f}" + (f" ({base / med[a][key]:.2f}x)" if base else "") for a in names]
            lines.append(f"| {cfg.replace('x', '/')} | {setting.replace('ours', 'prompt_cache')} | "
                         + " | ".join(cells) + " |")
    lines += ["", "| P/R | allocator | prompt_cache over naive, fp32 | mixed over fp32, prompt_cache |",
              "|---|---|---|---|"]
    for cfg in args.configs.split(","):
        for a in names:
            m = {s: med[a][f"{cfg}|{s}"] for s in SETTINGS}
            lines.append(f"| {cfg.replace('x', '/')} | {a} | {m['float32/naive'] / m['float32/ours']:.2f}x | "
                         f"{m['float32/ours'] / m['bfloat16/ours']:.2f}x |")
    if skipped:
        lines += ["", "Not installed, skipped: " + ", ".join(skipped)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps(record, indent=1))
    (out / f"{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return record


if __name__ == "__main__":
    main()
