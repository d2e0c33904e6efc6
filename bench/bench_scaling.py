"""How step time and memory grow with N and with the prompt length: lambda-dpo vs the naive forward.

    python bench/bench_scaling.py                 # both sweeps, ~10-20 min on 2 cores
    python bench/bench_scaling.py --sweep n       # only N in {2, 4, 8, 16} at P=256, R=64

Same model, LoRA, data generator and step functions as bench_throughput.py (its --worker mode,
one fresh process per point, so each peak RSS is that point's own):
  ours   training step with the shared-prompt (packed) forward, reference log-probs cached;
  naive  training step with one row per response plus a reference forward every step.
Sweeps: N in {2,4,8,16} at P=256, R=64; P in {64,256,512,1024} at N=4, R=64. Few repetitions
(1 warm-up + 2 timed steps by default): it is a trend plot. Writes bench/results/scaling.json and
bench/results/scaling.png (time and peak-RSS increment, measured, with the token-count model).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cost_model import flop_model, predicted_speedup, predicted_speedup_flops, token_counts  # noqa: E402
from throughput_report import RESULTS_DIR, environment, fmt  # noqa: E402
from worker_process import run_worker  # noqa: E402

N_SWEEP = (2, 4, 8, 16)
P_SWEEP = (64, 256, 512, 1024)
R = 64
P_FOR_N = 256
N_FOR_P = 4
METHODS = ("ours", "naive")
COLORS = {"ours": "tab:blue", "naive": "tab:red"}
NAMES = {"ours": "lambda-dpo (shared prompt, cached ref)", "naive": "naive (per-response rows, ref every step)"}


def points(sweep: str) -> list[tuple[int, int, int]]:
    pts = []
    if sweep in ("n", "both"):
        pts += [(P_FOR_N, R, n) for n in N_SWEEP]
    if sweep in ("p", "both"):
        pts += [(p, R, N_FOR_P) for p in P_SWEEP]
    seen, out = set(), []
    for pt in pts:
        if pt not in seen:
            seen.add(pt), out.append(pt)
    return out


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if not r.get("error")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    sweeps = [("n", "N (responses per list)", lambda r: r["prompt_len"] == P_FOR_N and r["response_len"] == R,
               "n", f"P={P_FOR_N}, R={R}"),
              ("p", "P (prompt tokens)", lambda r: r["n"] == N_FOR_P and r["response_len"] == R, "prompt_len",
               f"N={N_FOR_P}, R={R}")]
    for col, (_, xlabel, keep, key, fixed) in enumerate(sweeps):
        ax_t, ax_m = axes[0, col], axes[1, col]
        by_method = {m: sorted((r for r in ok if r["method"] == m and keep(r)), key=lambda r: r[key])
                     for m in METHODS}
        for m, rs in by_method.items():
            if not rs:
                continue
            xs = [r[key] for r in rs]
            ax_t.plot(xs, [r["median_step_s"] for r in rs], "o-", color=COLORS[m], label=NAMES[m])
            ax_m.plot(xs, [r["peak_increment_mib"] for r in rs], "s-", color=COLORS[m], label=NAMES[m])
        # FLOP model (cost_model.flop_model: body + output layer + attention), scaled to ours' first point
        ours = by_method["ours"]
        if ours:
            first = ours[0]
            scale = first["median_step_s"] / flop_model("ours", first["prompt_len"], R, first["n"])
            for m in METHODS:
                xs = [r[key] for r in by_method["ours"]]
                pred = [scale * flop_model(m, r["prompt_len"], R, r["n"]) for r in by_method["ours"]]
                ax_t.plot(xs, pred, ":", color=COLORS[m], alpha=0.7,
                          label=f"{m}: FLOP model, scaled to ours at {xs[0]}")
        naive = {r[key]: r for r in by_method["naive"]}
        for r in ours:
            other = naive.get(r[key])
            if other:
                ax_t.annotate(f"{other['median_step_s'] / r['median_step_s']:.1f}x",
                              (r[key], other["median_step_s"]), textcoords="offset points", xytext=(0, 7),
                              ha="center", fontsize=9, color=COLORS["naive"])
                ax_m.annotate(f"{other['peak_increment_mib'] / max(r['peak_increment_mib'], 1):.1f}x",
                              (r[key], other["peak_increment_mib"]), textcoords="offset points", xytext=(0, 7),
                              ha="center", fontsize=9, color=COLORS["naive"])
        for ax in (ax_t, ax_m):
            ax.margins(y=0.15)
            ax.set_ylim(bottom=0)
            ax.set_xscale("log", base=2)
            xs = sorted({r[key] for rs in by_method.values() for r in rs})
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
        ax_t.set_ylabel("seconds per training step (1 list)")
        ax_t.set_title(f"step time vs {xlabel.split(' ')[0]} ({fixed}); labels: naive / ours")
        ax_m.set_ylabel("peak RSS over the loaded model (MiB)")
        ax_m.set_title(f"peak memory vs {xlabel.split(' ')[0]} ({fixed}); labels: naive / ours")
        ax_t.legend(fontsize=8, loc="upper left")
        ax_m.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", choices=("n", "p", "both"), default="both")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=2, help="timed steps per point (default 2)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-steps", type=int, default=1)
    parser.add_argument("--max-timed-seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--omp-wait-policy", default="PASSIVE")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from an existing scaling.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    # fields bench_throughput's workers expect; TRL is not used here
    args.trl_pairs_per_micro_batch, args.trl_gradient_checkpointing = 1, False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "scaling.json", out / "scaling.png"

    if args.replot:
        data = json.loads(json_path.read_text())
        plot(data["workers"], png_path, data["title"])
        print(f"wrote {png_path}")
        return 0

    env = environment(args, [])
    env["command"] = "python bench/bench_scaling.py" + "".join(" " + a for a in argv)
    methods = [m for m in args.methods.split(",") if m]
    pts = points(args.sweep)
    print(f"scaling benchmark: {env['cpu']}, torch threads {args.threads}, points (P, R, N) {pts}", flush=True)
    start = time.perf_counter()
    records = []
    for p, r, n in pts:
        for m in methods:
            print(f"[{time.perf_counter() - start:6.0f} s] P={p} R={r} N={n} {NAMES[m]}", flush=True)
            rec = run_worker(m, p, r, n, args)
            if rec.get("error"):
                print(f"    FAILED: {rec['error']}", flush=True)
            else:
                print(f"    {rec['median_step_s']:.2f} s/step, peak RSS {rec['peak_rss_mib']:.0f} MiB "
                      f"(+{rec['peak_increment_mib']:.0f})", flush=True)
            records.append(rec)
    env["total_wall_s"] = round(time.perf_counter() - start, 1)
    title = (f"SmolLM2-135M fp32 + LoRA r={args.lora_r}: one training step on one list (fwd+bwd+AdamW; naive also "
             f"runs its reference forward)\n{args.threads} torch threads, {env['cpu']}, {env['date'][:10]}\n"
             "shared 2-core machine: absolute times are noisy, trends and side-by-side ratios are the robust part")
    print(f"\n{'P':>5} {'R':>4} {'N':>3}  {'ours s':>7} {'naive s':>8} {'x':>5}  {'ours +MiB':>9} {'naive +MiB':>10}")
    by = {(x["prompt_len"], x["response_len"], x["n"], x["method"]): x for x in records}
    rows = []
    for p, r, n in pts:
        o, v = by.get((p, r, n, "ours"), {}), by.get((p, r, n, "naive"), {})
        ot, vt = o.get("median_step_s"), v.get("median_step_s")
        row = {"prompt_len": p, "response_len": r, "n": n, "ours_s": ot, "naive_s": vt,
               "speedup": (vt / ot) if (ot and vt) else None,
               "predicted_k2": predicted_speedup("naive", p, r, n, 2.0),
               "predicted_k3": predicted_speedup("naive", p, r, n, 3.0),
               "predicted_flops": predicted_speedup_flops("naive", p, r, n),
               "ours_peak_increment_mib": o.get("peak_increment_mib"),
               "naive_peak_increment_mib": v.get("peak_increment_mib"),
               "ours_tokens": token_counts("ours", p, r, n)["policy_tokens"],
               "naive_tokens": token_counts("naive", p, r, n)["policy_tokens"]}
        rows.append(row)
        print(f"{p:5d} {r:4d} {n:3d}  {fmt(ot):>7} {fmt(vt):>8} {fmt(row['speedup'], '.1f'):>5}  "
              f"{fmt(row['ours_peak_increment_mib'], '.0f'):>9} {fmt(row['naive_peak_increment_mib'], '.0f'):>10}"
              f"   (token model: {row['predicted_k2']:.1f}x k=2, {row['predicted_k3']:.1f}x k=3; "
              f"FLOP model {row['predicted_flops']:.1f}x)")
    json_path.write_text(json.dumps({"environment": env, "title": title, "summary": rows, "workers": records},
                                    indent=2) + "\n")
    plot(records, png_path, title)
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
