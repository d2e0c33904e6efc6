"""Where a listwise training step spends its time: torch.profiler over a few steps, per layout and dtype.

    python bench/profile_step.py --dtype float32                      # prompt_cache and naive, 256/128
    python bench/profile_step.py --dtype bfloat16 --layouts naive --top 30

For each layout, the same step as bench_mixed_precision's train task (one list per AdamW step,
N = 4, LoRA r16; prompt_cache reads reference log-probs computed before the profiled steps, naive
runs a reference forward inside each step), profiled after one warm-up step. Prints the operators
with the most self CPU time, then seconds per step by phase (the listwise_steps labels) and by
kind of work (self CPU of each operator, classified by name and shape: `classify`), side by side
with naive's figure over prompt_cache's: which kinds of work the shared prompt saves, and which it
does not. Profiling adds overhead (a few %), so read ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from listwise_steps import LISTWISE_LAYOUTS, precompute_reference, time_listwise_steps  # noqa: E402
from workload import add_lora, make_lists  # noqa: E402

PHASES = ("reference forward", "policy forward", "loss", "backward", "optimizer")
ELEMENTWISE = {"mul", "add", "sub", "div", "neg", "silu", "silu_backward", "pow", "rsqrt", "mean", "sum", "exp",
               "add_", "mul_", "sub_", "div_", "cos", "sin", "sigmoid", "where", "masked_fill", "clamp", "log",
               "logsumexp", "_log_softmax", "_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
               "tanh", "reciprocal", "sqrt", "lerp_", "addcmul_", "addcdiv_", "maximum", "gather", "scatter_add_"}


def classify(name: str, shapes: list, vocab: int) -> str:
    """Kind of work of one operator call (name without `aten::`, its input shapes)."""
    flat = [d for s in shapes if isinstance(s, list) for d in s]
    if "_foreach" in name or "adam" in name:
        return "optimizer (AdamW on LoRA weights)"
    if vocab in flat:
        return "output layer (49k vocabulary) and log-softmax"
    if "scaled_dot_product" in name or "flash_attention" in name or name == "bmm":
        return "attention kernel"
    if name in ("mm", "addmm", "linear", "matmul"):
        return "linear layers (decoder and LoRA products)"
    if name == "copy_" and any(isinstance(s, list) and len(s) == 5 for s in shapes):
        return "key/value head expansion (repeat_kv)"
    if name in ("cat", "index_select", "index", "index_add", "index_add_", "index_put", "index_put_", "_index_put_impl_",
                "embedding_dense_backward", "embedding", "constant_pad_nd", "narrow_copy", "slice_backward"):
        return "gather, concatenation and padding (cache, rows)"
    if name in ("fill_", "zero_", "zeros", "empty", "new_zeros", "ones_like", "zeros_like", "empty_strided"):
        return "allocation and zero fills"
    if name in ELEMENTWISE:
        return "elementwise (norms, rotary, SwiGLU, residuals)"
    if name in ("copy_", "to", "_to_copy", "clone", "contiguous", "t", "transpose", "view", "reshape", "expand",
                "as_strided", "permute", "unsqueeze", "squeeze", "select", "slice", "detach", "_unsafe_view"):
        return "copies and views"
    return "other operators"


def profile_layout(model, lists, layout: str, steps: int, top: int) -> dict:
    """Profile `steps` training steps of `layout` on lists[1:] (after a warm-up on lists[0])."""
    method = {"prompt_cache": "ours", "packed": "ours_packed", "packed_segments": "ours_segments",
              "naive": "naive"}[layout]
    reference = (precompute_reference(model, lists[1:], layout=LISTWISE_LAYOUTS[method])[0] if layout != "naive"
                 else None)
    time_listwise_steps(model, lists[:1], method, warmup=1, steps=0)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        res = time_listwise_steps(model, lists[1:], method, warmup=0, steps=steps, reference=reference)
    print(f"== {layout}: steps {[round(s, 2) for s in res['step_s']]} s")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top,
                                                             max_name_column_width=40, max_shapes_column_width=70))
    phases = {e.key: e.cpu_time_total / 1e6 / steps for e in prof.key_averages() if e.key in PHASES}
    kinds: dict[str, float] = {}
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in PHASES or not e.key.startswith("aten::"):
            continue
        kind = classify(e.key.removeprefix("aten::"), e.input_shapes, model.config.vocab_size)
        kinds[kind] = kinds.get(kind, 0.0) + e.self_cpu_time_total / 1e6 / steps
    return {"step_s": res["step_s"], "phases_s": phases, "kinds_s": kinds}


def side_by_side(results: dict) -> list[str]:
    layouts = list(results)
    ratio_head = f" | {layouts[1]} over {layouts[0]} |" if len(layouts) == 2 else " |"
    lines = ["| s per step | " + " | ".join(layouts) + ratio_head,
             "|---" * (len(layouts) + 1 + (len(layouts) == 2)) + "|"]
    for table in ("phases_s", "kinds_s"):
        keys = sorted({k for r in results.values() for k in r[table]},
                      key=lambda k: -max(r[table].get(k, 0.0) for r in results.values()))
        if table == "phases_s":
            keys = [k for k in PHASES if k in keys]
        for k in keys + ["total"]:
            vals = [sum(r[table].values()) if k == "total" else r[table].get(k, 0.0) for r in results.values()]
            label = f"**{k}** ({'phases' if table == 'phases_s' else 'operators, self CPU'})" if k == "total" else k
            ratio = (f" | {vals[1] / vals[0]:.2f}x" if vals[0] > 0 else " | -") if len(vals) == 2 else ""
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + ratio + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--layouts", default="prompt_cache,naive", help="comma-separated: prompt_cache, packed, packed_segments, naive (default %(default)s)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--config", default="256x128", help="PxR (default %(default)s)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--json", help="also write the per-layout figures to this file")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from lambda_dpo.models import load_model

    p, r = (int(x) for x in args.config.lower().split("x"))
    model = add_lora(load_model(args.model, dtype=args.dtype, attn_implementation=args.attn), 16)
    lists = make_lists(p, r, args.n, 1 + args.steps, model.config.vocab_size)
    results = {layout: profile_layout(model, lists, layout, args.steps, args.top) for layout in args.layouts.split(",")}
    print(f"\n{args.dtype} {args.attn} {p}/{r} N={args.n}, {args.steps} profiled steps, {args.threads} threads")
    print("\n".join(side_by_side(results)))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
