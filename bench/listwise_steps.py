"""Timing of lambda-dpo's listwise training step ("ours", "ours_packed") and of the naive one ("naive").

One list per AdamW step, scored by lambda_dpo.logprobs and trained with lambda_dpo.losses, in the
layout each method names (LISTWISE_LAYOUTS). Ours reads reference log-probs computed once before
training (precompute_reference, timed separately); naive runs a reference forward (adapter
disabled) inside every step. Used by bench_throughput.py's workers and bench_mixed_precision.py;
bench_gpu.py reuses precompute_reference.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import record_function

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench/ is not a package: siblings import by name from any directory

from workload import BETA, LR, rank_target, tokenized_lists  # noqa: E402

LISTWISE_LAYOUTS = {"ours": "prompt_cache", "ours_packed": "packed", "ours_segments": "packed", "naive": "naive"}
"""Method -> scoring layout. ours_packed attends over the row under a dense block mask; ours_segments
runs the same packed row through lambda_dpo.segment_attention (the model's attention implementation
prefixed, for the duration of the timing)."""


def _reference_context(model):
    if not hasattr(model, "disable_adapter"):
        raise TypeError("the benchmark expects a PEFT (LoRA) model: its reference is the adapter disabled")
    return model.disable_adapter()


def precompute_reference(model, lists, chunk_size: int = 1024, layout: str = "prompt_cache"
                         ) -> tuple[list[torch.Tensor], float]:
    """Reference log-probs of every list with lambda_dpo.reference.compute_reference_logps.

    Returns (per-list [N] tensors, seconds per list). This is what training reads from the cache.
    """
    from lambda_dpo.reference import compute_reference_logps

    tls = tokenized_lists(lists)
    start = time.perf_counter()
    refs = compute_reference_logps(model, tls, batch_size=1, layout=layout, chunk_size=chunk_size,
                                   desc="bench reference")
    return refs, (time.perf_counter() - start) / max(len(lists), 1)


def time_listwise_steps(model, lists, method: str, warmup: int = 1, steps: int = 3, *, min_steps: int = 1,
                        max_timed_seconds: float = float("inf"), chunk_size: int = 1024, beta: float = BETA,
                        lr: float = LR, log=None, reference: list[torch.Tensor] | None = None) -> dict:
    """Time full training steps (forward + backward + AdamW step) of `method` (a LISTWISE_LAYOUTS key).

    One list per step; list i is used at step i (cycling). "ours" / "ours_packed": prompt_cache /
    packed layout, reference log-probs precomputed before timing. "naive": one row per response and a reference forward
    (adapter disabled, no grad) inside every step. Timing stops early once `max_timed_seconds`
    of timed steps have run and at least `min_steps` were timed. `reference`: per-list [N] log-probs
    from precompute_reference, for callers that must keep the precompute out of what they measure
    (profile_step.py); computed here when None. Each phase runs under a torch.profiler label
    ("reference forward", "policy forward", "loss", "backward", "optimizer").

    Returns {"step_s": [...], "cpu_s": [...], "precompute_s_per_list": float | None, "loss": float}.
    """
    from lambda_dpo.losses import lambda_dpo_loss, sequence_scores
    from lambda_dpo.layouts import build_batch
    from lambda_dpo.logprobs import score_batch

    if method not in LISTWISE_LAYOUTS:
        raise ValueError(f"method must be one of {sorted(LISTWISE_LAYOUTS)}, got {method!r}")
    layout = LISTWISE_LAYOUTS[method]
    if method == "ours_segments":
        from lambda_dpo.segment_attention import segmented

        with segmented(model):
            return time_listwise_steps(model, lists, "ours_packed", warmup, steps, min_steps=min_steps,
                                       max_timed_seconds=max_timed_seconds, chunk_size=chunk_size, beta=beta,
                                       lr=lr, log=log, reference=reference)
    cached_ref = layout != "naive"
    log = log or (lambda msg: None)
    n = len(lists[0][1])
    target, mask = rank_target(n), torch.ones(1, n, dtype=torch.bool)
    batches = [build_batch([p], [rs], layout=layout) for p, rs in lists]
    precompute = None
    if cached_ref and reference is None:
        reference, precompute = precompute_reference(model, lists, chunk_size, layout)
        log(f"reference precompute {precompute:.2f} s/list")
    refs = [r[None] for r in reference] if cached_ref else None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: the kernel the Trainer runs by default (TrainingArguments.optim "adamw_torch_fused"); the
    # per-tensor loop torch picks on CPU otherwise costs 35 ms a step on SmolLM2's 420 LoRA tensors.
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    step_s, cpu_s, loss_value = [], [], float("nan")
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        if cached_ref:
            ref = refs[i % len(refs)]
        else:
            with record_function("reference forward"), torch.no_grad(), _reference_context(model):
                ref, _ = score_batch(model, batch, chunk_size)
        with record_function("policy forward"):
            logps, n_tok = score_batch(model, batch, chunk_size)
        with record_function("loss"):
            scores = sequence_scores(logps, ref, n_tok, "sum")
            loss = lambda_dpo_loss(scores, target, mask, beta).mean()
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        loss_value = loss.item()
        timed = i >= warmup
        if timed:
            step_s.append(dt), cpu_s.append(dc)
        log(f"{'step' if timed else 'warm-up'} {i + 1}/{warmup + steps}: {dt:.2f} s (cpu {dc:.2f} s)")
        if timed and len(step_s) >= min_steps and sum(step_s) >= max_timed_seconds:
            if len(step_s) < steps:
                log(f"time budget {max_timed_seconds:.0f} s reached after {len(step_s)} timed steps")
            break
    return {"step_s": step_s, "cpu_s": cpu_s, "precompute_s_per_list": precompute, "loss": loss_value}
