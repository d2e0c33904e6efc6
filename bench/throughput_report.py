"""The throughput report: one row per (config, method), the tables, the targets, the environment.

Turns the workers' records into the summary (measured speed-ups of ours next to the cost model's
predictions), prints the plain table and writes <out>/<tag>.json and <tag>.md. bench_throughput.py
calls write_results after measuring and for --render; bench_scaling.py and bench_gpu.py reuse
environment, cpu_model and fmt.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench/ is not a package: siblings import by name from any directory

from cost_model import SHARED, predicted_speedup, predicted_speedup_flops  # noqa: E402
from workload import BETA, LABELS, LR, METHODS, SEED  # noqa: E402

RESULTS_DIR = HERE / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs visible)" if names else platform.processor()
    except OSError:
        return platform.processor() or "unknown"


def environment(args, argv) -> dict:
    import peft
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {
        "command": "python bench/bench_throughput.py" + ("".join(" " + shlex.quote(a) for a in argv)),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "torch_threads": args.threads, "os_cpus": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "trl": trl_version, "python": platform.python_version(), "model": args.model, "precision": "float32",
        "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0, "target_modules": "all-linear"},
        "optimizer": {"name": "AdamW", "lr": LR, "weight_decay": 0.0, "fused": True}, "beta": BETA, "seed": SEED,
        "omp_wait_policy": args.omp_wait_policy or None,
        "note": ("Measured on a shared 2-core machine: other jobs (dataset generation, tests) may have run at the "
                 "same time, so absolute figures are noisy; the ratios, measured side by side in one run, are the "
                 "robust part. loadavg_before/after per worker show the contention."),
    }


def fmt(x, spec=".2f", missing="-"):
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summarise(records: list[dict], k_values=(3.0, 2.0)) -> list[dict]:
    """One row per (config, method) with ratios: measured speed-up of ours and the token-count prediction."""
    rows = []
    by_cfg: dict[tuple, dict[str, dict]] = {}
    for rec in records:
        by_cfg.setdefault((rec["prompt_len"], rec["response_len"], rec["n"]), {})[rec["method"]] = rec
    for (p, r, n), recs in by_cfg.items():
        ours = recs.get("ours")
        ours_t = ours.get("median_step_s") if ours else None
        for method in METHODS:
            rec = recs.get(method)
            if rec is None:
                continue
            t = rec.get("median_step_s")
            row = {"prompt_len": p, "response_len": r, "n": n, "method": method, "label": LABELS[method],
                   "policy_tokens": rec["policy_tokens"], "reference_tokens": rec["reference_tokens"],
                   "s_per_list": t, "lists_per_s": (1 / t) if t else None, "cpu_s_per_list": rec.get("median_cpu_s"),
                   "min_s_per_list": rec.get("min_step_s"),
                   "steps_timed": len(rec.get("step_s", [])), "peak_rss_mib": rec.get("peak_rss_mib"),
                   "peak_increment_mib": rec.get("peak_increment_mib"), "rss_loaded_mib": rec.get("rss_loaded_mib"),
                   "precompute_s_per_list": rec.get("precompute_s_per_list"), "error": rec.get("error")}
            row["speedup_of_ours"] = (t / ours_t) if (t and ours_t) else None
            row["cpu_speedup_of_ours"] = (rec.get("median_cpu_s") / ours["median_cpu_s"]
                                          if (rec.get("median_cpu_s") and ours and ours.get("median_cpu_s")) else None)
            for k in k_values:
                row[f"predicted_k{k:g}"] = predicted_speedup(method, p, r, n, k)
            row["predicted_flops"] = predicted_speedup_flops(method, p, r, n)
            rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    head = ("| P/R | method | tokens/list: fwd+bwd + ref fwd | s/list | lists/s | peak RSS MiB (+ over loaded) "
            "| ours speed-up, measured (CPU-time) | predicted k=3 | predicted k=2 | predicted, FLOP model |")
    lines = [head, "|" + "|".join(["---"] * 10) + "|"]
    for row in rows:
        cfg = f"{row['prompt_len']}/{row['response_len']}"
        tokens = f"{row['policy_tokens']} + {row['reference_tokens']}"
        if row["method"] in SHARED:
            tokens += f" (+ {row['policy_tokens']} once, precompute)"
        if row["error"]:
            lines.append(f"| {cfg} | {row['label']} | {tokens} | failed: {row['error']} | | | | "
                         f"{fmt(row['predicted_k3'])}x | {fmt(row['predicted_k2'])}x | {fmt(row['predicted_flops'])}x |")
            continue
        extra = ""
        if row["method"] in SHARED and row["precompute_s_per_list"] is not None:
            extra = f" (+{row['precompute_s_per_list']:.2f} precompute)"
        measured = "1 (baseline)" if row["method"] == "ours" else (
            f"**{fmt(row['speedup_of_ours'])}x** ({fmt(row['cpu_speedup_of_ours'])}x)")
        pk3 = "1" if row["method"] == "ours" else f"{fmt(row['predicted_k3'])}x"
        pk2 = "1" if row["method"] == "ours" else f"{fmt(row['predicted_k2'])}x"
        pfl = "1" if row["method"] == "ours" else f"{fmt(row['predicted_flops'])}x"
        lines.append(f"| {cfg} | {row['label']} | {tokens} | {fmt(row['s_per_list'])}{extra} | "
                     f"{fmt(row['lists_per_s'], '.3f')} | {fmt(row['peak_rss_mib'], '.0f')} "
                     f"(+{fmt(row['peak_increment_mib'], '.0f')}) | {measured} | {pk3} | {pk2} | {pfl} |")
    return "\n".join(lines)


def table_plain(rows: list[dict]) -> str:
    cols = ["P/R", "method", "fwd+bwd tok", "ref tok", "s/list", "lists/s", "peak MiB", "+MiB", "ours x",
            "ours x cpu", "pred k=3", "pred k=2", "pred FLOPs"]
    data = []
    for row in rows:
        label = {"ours": "lambda-dpo", "ours_packed": "ours, packed", "ours_segments": "ours, by segment", "naive": "naive",
                 "trl_all": "TRL all pairs",
                 "trl_bw": "TRL best-worst"}
        s = fmt(row["s_per_list"]) if not row["error"] else "FAILED"
        data.append([f"{row['prompt_len']}/{row['response_len']}", label[row["method"]], str(row["policy_tokens"]),
                     str(row["reference_tokens"]), s, fmt(row["lists_per_s"], ".3f"),
                     fmt(row["peak_rss_mib"], ".0f"), fmt(row["peak_increment_mib"], ".0f"),
                     fmt(row["speedup_of_ours"]), fmt(row["cpu_speedup_of_ours"]),
                     fmt(row["predicted_k3"]), fmt(row["predicted_k2"]), fmt(row["predicted_flops"])])
    widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
    out = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(d, widths)) for d in data]
    errors = [f"  {r['prompt_len']}/{r['response_len']} {r['label']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(out + (["failures:"] + errors if errors else []))


def targets(rows: list[dict]) -> list[str]:
    out = []
    naive = [r for r in rows if r["method"] == "naive" and (r["prompt_len"], r["response_len"]) == (256, 128)]
    if naive and naive[0]["speedup_of_ours"]:
        s = naive[0]["speedup_of_ours"]
        out.append(f"target >= 2x the naive forward at 256/128: {s:.2f}x -> {'MET' if s >= 2 else 'NOT MET'}")
    trl = [r for r in rows if r["method"] == "trl_all"]
    if trl:
        ok = [r for r in trl if r["speedup_of_ours"]]
        if ok:
            worst = min(r["speedup_of_ours"] for r in ok)
            met = worst > 1 and len(ok) == len(trl)
            out.append(f"target more lists/s than TRL all pairs on every config: min {worst:.2f}x over "
                       f"{len(ok)}/{len(trl)} configs -> {'MET' if met else 'NOT MET'}")
    return out


EXPLANATION = """\
How to read the ratios. "ours speed-up" = (s/list of the method) / (s/list of lambda-dpo), both
medians of the timed steps; the CPU-time ratio in brackets uses process CPU time instead of wall
time and is less sensitive to other jobs on the machine. The predicted ratios follow the tokens
each method pushes through the model per list, P + N*R for ours against N*(P+R) for the naive
forward and 2*C(N,2)*(P+R) (all pairs) or 2*(P+R) (best-vs-worst) for TRL, with a forward+backward
token costing k forward tokens and the per-step reference forward 1: cost = k*policy + reference.
k = 3 is the full fine-tuning rule of thumb (backward = 2 forwards: activation and weight grads);
with LoRA the frozen weights get no weight gradient, so k is nearer 2. Ours has no reference term
(precomputed once per dataset: its cost per list is shown and is amortised over epochs).
What token counts leave out, and the "FLOP model" column adds (see flop_model()): (1) only
response tokens go through the 49k-word output layer, N*R in every method (two vocabulary-sized
products per token with the frozen LoRA head), so prompt tokens are cheaper than response
tokens; (2) attention: ours covers P^2/2 + N*R*(P+R/2) query-key pairs (prompt causally, then
each response over the cached prompt and itself), the packed layout (P+N*R)^2 (a dense block
mask the kernel does not skip), naive rows N*(P+R)^2/2 causally; (3) with LoRA, backward through
a frozen linear layer costs ~1 forward (k ~ 2), attention backward ~3. TRL runs slower than its
FLOPs: per-micro-batch overheads of the Trainer loop and small two-row matrix products, one pair
per forward.
"""


def write_results(records: list[dict], env: dict, args) -> None:
    """Summary table on stdout, and <out>/<tag>.json + <tag>.md."""
    rows = summarise(records)
    verdicts = targets(rows)
    print("\n" + table_plain(rows))
    print("\n".join([""] + verdicts))
    print("\n" + EXPLANATION)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps({"environment": env, "summary": rows, "targets": verdicts,
                                                      "workers": records}, indent=2) + "\n")
    md = [f"# Throughput: lambda-dpo vs naive vs TRL DPOTrainer (N={args.n}, SmolLM2-135M fp32, LoRA r={args.lora_r})",
          "", f"- command: `{env['command']}`", f"- date: {env['date']}", f"- CPU: {env['cpu']}",
          f"- torch threads: {args.threads} (OMP_WAIT_POLICY={args.omp_wait_policy or 'unset'}); "
          f"torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}, trl {env['trl']}",
          f"- steps: {args.warmup} warm-up + up to {args.steps} timed per method (at least {args.min_steps}; "
          f"fewer once {args.max_timed_seconds:g} s of timed steps ran), median reported; each method x config in "
          "a fresh process", f"- total wall time: {env['total_wall_s']:.0f} s", f"- {env['note']}", "",
          table_markdown(rows), "", *[f"- {v}" for v in verdicts], "", EXPLANATION]
    if env.get("rendered"):
        md.insert(8, f"- tables re-rendered from the JSON on {env['rendered']} (same measurements)")
    (out / f"{args.tag}.md").write_text("\n".join(md))
    print(f"wrote {out / (args.tag + '.json')} and {out / (args.tag + '.md')}")
