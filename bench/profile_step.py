"""Where a listwise training step spends its time: torch.profiler over a few steps, per dtype.

    python bench/profile_step.py --dtype float32 --layout prompt_cache      # 256/128, N=4, LoRA r16
    python bench/profile_step.py --dtype bfloat16 --layout naive --top 30

Prints the operators with the most self CPU time (the same step as bench_mixed_precision's train
task: one list per AdamW step, reference precomputed for prompt_cache, a reference forward inside
the step for naive). Used to find what the bf16 path and the prompt_cache layout lose.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from listwise_steps import time_listwise_steps  # noqa: E402
from workload import add_lora, make_lists  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--layout", default="prompt_cache", choices=["prompt_cache", "naive"])
    ap.add_argument("--config", default="256x128", help="PxR (default %(default)s)")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from lambda_dpo.models import load_model

    p, r = (int(x) for x in args.config.lower().split("x"))
    model = add_lora(load_model(args.model, dtype=args.dtype), 16)
    lists = make_lists(p, r, args.n, 1 + args.steps, model.config.vocab_size)
    method = {"prompt_cache": "ours", "naive": "naive"}[args.layout]
    time_listwise_steps(model, lists[:1], method, warmup=1, steps=0)  # warm-up (and the reference cache)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        res = time_listwise_steps(model, lists[1:], method, warmup=0, steps=args.steps)
    print(f"{args.dtype} {args.layout} {p}/{r} N={args.n}: steps {[round(s, 2) for s in res['step_s']]} s")
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.top,
                                                             max_name_column_width=40, max_shapes_column_width=70))


if __name__ == "__main__":
    main()
