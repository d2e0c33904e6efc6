"""The output layer's log-softmax, out of place (before) vs in place, and its chunk size, in the step.

    python bench/head_variants.py                                  # 128/64 and 256/128, 3 rounds
    python bench/head_variants.py --configs 128x64 --chunks 1024,128 --rounds 2 --tag head_quick

The prompt_cache training step (listwise_steps.py: one list per AdamW step, N = 4, LoRA r16,
reference precomputed) with the frozen output layer's forward (`logprobs._FrozenHeadTokenLogps`)
as it was ("out of place": `logsumexp` allocates a second [chunk, vocab] fp32 buffer) and as it
is ("in place": `logprobs._softmax_`), at several `logprob_chunk_size` values, round-robin in one
process for fp32 and mixed. On the CPU a buffer of more than 32 MB (glibc's largest mmap
threshold) is mapped fresh for every call, and each of its pages is faulted in and zeroed on first
touch: a [1024, 49152] fp32 chunk is 200 MB, one of 128 tokens 25 MB. Results:
bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from listwise_steps import precompute_reference, time_listwise_steps  # noqa: E402
from round_robin import add_common_args, environment, lora_models, medians, parse_and_start, round_robin, save  # noqa: E402,E501
from workload import make_lists  # noqa: E402


def out_of_place_forward(ctx, hidden, weight, bias, targets):
    """`_FrozenHeadTokenLogps.forward` before the in-place log-softmax (commit 3dc45b8)."""
    logits = F.linear(hidden, weight, bias).float()
    lse = logits.logsumexp(-1)
    logps = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    probs = logits.sub_(lse[:, None]).exp_().to(weight.dtype)
    ctx.save_for_backward((weight[targets] - probs @ weight).float())
    ctx.hidden_dtype = hidden.dtype
    return logps


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="128x64,256x128", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--chunks", default="1024,256,128",
                    help="chunk sizes of the in-place variant (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds, 2 timed steps each (default 3)")
    ap.add_argument("--n", type=int, default=4)
    add_common_args(ap, "head_variants")
    args = parse_and_start(ap, argv)
    from lambda_dpo import logprobs

    in_place_forward = logprobs._FrozenHeadTokenLogps.forward
    forwards = {"out_of_place": out_of_place_forward, "in_place": in_place_forward}
    variants = [("out_of_place", 1024)] + [("in_place", int(c)) for c in args.chunks.split(",")]
    models = lora_models(args)
    settings = [(dtype, head, chunk) for dtype in models for head, chunk in variants]
    results = {}
    try:
        for cfg in args.configs.split(","):
            p, r = map(int, cfg.split("x"))
            lists = make_lists(p, r, args.n, 3, models["float32"].config.vocab_size)
            refs = {dtype: precompute_reference(model, lists)[0] for dtype, model in models.items()}

            def run(setting):
                dtype, head, chunk = setting
                logprobs._FrozenHeadTokenLogps.forward = staticmethod(forwards[head])
                return time_listwise_steps(models[dtype], lists, "ours", warmup=1, steps=2, chunk_size=chunk,
                                           reference=refs[dtype])["step_s"]

            times = round_robin(settings, run, args.rounds, cfg)
            med = medians(times)
            results[cfg] = {"median_s": {"/".join(map(str, k)): v for k, v in med.items()},
                            "steps_s": {"/".join(map(str, k)): v for k, v in times.items()}}
    finally:
        logprobs._FrozenHeadTokenLogps.forward = staticmethod(in_place_forward)
    record = {**environment(args), "n": args.n, "rounds": args.rounds, "results": results}
    head = " | ".join(f"{h.replace('_', ' ')} {c}" for h, c in variants)
    lines = [f"# Output layer log-softmax in the prompt_cache step ({args.threads} threads, N = {args.n}, LoRA r16, "
             f"{args.rounds} rounds x 2 timed steps, medians, s per list; speed-up over out of place 1024)", "",
             f"| P/R | dtype | {head} |", "|---|---|" + "---|" * len(variants)]
    for cfg, res in results.items():
        for dtype in models:
            base = res["median_s"][f"{dtype}/out_of_place/1024"]
            cells = [f"{res['median_s'][f'{dtype}/{h}/{c}']:.3f} ({base / res['median_s'][f'{dtype}/{h}/{c}']:.2f}x)"
                     for h, c in variants]
            lines.append(f"| {cfg.replace('x', '/')} | {dtype} | " + " | ".join(cells) + " |")
    save(args, record, lines)
    return record


if __name__ == "__main__":
    main()
