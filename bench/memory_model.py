"""The memory model (lambda_dpo.memory): its predicted table for 1B-2B shapes, and its calibration on the CPU.

    python bench/memory_model.py                 # the predicted table -> results/memory_model.{json,md}
    python bench/memory_model.py --calibrate     # + measure CPU peak RSS of real training steps (~5 min)

The table: Llama-3.2-1B and Qwen2.5-1.5B shapes, LoRA r16 (all linear layers) and full
fine-tuning, bf16 mixed and fp32, with and without gradient checkpointing, P/R = 512/256, N = 4,
one list per step, sdpa, the layout training picks (`packed`: 1536 tokens is past auto's 1024, so
prompt_cache without checkpointing, packed with it), against the paper's 20 GB. These are
model-derived GPU figures (what torch.cuda.max_memory_allocated would read; the CUDA context and
the caching allocator's slack come on top). `python bench/bench_gpu.py` measures the real figure on
a GPU (its default P/R/N differ: pass `--shape` here to match it).

Calibration (`--calibrate`): each run in a fresh process (`--worker`), as bench_throughput.py's
workers measure memory (peak_memory.py): load the model, add the LoRA (r=16, all linear), touch the
weights, record RSS, reset the peak counter, precompute the reference log-probs, train
`--steps` lists (the training step of listwise_steps.py: score_batch, lambda_dpo_loss, backward,
fused AdamW), read the peak. The increment (peak - loaded RSS) is compared with the model's
`cpu_rss_increment_bytes` with no fitted term (model-derived) and with the shipped CPU_FIT; the fit
is redone per dtype (least squares of measured - model-derived = share x activations + constant):
CPU_FIT in src/lambda_dpo/memory.py is set from this output. Two runs repeat with glibc's retention
off (MALLOC_MMAP_THRESHOLD_ fixed), where RSS follows the live tensors: there the model-derived
figure alone should match.
Runs: the tiny random Llama (lambda_dpo.testing.tiny_model, vocab 50257) and SmolLM2-135M-Instruct,
fp32 and bf16 mixed, packed and prompt_cache, at a few (P, R).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
ROOT = HERE.parent
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from lambda_dpo.memory import BUILTIN_SHAPES, CPU_FIT, GB, MIB, memory_estimate, model_shape  # noqa: E402

RESULTS_DIR = HERE / "results"
PAPER_GB = 20.0
TINY_VOCAB = 50257  # tiny_model's default (the GPT-2 tokenizer's)

# (model, dtype, layout, P, R, N, glibc retention): the calibration runs. "off" runs set
# MALLOC_MMAP_THRESHOLD_ (RETENTION_OFF), which fixes glibc's mmap threshold, so freed tensors go back to the
# system: RSS then follows the live tensors, the model-derived terms; they are not part of the fit.
CALIBRATION = [
    ("tiny", "float32", "packed", 128, 64, 4, "on"),
    ("tiny", "float32", "packed", 256, 128, 4, "on"),
    ("tiny", "float32", "prompt_cache", 256, 128, 4, "on"),
    ("tiny", "bfloat16", "packed", 128, 64, 4, "on"),
    ("tiny", "bfloat16", "packed", 256, 128, 4, "on"),
    ("smollm2", "float32", "packed", 128, 64, 4, "on"),
    ("smollm2", "float32", "packed", 256, 128, 4, "on"),
    ("smollm2", "float32", "prompt_cache", 256, 128, 4, "on"),
    ("smollm2", "bfloat16", "packed", 128, 64, 4, "on"),
    ("smollm2", "bfloat16", "packed", 256, 128, 4, "on"),
    ("smollm2", "float32", "packed", 128, 64, 4, "off"),
    ("smollm2", "bfloat16", "packed", 128, 64, 4, "off"),
]
RETENTION_OFF = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def tiny_shape():
    """The shape of lambda_dpo.testing.tiny_model("llama") at its default vocabulary."""
    return model_shape(dict(model_type="llama", _name_or_path="tiny llama", hidden_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                            vocab_size=TINY_VOCAB, tie_word_embeddings=True))


def calibration_attention(dtype: str) -> str:
    """What training's attn_implementation auto picks on this CPU for these short rows."""
    from lambda_dpo.precision import resolve_attn_implementation

    return resolve_attn_implementation("auto", dtype, "cpu", max_length=1024)[0]


def estimate(rec: dict, cpu_fit=None):
    """The model's estimate for a calibration run (cpu_fit (0, 0): the model-derived terms only)."""
    shape = tiny_shape() if rec["model"] == "tiny" else BUILTIN_SHAPES["smollm2-135m"]
    return memory_estimate(shape, prompt_len=rec["prompt_len"], response_len=rec["response_len"],
                           n_responses=rec["n"], layout=rec["layout"], lora_rank=16, dtype=rec["dtype"],
                           attention=rec["attention"], cpu_fit=cpu_fit)


def measure(model: str, dtype: str, layout: str, p: int, r: int, n: int, retention: str = "on", steps: int = 2,
            threads: int = 2) -> dict:
    """One calibration run in this process (call it in a fresh one): peak RSS increment of `steps`
    LoRA training steps over the loaded model, in MiB."""
    import gc

    import torch
    from listwise_steps import time_listwise_steps
    from peak_memory import current_rss_mib, peak_rss_mib, reset_peak_rss, touch_weights
    from workload import add_lora, make_lists

    torch.set_num_threads(threads)
    attention = calibration_attention(dtype)
    if model == "tiny":
        from lambda_dpo.testing import tiny_model

        base = tiny_model("llama", vocab_size=TINY_VOCAB, attn_implementation=attention)
        if dtype != "float32":
            base = base.to(getattr(torch, dtype))
        vocab = TINY_VOCAB
    else:
        from lambda_dpo.models import load_model

        base = load_model("smollm2-135m-instruct", dtype=dtype, attn_implementation=attention)
        vocab = base.config.vocab_size
    lora = add_lora(base, 16)
    touch_weights(lora)
    lists = make_lists(p, r, n, steps, vocab_size=vocab)
    gc.collect()
    loaded = current_rss_mib()
    if not reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS counter (/proc/self/clear_refs)")
    start = time.perf_counter()
    method = "ours_segments" if layout == "packed" else "ours"
    time_listwise_steps(lora, lists, method, warmup=0, steps=steps)
    peak = peak_rss_mib()
    return {"model": model, "dtype": dtype, "layout": layout, "prompt_len": p, "response_len": r, "n": n,
            "retention": retention, "attention": attention, "steps": steps, "threads": threads, "loaded_rss_mib": loaded,
            "peak_rss_mib": peak, "increment_mib": peak - loaded, "seconds": time.perf_counter() - start}


def spec_of(rec: dict) -> tuple:
    return (rec["model"], rec["dtype"], rec["layout"], rec["prompt_len"], rec["response_len"], rec["n"],
            rec["retention"])


def run_worker(spec: tuple, steps: int, threads: int, timeout: float = 3600.0) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(list(spec)), "--steps", str(steps),
           "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(RETENTION_OFF if spec[6] == "off" else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {spec} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


def fit(records: list[dict]) -> dict:
    """Per dtype, least squares of (measured - model-derived) = share * activations + constant over the runs
    with glibc's retention on; each run gets its model-derived figure, its prediction with the fit and with
    the shipped CPU_FIT, and that prediction's error."""
    for rec in records:
        est = estimate(rec, cpu_fit=(0.0, 0.0))
        rec["model_mib"] = est.cpu_rss_increment_bytes / MIB
        rec["activations_mib"] = est.terms["activations"] / MIB
        rec["residual_mib"] = rec["increment_mib"] - rec["model_mib"]
        rec["predicted_mib"] = estimate(rec).cpu_rss_increment_bytes / MIB
        rec["error"] = rec["predicted_mib"] / rec["increment_mib"] - 1
        rec["model_error"] = rec["model_mib"] / rec["increment_mib"] - 1
    fitted = {}
    for dtype in sorted({r["dtype"] for r in records}):
        runs = [r for r in records if r["dtype"] == dtype and r["retention"] == "on"]
        if len(runs) < 2:
            continue
        fitted[dtype] = _line(runs)
        for i, rec in enumerate(runs):  # leave-one-out: the run predicted by a fit without it
            rest = runs[:i] + runs[i + 1:]
            if len(rest) >= 2:
                share, const = _line(rest)
                rec["loo_error"] = (rec["model_mib"] + share * rec["activations_mib"] + const) / rec["increment_mib"] - 1
    return fitted


def _line(runs: list[dict]) -> tuple[float, float]:
    """Least squares of residual = share * activations + constant."""
    pts = [(r["activations_mib"], r["residual_mib"]) for r in runs]
    mx, my = statistics.mean(x for x, _ in pts), statistics.mean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    share = sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0
    return share, my - share * mx


TABLE_SHAPES = ("llama-3.2-1b", "qwen2.5-1.5b")


def predicted_table(p: int, r: int, n: int, rank: int = 16) -> list[dict]:
    """Every (shape, LoRA / full, bf16 / fp32, checkpointing off / on) at P/R/N, layout auto, sdpa."""
    rows = []
    for name in TABLE_SHAPES:
        for mode in ("lora", "full"):
            for dtype in ("bfloat16", "float32"):
                for gc in (False, True):
                    est = memory_estimate(name, prompt_len=p, response_len=r, n_responses=n,
                                          lora_rank=rank if mode == "lora" else None, dtype=dtype,
                                          gradient_checkpointing=gc)
                    t = est.terms
                    rows.append({"model": BUILTIN_SHAPES[name].name, "mode": f"LoRA r{rank}" if mode == "lora" else "full",
                                 "dtype": dtype, "gradient_checkpointing": gc, "layout": est.inputs["layout"],
                                 "weights_gb": t["weights"] / GB,
                                 "grads_optimizer_gb": (t["gradients"] + t["optimizer_states"] + t["lora_weights"]) / GB,
                                 "activations_gb": (t["activations"] + t["recompute"]) / GB,
                                 "head_buffer_gb": t["head_buffer"] / GB, "peak_phase": est.peak_phase,
                                 "peak_gb": est.gpu_peak_gb, "fits_20gb": est.gpu_peak_gb <= PAPER_GB,
                                 "cpu_rss_increment_gb": est.cpu_rss_increment_bytes / GB, "terms": t})
    return rows


def shape_table() -> list[str]:
    out = ["| shape | hidden d | layers L | heads H | kv heads | head dim | intermediate I | vocab V | tied | "
           "q/k/v bias | parameters | LoRA r16, all-linear |", "|" + "---|" * 12]
    for name, s in BUILTIN_SHAPES.items():
        out.append(f"| {s.name} (`{name}`) | {s.hidden_size} | {s.num_hidden_layers} | {s.num_attention_heads} | "
                   f"{s.num_key_value_heads} | {s.q_dim // s.num_attention_heads} | {s.intermediate_size} | "
                   f"{s.vocab_size} | {'yes' if s.tie_word_embeddings else 'no'} | "
                   f"{'yes' if s.attention_bias else 'no'} | {s.parameter_count() / 1e9:.3f} B | "
                   f"{s.lora_parameter_count(16) / 1e6:.3f} M |")
    return out


def table_markdown(table: list[dict], p: int, r: int, n: int) -> list[str]:
    md = [f"## Predicted GPU peak, P/R = {p}/{r}, N = {n}, one list per step, sdpa", "",
          "Model-derived terms only (`lambda_dpo.memory.memory_estimate`): what torch.cuda.max_memory_allocated "
          "would read; the CUDA context (~0.3-0.5 GB) and the caching allocator's reserve come on top. "
          "GB = 1e9 bytes. Layout: what training's `auto` picks (prompt_cache past 1024 tokens, packed under "
          "gradient checkpointing). bf16 = lambda-dpo's mixed mode for LoRA (bf16 frozen weights, fp32 adapter and "
          "AdamW states, products under autocast); for full fine-tuning weights, gradients and AdamW states all "
          "bf16 (`model_dtype: bfloat16`, bench_gpu.py's full mode). fp32 full fine-tuning is 16 bytes per "
          "parameter before any activation.", "",
          "| model | mode | dtype | grad. ckpt | layout | weights | grads + AdamW | activations | log-softmax chunk "
          "| peak GB | peak at | vs 20 GB |", "|" + "---|" * 12]
    for row in table:
        md.append(f"| {row['model']} | {row['mode']} | {row['dtype']} | {'on' if row['gradient_checkpointing'] else 'off'} "
                  f"| {row['layout']} | {row['weights_gb']:.2f} | {row['grads_optimizer_gb']:.2f} | "
                  f"{row['activations_gb']:.2f} | {row['head_buffer_gb']:.2f} | **{row['peak_gb']:.1f}** | "
                  f"{row['peak_phase']} | {'fits' if row['fits_20gb'] else 'over'} ({row['peak_gb'] / PAPER_GB:.0%}) |")
    return md


def calibration_markdown(calib: list[dict], fitted: dict, env: dict) -> list[str]:
    md = ["## Calibration: CPU peak RSS increment of LoRA r16 training steps", "",
          f"- command: `{env.get('calibration_command')}` ({env.get('calibration_date')}, {env.get('cpu')}, "
          f"torch {env.get('torch')}, transformers {env.get('transformers')})",
          f"- {calib[0]['steps']} steps per run (the second with AdamW's states), each run in a fresh process, "
          f"{calib[0]['threads']} threads; increment = peak RSS - RSS after loading (bench/peak_memory.py). "
          "glibc retention off = the run under MALLOC_MMAP_THRESHOLD_=131072 (freed tensors go back to the system).",
          *([f"- {env['calibration_note']}"] if env.get("calibration_note") else []),
          "- model-derived = the model's terms at the peak minus the weights loaded before (no fitted term); "
          "predicted = model-derived + CPU_FIT (the values shipped in lambda_dpo/memory.py: a share of the "
          "activations that glibc keeps after forward frees its intermediates, and a constant).", "",
          "| model | dtype | layout | attention | P/R/N | glibc retention | measured MiB | model-derived MiB "
          "(error) | activations MiB | predicted MiB | error | error, fit without this run |", "|" + "---|" * 12]
    for c in calib:
        md.append(f"| {'tiny Llama' if c['model'] == 'tiny' else 'SmolLM2-135M'} | {c['dtype']} | {c['layout']} | "
                  f"{c['attention']} | {c['prompt_len']}/{c['response_len']}/{c['n']} | {c['retention']} | "
                  f"{c['increment_mib']:.0f} | {c['model_mib']:.0f} ({c['model_error']:+.0%}) | "
                  f"{c['activations_mib']:.0f} | " + (f"{c['predicted_mib']:.0f} | {c['error']:+.1%} | "
                                                      f"{c.get('loo_error', float('nan')):+.1%} |"
                                                      if c["retention"] == "on" else "- | - | - |"))
    md += ["", "Least-squares fit over the runs with retention on, (measured - model-derived) = share x activations "
           "+ constant: " + "; ".join(f"{k}: share {a:.2f}, constant {c:.0f} MiB" for k, (a, c) in fitted.items())
           + ". Shipped CPU_FIT: " + "; ".join(f"{k}: share {a:.2f}, constant {c:.0f} MiB"
                                               for k, (a, c) in CPU_FIT.items()) + ".", ""]
    return md


BENCH_GPU_SHAPE = (512, 384, 4)  # bench_gpu.py's defaults: P + N*R = 2048 tokens


def bench_gpu_rows() -> list[dict]:
    """What `python bench/bench_gpu.py [--gradient-checkpointing]` measures (Llama-3.2-1B shape, bf16, its
    default P/R/N), predicted: lora and full, checkpointing off and on."""
    p, r, n = BENCH_GPU_SHAPE
    return [row for row in predicted_table(p, r, n) if row["model"] == "Llama-3.2-1B" and row["dtype"] == "bfloat16"]


def bench_gpu_markdown() -> list[str]:
    p, r, n = BENCH_GPU_SHAPE
    md = [f"## bench_gpu.py's default step, predicted (Llama-3.2-1B shape, bf16, P/R/N = {p}/{r}/{n})", "",
          "Compare with the `peak GB` column of bench/results/gpu.md once `python bench/bench_gpu.py` (and "
          "`--gradient-checkpointing`) has run on a GPU.", "",
          "| mode | grad. ckpt | layout | predicted peak GB | peak at |", "|---|---|---|---|---|"]
    for row in bench_gpu_rows():
        md.append(f"| {'lora' if row['mode'].startswith('LoRA') else 'full'} | "
                  f"{'on' if row['gradient_checkpointing'] else 'off'} | {row['layout']} | {row['peak_gb']:.2f} | "
                  f"{row['peak_phase']} |")
    return md


def markdown(table: list[dict], calib: list[dict] | None, fitted: dict | None, env: dict) -> str:
    md = ["# Memory model: predicted peak of a training step", "", f"- command: `{env['command']}`",
          f"- date: {env['date']}", "", *table_markdown(table, env["prompt_len"], env["response_len"], env["n"]),
          "", *bench_gpu_markdown(), "", "## Shapes", "", *shape_table(), ""]
    if calib:
        md += calibration_markdown(calib, fitted, env)
    return "\n".join(md)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true", help="measure the calibration runs (~15 min on 2 cores)")
    parser.add_argument("--only", help="calibration runs of this model only (tiny or smollm2)")
    parser.add_argument("--resume", action="store_true",
                        help="with --calibrate: keep the runs already in the results file, measure the missing ones")
    parser.add_argument("--shape", default="512/256/4", help="P/R/N of the predicted table (default %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per calibration run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="results dir (default bench/results)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print("RESULT " + json.dumps(measure(*spec, steps=args.steps, threads=args.threads)), flush=True)
        return 0
    p, r, n = (int(x) for x in args.shape.split("/"))
    out = Path(args.out) if args.out else RESULTS_DIR
    env = {"command": "python bench/memory_model.py" + "".join(" " + shlex.quote(a) for a in argv),
           "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "python": platform.python_version(),
           "prompt_len": p, "response_len": r, "n": n}
    table = predicted_table(p, r, n)
    calib = None
    if args.calibrate:
        import torch
        import transformers

        env.update(calibration_command=env["command"], calibration_date=env["date"], torch=torch.__version__,
                   transformers=transformers.__version__, cpu=_cpu())
        calib = []
        if args.resume and (out / "memory_model.json").is_file():  # keep the runs measured, measure the rest
            old = json.loads((out / "memory_model.json").read_text())
            calib = old.get("calibration") or []
            if old.get("environment", {}).get("calibration_note"):
                env["calibration_note"] = old["environment"]["calibration_note"]
        done = {spec_of(rec) for rec in calib}
        for spec in CALIBRATION:
            if (args.only and spec[0] != args.only) or tuple(spec) in done:
                continue
            print(f"calibration run {spec} ...", flush=True)
            try:
                calib.append(run_worker(spec, args.steps, args.threads))
            except (RuntimeError, subprocess.TimeoutExpired) as err:  # a busy machine: report, go on
                print(f"  FAILED: {str(err)[:300]}", flush=True)
                continue
            print(f"  increment {calib[-1]['increment_mib']:.0f} MiB ({calib[-1]['seconds']:.0f} s)", flush=True)
            _save_partial(out, env, calib)
    elif (out / "memory_model.json").is_file():  # keep the last calibration beside a new table
        old = json.loads((out / "memory_model.json").read_text())
        calib = old.get("calibration")
        env.update({k: v for k, v in old.get("environment", {}).items()
                    if k in ("calibration_command", "calibration_date", "torch", "transformers", "cpu",
                             "calibration_note")})
    fitted = fit(calib) if calib else None
    for row in table:
        print(f"{row['model']:<14} {row['mode']:<9} {row['dtype']:<9} gc {'on ' if row['gradient_checkpointing'] else 'off'}"
              f" {row['layout']:<13} peak {row['peak_gb']:6.2f} GB ({row['peak_phase']})")
    if calib:
        print("\ncalibration (MiB): measured / model-derived / predicted (error)")
        for c in calib:
            print(f"  {c['model']:<8} {c['dtype']:<9} {c['layout']:<13} {c['prompt_len']}/{c['response_len']}/{c['n']} "
                  f"retention {c['retention']:<3}: {c['increment_mib']:.0f} / {c['model_mib']:.0f} / "
                  + (f"{c['predicted_mib']:.0f} ({c['error']:+.1%})" if c["retention"] == "on"
                     else f"- (model-derived {c['model_error']:+.1%})"))
        print("fit (share of activations, constant MiB): "
              + "; ".join(f"{k} {a:.3f}, {c:.1f}" for k, (a, c) in fitted.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_model.json").write_text(json.dumps(
        {"environment": env, "predicted": table, "bench_gpu_predicted": bench_gpu_rows(), "calibration": calib, "fitted_cpu": fitted, "shipped_cpu_fit": CPU_FIT},
        indent=2) + "\n")
    (out / "memory_model.md").write_text(markdown(table, calib, fitted, env))
    print(f"wrote {out / 'memory_model.json'} and {out / 'memory_model.md'}")
    return 0


def _save_partial(out: Path, env: dict, calib: list[dict]) -> None:
    """The runs measured so far, so that a long calibration interrupted can be resumed (--resume)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "memory_model.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(environment={**data.get("environment", {}), **env}, calibration=calib)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _cpu() -> str:
    try:
        from throughput_report import cpu_model

        return cpu_model()
    except Exception:  # noqa: BLE001
        return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
