"""Attention kernel x precision for the shared-prompt training step, interleaved in one process.

    python bench/bench_attention.py                      # 256/128 and 128/64, 3 rounds
    python bench/bench_attention.py --configs 128x64 --rounds 2
    python bench/bench_attention.py --task generate --tag attention_generate   # greedy generation

On this CPU the bf16 matrix products are 2x faster than fp32 but PyTorch's fused SDPA kernel is not
(`python bench/profile_step.py --dtype bfloat16`), which caps the mixed mode's gain. transformers'
"eager" attention does the same arithmetic as explicit bf16 matrix products. This script times one
SmolLM2-135M LoRA-r16 training step (prompt_cache layout, reference precomputed, N = 4, one list per
step) for each of fp32 / bf16 x sdpa / eager, round-robin within each round so that drift of a shared machine
hits every setting alike, and prints the medians and the ratios that decide a default. Peak memory
is not comparable within one process: bench/bench_mixed_precision.py --attn measures it.
`--task generate` times greedy generation instead (lambda_dpo.generation.generate of
--gen-prompts prompts x --gen-tokens new tokens, batches of 12 as the demo uses, the same token count
in every setting), in the same round-robin: decoding runs one query position against a growing
key/value cache, a different shape from training's.
Results: bench/results/<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


from listwise_steps import time_listwise_steps  # noqa: E402
from round_robin import add_common_args, environment, lora_models, medians, parse_and_start, round_robin, save  # noqa: E402,E501
from workload import make_lists  # noqa: E402

from bench_mixed_precision import gen_prompts  # noqa: E402  (the same prompts as its generate task)

SETTINGS = [("float32", "sdpa"), ("float32", "eager"), ("bfloat16", "sdpa"), ("bfloat16", "eager")]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="train", choices=["train", "generate"])
    ap.add_argument("--configs", default="256x128,128x64", help="PxR prompt/response lengths (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="round-robin rounds, 2 timed steps each (default 3)")
    ap.add_argument("--gen-prompts", type=int, default=24)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--n", type=int, default=4)
    add_common_args(ap, "attention")
    args = parse_and_start(ap, argv)
    models = lora_models(args)
    results = {}
    configs = args.configs.split(",") if args.task == "train" else [f"gen{args.gen_prompts}x{args.gen_tokens}"]
    for cfg in configs:
        if args.task == "train":
            p, r = map(int, cfg.split("x"))
            lists = make_lists(p, r, args.n, 3, models["float32"].config.vocab_size)
            timed = lambda model: time_listwise_steps(model, lists, "ours", warmup=1, steps=2)["step_s"]  # noqa: E731
        else:
            timed = _generation_timer(args)
        def run(setting, timed=timed):
            dtype, attn = setting
            models[dtype].set_attn_implementation(attn)
            return timed(models[dtype])

        times = round_robin(SETTINGS, run, args.rounds, cfg)
        med = {f"{d}/{a}": m for (d, a), m in medians(times).items()}
        results[cfg] = {"median_s": med, "steps_s": {f"{d}/{a}": t for (d, a), t in times.items()},
                        "bf16_eager_over_bf16_sdpa": med["bfloat16/sdpa"] / med["bfloat16/eager"],
                        "fp32_eager_over_fp32_sdpa": med["float32/sdpa"] / med["float32/eager"],
                        "mixed_best_over_fp32_best": min(med["float32/sdpa"], med["float32/eager"])
                        / min(med["bfloat16/sdpa"], med["bfloat16/eager"]),
                        "mixed_sdpa_over_fp32_sdpa": med["float32/sdpa"] / med["bfloat16/sdpa"]}
    record = {**environment(args), "task": args.task, "n": args.n, "rounds": args.rounds, "results": results}
    what = (f"N = {args.n}, LoRA r16, prompt_cache, {args.rounds} rounds x 2 timed steps, medians, s per list"
             if args.task == "train" else f"greedy generation, {args.gen_prompts} prompts x {args.gen_tokens} new "
             f"tokens, batches of 12, LoRA r16, {args.rounds} rounds, medians, s per run")
    lines = [f"# Attention kernel x precision ({args.threads} threads, {what})", "",
             "| setting (P/R) | fp32 sdpa | fp32 eager | bf16 sdpa | bf16 eager | bf16: eager over sdpa | "
             "fp32: eager over sdpa | mixed over fp32, sdpa both | mixed over fp32, best of each |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cfg, res in results.items():
        m = res["median_s"]
        lines.append(f"| {cfg.replace('x', '/')} | {m['float32/sdpa']:.2f} | {m['float32/eager']:.2f} | "
                     f"{m['bfloat16/sdpa']:.2f} | {m['bfloat16/eager']:.2f} | {res['bf16_eager_over_bf16_sdpa']:.2f}x | "
                     f"{res['fp32_eager_over_fp32_sdpa']:.2f}x | {res['mixed_sdpa_over_fp32_sdpa']:.2f}x | "
                     f"**{res['mixed_best_over_fp32_best']:.2f}x** |")
    save(args, record, lines)
    return record


def _generation_timer(args):
    """A function model -> [seconds] timing one greedy generation run of the bench's prompts."""
    from lambda_dpo.generation import SteerableModel, generate
    from lambda_dpo.models import load_tokenizer

    tok = load_tokenizer(args.model)
    prompts = gen_prompts(args.gen_prompts)

    def timed(model) -> list[float]:
        model.eval()
        model.generation_config.min_new_tokens = args.gen_tokens  # the same token count in every setting
        sm = SteerableModel(model, tok, ("quality",), "none")
        generate(sm, prompts[:2], max_new_tokens=4)  # warm-up of this kernel
        t0 = time.perf_counter()
        generate(sm, prompts, max_new_tokens=args.gen_tokens, batch_size=12)
        return [time.perf_counter() - t0]

    return timed


if __name__ == "__main__":
    main()
