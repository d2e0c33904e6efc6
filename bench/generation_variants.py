"""Greedy generation, fp32 against the bf16 mixed mode, with the variants tried to speed up decoding.

    python bench/generation_variants.py                   # 24 prompts x 64 new tokens, 2 rounds
    python bench/generation_variants.py --rounds 3 --tag generation_variants_3

Variants, each timed for both precisions in one process, round-robin (round_robin.py):
  default     lambda_dpo.generation.generate as shipped: DynamicCache, SDPA, and for bf16 weights
              precision.precision_context (autocast; the fp32 LoRA weights cast to bf16 per call)
  static      the same with transformers' StaticCache (`cache_implementation="static"`): key/value
              buffers allocated once instead of concatenated at every decoding step
  peft_cast   bf16 only: no autocast, PEFT's own casting (each LoRA product in fp32 on an fp32 copy
              of its input): decoding multiplies 12-row inputs, where bf16 products are not faster
  one_batch   every prompt in one batch (what the demo does since 2026-12-02, demo.run.GEN_BATCH)
              instead of batches of 12: a decoding step of 24 rows costs about what one of 12 does
The LoRA (r16, all linear layers, B = 0 as initialised) is attached as in a trained run, batches
of 12 (the demo's until 2026-12-02) but for one_batch, and every run is forced to the same number of new tokens
(min_new_tokens) so that the precisions do the same work. Prints medians, the mixed-over-fp32 ratio
of each variant and how many replies a variant leaves unchanged. Results: bench/results/<tag>.*.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


from bench_mixed_precision import gen_prompts  # noqa: E402
from round_robin import add_common_args, environment, lora_models, medians, parse_and_start, round_robin, save  # noqa: E402,E501

SETTINGS = [("float32", "default"), ("bfloat16", "default"), ("float32", "static"), ("bfloat16", "static"),
            ("bfloat16", "peft_cast"), ("float32", "one_batch"), ("bfloat16", "one_batch")]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gen-prompts", type=int, default=24)
    ap.add_argument("--gen-tokens", type=int, default=64)
    add_common_args(ap, "generation_variants")
    args = parse_and_start(ap, argv)
    import lambda_dpo.generation as generation
    from lambda_dpo.models import load_tokenizer

    tok = load_tokenizer(args.model)
    models = {d: m.eval() for d, m in lora_models(args).items()}
    prompts = gen_prompts(args.gen_prompts)
    shipped_context = generation.precision_context
    replies = {}

    def run(setting):
        dtype, variant = setting
        model = models[dtype]
        model.generation_config.min_new_tokens = args.gen_tokens
        model.generation_config.cache_implementation = "static" if variant == "static" else None
        generation.precision_context = ((lambda m: contextlib.nullcontext()) if variant == "peft_cast"
                                        else shipped_context)
        try:
            sm = generation.SteerableModel(model, tok, ("quality",), "none")
            generation.generate(sm, prompts[:2], max_new_tokens=4)  # warm-up of this variant
            t0 = time.perf_counter()
            batch = len(prompts) if variant == "one_batch" else 12
            replies[setting] = generation.generate(sm, prompts, max_new_tokens=args.gen_tokens, batch_size=batch)
            return [time.perf_counter() - t0]
        finally:
            generation.precision_context = shipped_context

    times = round_robin(SETTINGS, run, args.rounds, f"gen{args.gen_prompts}x{args.gen_tokens}")
    med = {f"{d}/{v}": s for (d, v), s in medians(times).items()}
    same = {f"{d}/{v}": sum(a == b for a, b in zip(replies[(d, v)], replies[(d, "default")]))
            for d, v in SETTINGS if v != "default"}
    record = {**environment(args), "rounds": args.rounds, "prompts": args.gen_prompts,
              "new_tokens": args.gen_tokens, "median_s": med, "runs_s": {f"{d}/{v}": t for (d, v), t in times.items()},
              "replies_equal_to_default": same}
    lines = render(record)
    save(args, record, lines)
    return record


def render(record: dict) -> list[str]:
    """The markdown table of a result record (also `--render FILE.json`)."""
    med, same, n = record["median_s"], record["replies_equal_to_default"], record["prompts"]
    lines = [f"# Greedy generation variants ({record['threads']} threads, {n} prompts x {record['new_tokens']} new "
             f"tokens, batches of 12 unless one_batch, LoRA r16, {record['rounds']} rounds, medians)", "",
             "| precision | variant | s per run | over fp32 default | over the same precision's default | "
             f"mixed over fp32, same variant | replies equal to default (of {n}) |", "|---|---|---|---|---|---|---|"]
    for d, v in SETTINGS:
        s = med[f"{d}/{v}"]
        fp32_same = med.get(f"float32/{v}")
        mixed = f"{fp32_same / s:.2f}x" if d == "bfloat16" and fp32_same else "-"
        lines.append(f"| {d} | {v} | {s:.2f} | {med['float32/default'] / s:.2f}x | {med[f'{d}/default'] / s:.2f}x | "
                     f"{mixed} | {same.get(f'{d}/{v}', '-')} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        print("\n".join(render(json.loads(Path(sys.argv[2]).read_text()))))
        raise SystemExit
    main()
