"""GPU peak memory and tokens/s of lambda-dpo training steps on a Llama-3.2-1B-shaped model.

On a machine with a CUDA GPU, from the repository root:

    python bench/bench_gpu.py                                  # lora and full, P=512, R=384, N=4, bf16
    python bench/bench_gpu.py --gradient-checkpointing         # the same with the decoder checkpointed
    python bench/bench_gpu.py --modes lora --prompt-len 1024 --response-len 256

Model: LlamaForCausalLM built from a LlamaConfig with Llama-3.2-1B's shape (hidden 2048, 16 layers,
32 heads, 8 kv heads, intermediate 8192, vocab 128256, tied embeddings, rope_theta 500000), random
weights (no download: weights do not change time or memory), bf16, sdpa attention, on cuda.
Data: synthetic lists of exactly P random prompt ids and N responses of exactly R random ids
(fixed seed), P + N*R = 2048 tokens per list by default (the cut-off of the efficiency issue).
Modes (each on a freshly built model):

  lora   peft LoRA r=16, alpha=32, all linear layers (workload.add_lora), AdamW on the adapter:
         lambda-dpo's mixed mode (model_dtype: bfloat16): bf16 frozen weights, fp32 adapter and AdamW
         states, products under autocast (lambda_dpo.precision.precision_context, applied by score_batch);
  full   every weight trainable, AdamW (fused, states in bf16 like the weights).

Both use lambda-dpo's training step: a shared-prompt forward of P + N*R tokens, in the layout
lambda-dpo would pick (lambda_dpo.layouts.choose_layout: packed, by segment, for lists of at most
PACKED_AUTO_MAX_TOKENS (1024) tokens or when the decoder is checkpointed, prompt_cache otherwise)
(lambda_dpo.logprobs.score_batch, chunked fp32 log-probs of the response tokens), lambda_dpo_loss on
a rank target, backward, optimizer step; the reference log-probs are computed once before timing
(listwise_steps.precompute_reference), as lambda-dpo does. One list per step. Timed with
torch.cuda.synchronize() around each step, after untimed warm-up steps; peak memory is
torch.cuda.max_memory_allocated(), reset after the warm-up (so it covers the timed steps, with the
optimizer state already allocated). Compared with the paper's 20 GB and the 8 GB LoRA target.
Results: bench/results/gpu.json and bench/results/gpu.md (command, GPU, torch version, date).

Without a CUDA device it prints what it would measure and exits 0. `--smoke --out DIR` runs the
same code path on CPU in fp32 on a tiny Llama (hidden 64, 2 layers, vocab 1000, P=16, R=8, 1 step)
so the script can be tested without a GPU; its figures mean nothing and go only to DIR.
`--smoke --dtype bfloat16` runs that smoke in the bf16 mixed mode.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

ROOT = HERE.parent
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # works without `pip install -e .` / PYTHONPATH=src

import torch  # noqa: E402
from lambda_dpo.precision import precision_label  # noqa: E402
from listwise_steps import precompute_reference  # noqa: E402
from throughput_report import cpu_model, fmt  # noqa: E402
from workload import BETA, LR, SEED, add_lora, make_lists, rank_target  # noqa: E402

RESULTS_DIR = HERE / "results"
MODES = ("lora", "full")
PAPER_GB = 20.0  # the paper's reported GPU memory
LORA_TARGET_GB = 8.0  # target of the efficiency issue for LoRA
GIB = 2**30

LLAMA_3_2_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0,
                    max_position_embeddings=131072, rms_norm_eps=1e-5, hidden_act="silu", head_dim=64,
                    bos_token_id=128000, eos_token_id=128001)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
            vocab_size=1000, tie_word_embeddings=True, rope_theta=500000.0, max_position_embeddings=512,
            bos_token_id=998, eos_token_id=999)


def build_model(shape: dict, dtype: torch.dtype, device: torch.device, gradient_checkpointing: bool = False):
    """Random-weight LlamaForCausalLM of `shape`, initialised directly on `device` (seeded)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**shape)
    torch.manual_seed(SEED)
    with device:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype)
    if gradient_checkpointing:  # every decoder layer, non-reentrant (transformers >= 5.x renamed the method)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {"allocated_gib": torch.cuda.memory_allocated(device) / GIB,
            "peak_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB}


def time_steps(model, lists, device: torch.device, warmup: int, steps: int, chunk_size: int = 1024, log=print) -> dict:
    """lambda-dpo training steps (shared-prompt forward, cached reference, lambda_dpo_loss, AdamW), synchronised.

    listwise_steps.time_listwise_steps is the CPU version of this loop; it is not reused because on
    a GPU its timer would stop before the queued kernels ran (no synchronize) and it has no point at
    which to reset the peak-memory counter after the warm-up.
    """
    from lambda_dpo.losses import lambda_dpo_loss, sequence_scores
    from lambda_dpo.layouts import build_batch, choose_layout
    from lambda_dpo.logprobs import score_batch

    n = len(lists[0][1])
    target, mask = rank_target(n).to(device), torch.ones(1, n, dtype=torch.bool, device=device)
    row_tokens = len(lists[0][0]) + sum(map(len, lists[0][1]))
    layout = choose_layout(model, row_tokens=row_tokens)
    if layout == "packed":  # as training does (training/prepare.py)
        from lambda_dpo.segment_attention import install

        install(model)
    log(f"  layout {layout} (a list's prompt and responses: {row_tokens} tokens)")
    batches = [build_batch([p], [rs], layout=layout).to(device) for p, rs in lists]
    sync(device)
    refs, precompute_s = precompute_reference(model, lists, chunk_size, layout)  # reference once, before training
    refs = [r[None].to(device) for r in refs]
    log(f"  reference precompute {precompute_s:.3f} s/list")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt_kwargs = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, **opt_kwargs)
    step_s, losses = [], []
    for i in range(warmup + steps):
        if i == warmup and device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
        batch, ref = batches[i % len(batches)], refs[i % len(refs)]
        sync(device)
        t0 = time.perf_counter()
        logps, n_tok = score_batch(model, batch, chunk_size)
        loss = lambda_dpo_loss(sequence_scores(logps, ref, n_tok, "sum"), target, mask, BETA).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        dt = time.perf_counter() - t0
        losses.append(loss.item())
        timed = i >= warmup
        if timed:
            step_s.append(dt)
        log(f"  {'step' if timed else 'warm-up'} {i + 1}/{warmup + steps}: {dt:.3f} s, loss {losses[-1]:.4f}")
    out = {"step_s": step_s, "median_step_s": statistics.median(step_s), "precompute_s_per_list": precompute_s,
           "loss": losses[-1], "trainable_params": sum(p.numel() for p in params), "layout": layout}
    out.update(memory(device))
    del opt
    return out


def run_mode(mode: str, args, shape: dict, dtype: torch.dtype, device: torch.device, log=print) -> dict:
    rec = {"mode": mode, "prompt_len": args.prompt_len, "response_len": args.response_len, "n": args.n,
           "tokens_per_list": args.prompt_len + args.n * args.response_len,
           "gradient_checkpointing": args.gradient_checkpointing}
    model = None
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model = build_model(shape, dtype, device, args.gradient_checkpointing)
        rec["total_params"] = sum(p.numel() for p in model.parameters())
        if mode == "lora":
            model = add_lora(model, args.lora_r)
        rec["precision"] = precision_label(model)  # lora on bf16 weights: "bfloat16-mixed"
        rec["trainable_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                                          if p.requires_grad})
        rec["weights_gib"] = memory(device).get("allocated_gib")
        lists = make_lists(args.prompt_len, args.response_len, args.n, max(args.warmup + args.steps, 1),
                           vocab_size=shape["vocab_size"])
        rec.update(time_steps(model, lists, device, args.warmup, args.steps, args.chunk_size, log))
        rec["tokens_per_s"] = rec["tokens_per_list"] / rec["median_step_s"]
        rec["lists_per_s"] = 1 / rec["median_step_s"]
    except torch.cuda.OutOfMemoryError as err:  # e.g. full fine-tuning on a small GPU: report, go on
        rec["error"] = f"CUDA out of memory: {str(err).splitlines()[0][:300]}"
        log(f"  FAILED: {rec['error']}")
    finally:
        del model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rec


def verdicts(records: list[dict], device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["(smoke run on CPU: no GPU memory measured, no verdicts)"]
    out = []
    for rec in records:
        if rec.get("error"):
            out.append(f"{rec['mode']}: failed ({rec['error']})")
            continue
        gb = rec["peak_gib"] * GIB / 1e9
        line = (f"{rec['mode']}: peak {rec['peak_gib']:.2f} GiB = {gb:.2f} GB, {gb / PAPER_GB:.0%} of the paper's "
                f"{PAPER_GB:g} GB")
        if rec["mode"] == "lora":
            line += f"; target LoRA < {LORA_TARGET_GB:g} GB -> {'MET' if gb < LORA_TARGET_GB else 'NOT MET'}"
        out.append(line)
    return out


def count(x: int) -> str:
    return f"{x / 1e6:.1f}M" if x >= 1e5 else f"{x:,}"


def table(records: list[dict]) -> list[list[str]]:
    f = fmt
    rows = [["mode", "P/R/N", "tokens/list", "trainable", "weights GiB", "peak GiB", "peak GB", "s/step",
             "tokens/s", "ref s/list", "vs 20 GB"]]
    for r in records:
        cfg = f"{r['prompt_len']}/{r['response_len']}/{r['n']}"
        if r.get("error"):
            rows.append([r["mode"], cfg, str(r["tokens_per_list"]), "FAILED", "", "", "", "", "", "", ""])
            continue
        peak = r.get("peak_gib")
        rows.append([r["mode"] + (" +gc" if r["gradient_checkpointing"] else ""), cfg, str(r["tokens_per_list"]),
                     count(r["trainable_params"]), f(r.get("weights_gib")), f(peak),
                     f(peak * GIB / 1e9 if peak is not None else None), f(r["median_step_s"], ".3f"),
                     f(r["tokens_per_s"], ".0f"), f(r["precompute_s_per_list"], ".3f"),
                     f(peak * GIB / 1e9 / PAPER_GB if peak is not None else None, ".0%")])
    return rows


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows)


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * len(rows[0])) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


NOT_AVAILABLE = """\
bench_gpu.py: no CUDA device here, nothing measured.
On a machine with a CUDA GPU it measures, for a Llama-3.2-1B-shaped model (random weights, bf16,
sdpa), N={n} responses per list, P={p} prompt + N*R={nr} response tokens = {t} tokens per list,
LoRA (r={r}, all linear layers) and full fine-tuning, each with the reference log-probs precomputed:
peak GPU memory (torch.cuda.max_memory_allocated) and tokens/s of lambda-dpo training steps
(forward + backward + AdamW), against the paper's 20 GB and the LoRA target of 8 GB.
Run it there from the repository root:

    python bench/bench_gpu.py                             # writes bench/results/gpu.json and gpu.md
    python bench/bench_gpu.py --gradient-checkpointing

`python bench/bench_gpu.py --smoke --out /tmp/bench-gpu` exercises the same code on CPU (tiny model).
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of %(default)s")
    parser.add_argument("--prompt-len", type=int, help="P prompt tokens (default 512; smoke 16)")
    parser.add_argument("--response-len", type=int, help="R tokens per response (default 384; smoke 8)")
    parser.add_argument("--n", type=int, default=4, help="responses per list (default 4)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up steps (default 2; smoke 0)")
    parser.add_argument("--steps", type=int, help="timed steps, median reported (default 5; smoke 1)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1024, help="tokens per fp32 log-softmax chunk")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="checkpoint the decoder layers")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"),
                        help="weights dtype (default bfloat16 on CUDA, float32 for --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="no GPU needed: tiny Llama, fp32, CPU, 1 step; results only to --out (else a temp dir)")
    parser.add_argument("--out", help="results dir (default bench/results; never bench/results with --smoke)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if set(modes) - set(MODES):
        parser.error(f"unknown modes {sorted(set(modes) - set(MODES))}; choose from {MODES}")
    smoke = args.smoke
    defaults = dict(prompt_len=16, response_len=8, warmup=0, steps=1) if smoke else \
        dict(prompt_len=512, response_len=384, warmup=2, steps=5)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    tokens = args.prompt_len + args.n * args.response_len

    if not smoke and not torch.cuda.is_available():
        print(NOT_AVAILABLE.format(n=args.n, p=args.prompt_len, nr=args.n * args.response_len, t=tokens, r=args.lora_r))
        return 0
    if smoke:
        device, dtype, shape = torch.device("cpu"), getattr(torch, args.dtype or "float32"), TINY
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-gpu-smoke-"))
        if out.resolve() == RESULTS_DIR.resolve():
            parser.error("--smoke results are meaningless; give --out a temporary directory")
    else:
        device, dtype, shape = torch.device("cuda"), getattr(torch, args.dtype or "bfloat16"), LLAMA_3_2_1B
        out = Path(args.out) if args.out else RESULTS_DIR

    import peft
    import transformers

    env = {"command": "python bench/bench_gpu.py" + "".join(" " + shlex.quote(a) for a in argv),
           "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({cpu_model()})",
           "smoke": smoke, "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "peft": peft.__version__, "python": platform.python_version(),
           "model": "Llama-3.2-1B shape, random weights" if not smoke else "tiny Llama, random weights",
           "model_shape": shape, "dtype": str(dtype).removeprefix("torch."), "attn_implementation": "sdpa",
           "prompt_len": args.prompt_len, "response_len": args.response_len, "n": args.n, "tokens_per_list": tokens,
           "warmup": args.warmup, "steps": args.steps, "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r,
                                                                 "dropout": 0.0, "target_modules": "all-linear"},
           "optimizer": {"name": "AdamW", "lr": LR, "weight_decay": 0.0, "fused": device.type == "cuda"},
           "beta": BETA, "seed": SEED, "gradient_checkpointing": args.gradient_checkpointing,
           "chunk_size": args.chunk_size}
    print(f"bench_gpu: {env['device']}, {env['model']}, {env['dtype']}, P={args.prompt_len} R={args.response_len} "
          f"N={args.n} ({tokens} tokens/list), modes {modes}"
          + (", gradient checkpointing" if args.gradient_checkpointing else "")
          + (f" [SMOKE: CPU {env['dtype']} tiny model, figures meaningless]" if smoke else ""), flush=True)
    records = []
    for mode in modes:
        print(f"{mode}:", flush=True)
        records.append(run_mode(mode, args, shape, dtype, device))
    rows, verdict = table(records), verdicts(records, device)
    print("\n" + plain(rows) + "\n\n" + "\n".join(verdict))

    notes = [
        "peak = torch.cuda.max_memory_allocated() over the timed steps (reset after the warm-up): weights, "
        "gradients, optimizer state, activations; the allocator's reserved peak is in the JSON "
        "(peak_reserved_gib). GB = 1e9 bytes (the 20 GB / 8 GB comparisons), GiB = 2^30.",
        "tokens/s = (P + N*R) / median seconds per training step (one list per step: shared-prompt forward, "
        "backward, AdamW step); the reference forward is paid once before training (ref s/list).",
        "lora: mixed precision (bf16 frozen weights, fp32 LoRA weights and AdamW states, bf16 products under "
        "autocast, fp32 log-softmax and loss).",
        "full: pure bf16 (weights, gradients and AdamW states all bf16, fused AdamW). Mixed precision with "
        "fp32 master weights and fp32 AdamW states would add ~12 bytes per parameter (arithmetic, not measured).",
        "Random weights and random token ids: time and memory do not depend on the weight values.",
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"environment": env, "results": records, "verdicts": verdict,
                                              "notes": notes}, indent=2) + "\n")
    md = [f"# GPU: lambda-dpo training step, {env['model']} ({env['dtype']}, N={args.n}, "
          f"P={args.prompt_len}, R={args.response_len})", "",
          f"- command: `{env['command']}`", f"- GPU: {env['device']}", f"- date: {env['date']}",
          f"- torch {env['torch']} (CUDA {env['cuda']}), transformers {env['transformers']}, peft {env['peft']}",
          f"- {args.warmup} warm-up + {args.steps} timed steps per mode, median reported; "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}", "",
          markdown(rows), "", *[f"- {v}" for v in verdict], "", *[f"- {n}" for n in notes], ""]
    if smoke:
        md.insert(1, "\n**SMOKE RUN on CPU, fp32, tiny model: the figures mean nothing.**")
    (out / "gpu.md").write_text("\n".join(md))
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
