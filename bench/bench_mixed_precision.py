"""fp32 vs the bf16 mixed mode, side by side: training lists/s and peak memory, reference pass, generation.

Run from the repository root (defaults: P/R = 256/128 and 128/64, N = 4, LoRA r16, SmolLM2-135M,
2 torch threads):

    python bench/bench_mixed_precision.py
    python bench/bench_mixed_precision.py --configs 128x64 --tasks train --steps 2   # quicker

The mixed mode is `model_dtype: bfloat16`: frozen base weights in bf16, LoRA weights and AdamW
states in fp32, products under autocast (lambda_dpo.precision.precision_context), response
log-softmax and the listwise loss in fp32. Tasks, each (dtype, task, config) in a fresh process so
its peak RSS is its own:

  train      one list per AdamW step (listwise_steps.time_listwise_steps), for the layouts packed
             (by segment: auto's choice for lists of at most 1024 tokens), prompt_cache (both with
             the reference precomputed) and naive (one row per response, reference forward every
             step); the attention kernel is training's choice per precision (--attn auto);
  reference  lambda_dpo.reference.compute_reference_logps over --ref-lists lists in batches of
             --ref-batch (the training run's reference_batch_size default, 8);
  generate   lambda_dpo.generation.generate, greedy, --gen-prompts prompts x --gen-tokens new tokens
             (min_new_tokens = max_new_tokens, so both modes produce the same number of tokens), on
             the LoRA-wrapped model (the adapter of a trained run is what the demo generates with).

Results: bench/results/<tag>.json and <tag>.md; the table shows each task's fp32 and mixed figures
and their ratio.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from listwise_steps import time_listwise_steps  # noqa: E402  (reused, not copied)
from peak_memory import current_rss_mib, peak_rss_mib, reset_peak_rss, ru_maxrss_mib, touch_weights  # noqa: E402
from workload import add_lora, make_lists, tokenized_lists  # noqa: E402

RESULTS_DIR = HERE / "results"
DTYPES = ("float32", "bfloat16")
TASKS = ("train", "reference", "generate")
LAYOUT_METHOD = {"prompt_cache": "ours", "packed": "ours_segments", "naive": "naive"}  # packed: by segment, as trained


def gen_prompts(n: int) -> list[str]:
    topics = ["vaccines", "tides", "compound interest", "photosynthesis", "binary search", "inflation",
              "volcanoes", "the immune system", "solar panels", "recursion", "black holes", "supply chains"]
    asks = ["Explain how {} work in simple terms.", "Give three practical facts about {}.",
            "What is a common misconception about {}?", "Write a short paragraph about {} for a student."]
    return [asks[i % len(asks)].format(topics[i % len(topics)]) for i in range(n)]


def worker(args) -> dict:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    from lambda_dpo.models import load_model
    from lambda_dpo.precision import precision_label

    def log(msg):
        print(f"    [{args.dtype} {args.task} {args.label}] {msg}", file=sys.stderr, flush=True)

    attn = args.attn
    if attn == "auto":  # training's choice for this precision and length; generation loads a saved model: sdpa
        from lambda_dpo.precision import resolve_attn_implementation

        attn = "sdpa" if args.task == "generate" else resolve_attn_implementation(
            "auto", args.dtype, "cpu", args.prompt_len + args.response_len)[0]
    model = add_lora(load_model(args.model, dtype=args.dtype, attn_implementation=attn), args.lora_r)
    touch_weights(model)
    record = {"dtype": args.dtype, "precision": precision_label(model), "task": args.task, "label": args.label,
              "attn_implementation": model.config._attn_implementation,
              "threads": torch.get_num_threads(),
              "trainable_dtypes": sorted({str(p.dtype) for p in model.parameters() if p.requires_grad})}
    record["rss_loaded_mib"] = current_rss_mib()
    peak_reset = reset_peak_rss()
    if args.task == "train":
        p, r = args.prompt_len, args.response_len
        lists = make_lists(p, r, args.n, args.warmup + args.steps, model.config.vocab_size)
        res = time_listwise_steps(model, lists, LAYOUT_METHOD[args.layout], warmup=args.warmup, steps=args.steps,
                                  min_steps=args.min_steps, max_timed_seconds=args.max_timed_seconds, log=log)
        record.update(res, layout=args.layout, prompt_len=p, response_len=r, n=args.n,
                      median_s=statistics.median(res["step_s"]), median_cpu_s=statistics.median(res["cpu_s"]))
        record["rate"] = 1 / record["median_s"]  # lists per second
    elif args.task == "reference":
        from lambda_dpo.reference import compute_reference_logps

        tls = tokenized_lists(make_lists(args.prompt_len, args.response_len, args.n, args.ref_lists,
                                    model.config.vocab_size, seed=1))
        compute_reference_logps(model, tls[:args.ref_batch], batch_size=args.ref_batch)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        compute_reference_logps(model, tls, batch_size=args.ref_batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        record.update(prompt_len=args.prompt_len, response_len=args.response_len, n=args.n, lists=len(tls),
                      batch=args.ref_batch, median_s=wall / len(tls), median_cpu_s=cpu / len(tls))
        record["rate"] = len(tls) / wall  # lists per second
        log(f"{wall:.1f} s for {len(tls)} lists")
    else:
        from lambda_dpo.generation import SteerableModel, generate
        from lambda_dpo.models import load_tokenizer

        tok = load_tokenizer(args.model)
        model.eval()
        model.generation_config.min_new_tokens = args.gen_tokens  # the same token count in both modes
        sm = SteerableModel(model, tok, ("quality",), "none")
        prompts = gen_prompts(args.gen_prompts)
        generate(sm, prompts[:2], max_new_tokens=4)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        texts = generate(sm, prompts, max_new_tokens=args.gen_tokens, batch_size=args.gen_batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        record.update(prompts=len(prompts), new_tokens=args.gen_tokens, batch=args.gen_batch, median_s=wall,
                      median_cpu_s=cpu, sample=texts[0][:200])
        record["rate"] = len(prompts) * args.gen_tokens / wall  # new tokens per second
        log(f"{wall:.1f} s")
    record["peak_rss_mib"] = peak_rss_mib() if peak_reset else ru_maxrss_mib()
    return record


def run_worker(dtype: str, task: str, label: str, extra: list[str], args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--dtype", dtype, "--task", task,
           "--label", label, "--threads", str(args.threads), "--model", args.model, "--lora-r", str(args.lora_r),
           "--n", str(args.n), "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--min-steps", str(args.min_steps), "--max-timed-seconds", str(args.max_timed_seconds),
           "--ref-lists", str(args.ref_lists), "--ref-batch", str(args.ref_batch),
           "--gen-prompts", str(args.gen_prompts), "--gen-tokens", str(args.gen_tokens),
           "--gen-batch", str(args.gen_batch), "--attn", args.attn, *extra]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    base = {"dtype": dtype, "task": task, "label": label}
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {args.timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    err = [l for l in proc.stdout.splitlines() if l.startswith("ERROR ")]
    return {**base, "error": err[-1][6:] if err else f"exit code {proc.returncode}"}


def jobs(args) -> list[tuple[str, str, list[str]]]:
    """(task, label, extra argv) of every measurement, each run once per dtype."""
    out = []
    configs = [tuple(int(x) for x in c.lower().split("x")) for c in args.configs.split(",") if c]
    tasks = [t for t in args.tasks.split(",") if t]
    if "train" in tasks:
        for p, r in configs:
            for layout in args.layouts.split(","):
                out.append(("train", f"{p}/{r} {layout}",
                            ["--layout", layout, "--prompt-len", str(p), "--response-len", str(r)]))
    if "reference" in tasks:
        p, r = configs[0]
        out.append(("reference", f"{p}/{r} x{args.ref_lists} lists, batch {args.ref_batch}",
                    ["--prompt-len", str(p), "--response-len", str(r)]))
    if "generate" in tasks:
        out.append(("generate", f"{args.gen_prompts} prompts x {args.gen_tokens} tokens, batch {args.gen_batch}",
                    []))
    return out


UNITS = {"train": ("s/list", "lists/s"), "reference": ("s/list", "lists/s"), "generate": ("s total", "tokens/s")}


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    by_key = {(r["task"], r["label"], r["dtype"]): r for r in records}
    for task, label in dict.fromkeys((r["task"], r["label"]) for r in records):
        fp, bf = by_key.get((task, label, "float32")), by_key.get((task, label, "bfloat16"))
        row = {"task": task, "label": label}
        for name, rec in (("fp32", fp), ("mixed", bf)):
            ok = rec is not None and not rec.get("error")
            row[f"{name}_s"] = rec["median_s"] if ok else None
            row[f"{name}_cpu_s"] = rec["median_cpu_s"] if ok else None
            row[f"{name}_rate"] = rec["rate"] if ok else None
            row[f"{name}_peak_mib"] = rec["peak_rss_mib"] if ok else None
            row[f"{name}_error"] = None if ok or rec is None else rec["error"]
        row["speedup"] = row["fp32_s"] / row["mixed_s"] if row["fp32_s"] and row["mixed_s"] else None
        row["cpu_speedup"] = (row["fp32_cpu_s"] / row["mixed_cpu_s"]
                              if row["fp32_cpu_s"] and row["mixed_cpu_s"] else None)
        rows.append(row)
    # each shared-prompt layout over naive, per dtype
    for row in rows:
        layout = row["label"].rsplit(" ", 1)[-1]
        if row["task"] == "train" and layout != "naive":
            naive = next((x for x in rows if x["label"] == row["label"].removesuffix(layout) + "naive"), None)
            for name in ("fp32", "mixed"):
                if naive and naive[f"{name}_s"] and row[f"{name}_s"]:
                    row[f"{name}_over_naive"] = naive[f"{name}_s"] / row[f"{name}_s"]
    return rows


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    head = ("| task | setting | fp32 | mixed (bf16) | mixed speed-up, wall (CPU time) | peak RSS MiB fp32 / mixed "
            "| over naive, fp32 / mixed |")
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        unit, rate = UNITS[r["task"]]

        def cell(name):
            if r[f"{name}_error"]:
                return f"failed: {r[f'{name}_error']}"
            return f"{fmt(r[f'{name}_s'])} {unit} ({fmt(r[f'{name}_rate'], '.3g')} {rate})"

        over = (f"{fmt(r.get('fp32_over_naive'))}x / {fmt(r.get('mixed_over_naive'))}x"
                if "fp32_over_naive" in r or "mixed_over_naive" in r else "")
        lines.append(f"| {r['task']} | {r['label']} | {cell('fp32')} | {cell('mixed')} | "
                     f"**{fmt(r['speedup'])}x** ({fmt(r['cpu_speedup'])}x) | "
                     f"{fmt(r['fp32_peak_mib'], '.0f')} / {fmt(r['mixed_peak_mib'], '.0f')} | {over} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="256x128,128x64", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--layouts", default="packed,prompt_cache,naive",
                    help="training layouts (default %(default)s; packed runs by segment, as training does)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="subset of %(default)s")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--min-steps", type=int, default=2)
    ap.add_argument("--max-timed-seconds", type=float, default=30.0)
    ap.add_argument("--ref-lists", type=int, default=16, help="lists in the timed reference pass (default 16)")
    ap.add_argument("--ref-batch", type=int, default=8, help="lists per reference forward (default 8)")
    ap.add_argument("--gen-prompts", type=int, default=24)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--gen-batch", type=int, default=32, help="generate()'s batch_size (its default, 32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", default="",
                    help="OMP_WAIT_POLICY of the workers (default: unset, as `lambda-dpo train` runs; PASSIVE made "
                         "the packed step 1.37x slower in fp32 and 2.29x in bf16 on a 2-core EPYC: "
                         "bench/README.md, Threads)")
    ap.add_argument("--attn", default="auto", choices=["auto", "sdpa", "eager"],
                    help="the model's attention implementation (default %(default)s: what training picks for "
                         "each precision, eager for bf16 on a CPU; sdpa for generation, as a saved model loads)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--tag", default="mixed_precision")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--label", help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="prompt_cache", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-len", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--response-len", type=int, default=128, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        try:
            record = worker(args)
        except Exception as err:
            import traceback

            traceback.print_exc()
            print("ERROR " + f"{type(err).__name__}: {err}".replace("\n", " ")[:500], flush=True)
            return 1
        print("RESULT " + json.dumps(record), flush=True)
        return 0
    from lambda_dpo.precision import cpu_bf16_features

    env = {"command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
           "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": platform.processor() or
           next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")), "?"),
           "cpu_bf16": list(cpu_bf16_features()), "logical_cpus": os.cpu_count(), "threads": args.threads,
           "torch": torch.__version__, "omp_wait_policy": args.omp_wait_policy or "unset", "load_before": os.getloadavg()}
    print(f"fp32 vs bf16 mixed: {env['cpu']} ({', '.join(env['cpu_bf16']) or 'no native bf16'}), "
          f"{args.threads} threads", flush=True)
    start = time.perf_counter()
    records = []
    for task, label, extra in jobs(args):
        for dtype in DTYPES:  # fp32 and mixed back to back, so both see the same machine state
            print(f"[{time.perf_counter() - start:6.0f} s] {task} {label} {dtype}", flush=True)
            rec = run_worker(dtype, task, label, extra, args)
            done = rec.get("error") or f"{rec['median_s']:.2f} s, peak RSS {rec['peak_rss_mib']:.0f} MiB"
            print(f"    {done}", flush=True)
            records.append(rec)
    env["total_wall_s"] = round(time.perf_counter() - start, 1)
    env["load_after"] = os.getloadavg()
    rows = summarise(records)
    md = table(rows)
    print("\n" + md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps({"environment": env, "summary": rows, "workers": records},
                                                     indent=2) + "\n")
    (out / f"{args.tag}.md").write_text("\n".join([
        "# fp32 vs bf16 mixed precision (SmolLM2-135M, LoRA r16)", "",
        f"- command: `{env['command']}`", f"- date: {env['date']}",
        f"- CPU: {env['cpu']}, {env['logical_cpus']} logical CPUs, native bf16: {env['cpu_bf16'] or 'none'}; "
        f"{args.threads} torch threads (OMP_WAIT_POLICY {env['omp_wait_policy']}); torch {env['torch']}",
        f"- load average before / after: {env['load_before']} / {env['load_after']}",
        f"- train: one list per AdamW step, N={args.n}, {args.warmup} warm-up + up to {args.steps} timed steps "
        "(median); each row's fp32 and mixed run back to back, each in a fresh process", "", md, ""]))
    print(f"wrote {out / (args.tag + '.json')} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
