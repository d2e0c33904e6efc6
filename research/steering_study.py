"""The steering study (issue 11): train one configuration, then measure how much lambda steers it.

Every row trains on the shipped demo *training* file only, holding out a seeded dev split of it
(`eval_fraction`); eval.jsonl is never read here. Rows append one JSON line to --out; `--table`
renders them as the markdown table in research/steering-study.md.

    python research/steering_study.py ROW_NAME [key=value ...]   # one row: config overrides
    python research/steering_study.py --base ROW_NAME [key=value ...]   # the untrained base model
    python research/steering_study.py --table                      # print the table

Measured per row, on the dev lists / prompts (pair = conciseness, informativeness):
- top-1 of the implicit reward at each aspect's vertex (the trainer's held-out evaluation);
- mean |Delta| and within-list Spearman of Delta = log pi(y | x, e_inf) - log pi(y | x, e_conc)
  with r_inf - r_conc (Delta is 0 for a model that ignores lambda);
- greedy replies to `gen_prompts` dev prompts at w = weight of informativeness in {0, 0.5, 1}
  (5 points with --points 5), at most --max-new-tokens new tokens (default 96, the budget the demo
  data was sampled with; the first rows used 64, which cuts the longest replies): mean words, judge
  scores, end-to-end word ratio.
`--base` scores the untrained model given exactly the same lambda text (learning rate 0 on a fresh
LoRA adapter, whose B = 0, so the policy is the base model): steering by the prompt alone.
`--extra-train FILE` adds FILE's lists to the training lists (e.g. a `build-data --exclude` build)
while the dev lists stay exactly those of every other row (`split_files`). `seed=N` replicates a row
on the same dev lists: only the training run's randomness changes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
import yaml

from lambda_dpo.demo.dataset import PromptSpec, demo_data_dir, judge_all
from lambda_dpo.evaluation.delta import delta_summary, lambda_deltas, word_count
from lambda_dpo.evaluation.protocol import edge_lambda
from lambda_dpo.evaluation.ranks import spearman
from lambda_dpo.generation import SteerableModel, generate
from lambda_dpo.targets import ratings_tensor
from lambda_dpo.training.config import load_config
from lambda_dpo.training.prepare import lambda_text
from lambda_dpo.training.run import train

PAIR = ("conciseness", "informativeness")
COMMON = dict(model_name_or_path="smollm2-135m-instruct", eval_fraction=0.15, max_eval_lists=24,
              aspects=list(PAIR), max_steps=100, per_device_train_batch_size=2, learning_rate=5e-4, beta=0.1,
              rating_temperature=0.5, conditioning="prompt", lambda_text="instructions", lambda_source="grid",
              max_prompt_length=256, max_response_length=160, logging_steps=10, seed=0, report_to="none",
              model_dtype="bfloat16",  # pinned (the mixed mode, 1.6x fp32 here): rows compare like with like
              lambda_contrast=False, contrast_alpha=0.0,  # the levers as the rows were first run: off unless named
              score_cut_ends=True,  # the rows before 2026-12-01 scored an end of turn after sampler-cut replies
              attn_implementation="sdpa")  # every row ran with SDPA (auto picks eager for bf16 on the CPU since)


def split_files(extra: str | None, workdir: Path, seed: int = 0) -> tuple[Path, Path]:
    """(train file, dev file): the shipped train.jsonl split as `eval_fraction` splits it (same seed, so
    the same dev lists in the same order), with `extra`'s records (if any) appended to the training side.

    Records are split as lines; the training run loads them as every row does. A prompt of `extra`
    that is also a dev prompt is an error (that would leak the dev lists into training).
    """
    from lambda_dpo.training.run import split_eval

    shipped = [line for line in (Path(str(demo_data_dir())) / "train.jsonl").read_text().splitlines() if line.strip()]
    train, dev = split_eval(shipped, COMMON["eval_fraction"], seed)  # as training splits: every shipped list loads
    added = [line for line in Path(extra).read_text().splitlines() if line.strip()] if extra else []
    dev_prompts = {json.loads(line)["prompt"][-1]["content"] for line in dev}
    leaked = [json.loads(line).get("id", "?") for line in added if json.loads(line)["prompt"][-1]["content"] in dev_prompts]
    if leaked:
        raise SystemExit(f"{extra}: {len(leaked)} lists share a prompt with the dev split ({', '.join(leaked[:5])}); "
                         "build it with `lambda-dpo build-data --exclude` on the shipped files")
    workdir.mkdir(parents=True, exist_ok=True)
    train_path, dev_path = workdir / "train.jsonl", workdir / "dev.jsonl"
    train_path.write_text("\n".join(train + added) + "\n")
    dev_path.write_text("\n".join(dev) + "\n")
    return train_path, dev_path


def dev_specs(prompts: list[str]) -> list[PromptSpec]:
    """The judge's PromptSpec of each dev prompt (train.jsonl carries them)."""
    by_text = {}
    with open(Path(str(demo_data_dir())) / "train.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            by_text[rec["spec"]["prompt"]] = PromptSpec(**rec["spec"])
    return [by_text[p] for p in prompts]


# The study's sweep along the edge (moved here from lambda_dpo.evaluation.steering_metrics, which the
# study alone used; the library's steering protocol is lambda_dpo.evaluation.protocol.sweep_edge).

def sign_test(lo: Sequence[float], hi: Sequence[float]) -> dict:
    """Paired two-sided sign test of hi against lo (e.g. per-prompt values at the two ends).

    Pairs with a missing value (None / NaN) and ties are dropped. Returns {"up": #(hi > lo),
    "down": #(hi < lo), "ties": #(hi == lo), "missing": #pairs dropped for a missing value,
    "p_value": exact two-sided binomial p-value of min(up, down) among up + down under p = 1/2,
    i.e. min(1, 2 * sum_{i <= min(up, down)} C(n, i) / 2^n) (scipy.stats.binomtest's value; 1.0
    when n = 0)}.
    """
    if len(lo) != len(hi):
        raise ValueError(f"sign_test needs paired values, got {len(lo)} and {len(hi)}")
    up = down = ties = missing = 0
    for a, b in zip(lo, hi):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            missing += 1
        elif b > a:
            up += 1
        elif b < a:
            down += 1
        else:
            ties += 1
    n, k = up + down, min(up, down)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    p_value = min(1.0, 2 * tail / 2 ** n)
    return {"up": up, "down": down, "ties": ties, "missing": missing, "p_value": p_value}


def _nanmean(values: Sequence[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else float("nan")


def edge_sweep(generate_fn: Callable[[list, dict], Sequence[str]], prompts: Sequence, specs: Sequence,
               judge: Callable[[object, str], Mapping[str, float]], aspects: Sequence[str],
               pair: tuple[str, str], ws: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> dict:
    """Generate along the edge of `pair` and measure how replies change with w.

    Args:
        generate_fn: (prompts, lambda {aspect: weight}) -> one reply string per prompt (greedy, for
            a reproducible sweep); e.g. ``lambda p, lam: generation.generate(sm, p, lam)``.
        prompts: P prompts; specs: P objects handed to the judge with the replies.
        judge: (spec, reply) -> {aspect: score}, the signature of ``lambda_dpo.demo.dataset.judge_all``.
        aspects: the model's aspects (all keys of lambda, and the aspects whose scores are reported).
        pair: (a0, a1); lambda = `edge_lambda(aspects, pair, w)`: w on a1, 1 - w on a0, 0 elsewhere.
            Suggested: (conciseness, informativeness), w = the weight of informativeness.
        ws: strictly increasing weights in [0, 1], at least 2; the first and last are "the ends".

    Returns {"points": one dict per w, in order: {"w", "lambda", "replies" [P], "words" [P]
                 (whitespace words per reply), "mean_words", "judged" {aspect: [P] scores, NaN
                 where the judge gave none}, "scores" {aspect: mean score, missing ones skipped}},
             "summary": {"spearman_words": Spearman of w with mean words (NaN if constant),
                 "spearman": {aspect: Spearman of w with the aspect's mean score},
                 "monotone_words": mean words strictly increasing in w at every point,
                 "end_ratio": mean words at the last w / at the first (inf if only the first is 0,
                     NaN if both are),
                 "sign_test": {"words": `sign_test` of per-prompt words at the first vs last w,
                               "scores": {aspect: the same on per-prompt judge scores}}}}.
    """
    ws = [float(w) for w in ws]
    if len(ws) < 2 or any(b <= a for a, b in zip(ws, ws[1:])):
        raise ValueError(f"ws must be at least 2 strictly increasing weights, got {ws}")
    if len(prompts) != len(specs):
        raise ValueError(f"{len(prompts)} prompts but {len(specs)} specs")
    points = []
    for w in ws:
        lam = edge_lambda(aspects, pair, w)
        replies = list(generate_fn(list(prompts), dict(lam)))
        if len(replies) != len(prompts):
            raise ValueError(f"generate_fn returned {len(replies)} replies for {len(prompts)} prompts at w={w}")
        words = [word_count(r) for r in replies]
        verdicts = [judge(s, r) for s, r in zip(specs, replies)]
        judged = {a: [float("nan") if v.get(a) is None else float(v[a]) for v in verdicts] for a in aspects}
        points.append({"w": w, "lambda": lam, "replies": replies, "words": words,
                       "mean_words": sum(words) / len(words) if words else float("nan"),
                       "judged": judged, "scores": {a: _nanmean(judged[a]) for a in aspects}})
    mean_words = [p["mean_words"] for p in points]
    first, last = points[0], points[-1]
    lo, hi = first["mean_words"], last["mean_words"]
    end_ratio = hi / lo if lo else (float("inf") if hi > 0 else float("nan"))
    summary = {
        "spearman_words": spearman(ws, mean_words),
        "spearman": {a: spearman(ws, [p["scores"][a] for p in points]) for a in aspects},
        "monotone_words": all(b > a for a, b in zip(mean_words, mean_words[1:])),
        "end_ratio": end_ratio,
        "sign_test": {"words": sign_test(first["words"], last["words"]),
                      "scores": {a: sign_test(first["judged"][a], last["judged"][a]) for a in aspects}},
    }
    return {"points": points, "summary": summary}


def measure(result, cfg, gen_prompts: int, points: int, max_new_tokens: int) -> dict:
    trainer = result.trainer
    model, collator = trainer.model, trainer.data_collator
    items = trainer.eval_dataset.items
    aspects = collator.aspects
    e = {a: torch.nn.functional.one_hot(torch.tensor(aspects.index(a)), len(aspects)).float() for a in PAIR}
    model.eval()
    delta = lambda_deltas(model, collator, items, e[PAIR[1]], e[PAIR[0]], batch_size=4)
    ratings, mask = ratings_tensor([it.tokens.source for it in items], aspects)
    dsum = delta_summary(delta, ratings[..., aspects.index(PAIR[1])], ratings[..., aspects.index(PAIR[0])], mask)
    prompts = [it.tokens.source.prompt[-1]["content"] for it in items[:gen_prompts]]
    specs = dev_specs(prompts)
    sm = SteerableModel(model, trainer.processing_class, aspects, cfg.conditioning, lambda_text(cfg))
    ws = (0.0, 0.5, 1.0) if points == 3 else (0.0, 0.25, 0.5, 0.75, 1.0)
    sweep = edge_sweep(lambda ps, lam: generate(sm, ps, lam, max_new_tokens=max_new_tokens, batch_size=12),
                       prompts, specs, judge_all, aspects, PAIR, ws)
    return {"max_new_tokens": max_new_tokens,
            "eval": {k.removeprefix("eval_"): v for k, v in result.eval_metrics.items() if "/" in k}, "delta": dsum,
            "sweep": {"points": [{k: v for k, v in p.items() if k != "replies"} for p in sweep["points"]],
                      "summary": sweep["summary"],
                      "example": {str(p["w"]): p["replies"][0] for p in sweep["points"]}}}


def run_row(name: str, overrides: list[str], base: bool, out: Path, gen_prompts: int, points: int,
            max_new_tokens: int = 96, extra_train: str | None = None) -> dict:
    started = time.time()
    extra = ["learning_rate=0", "max_steps=1"] if base else []
    flags = ([f"--max-new-tokens={max_new_tokens}"] if max_new_tokens != 96 else []) + \
        ([f"--extra-train={extra_train}"] if extra_train else [])
    files = {"train_file": str(Path(str(demo_data_dir())) / "train.jsonl")}
    keys = {o.split("=")[0].strip() for o in overrides}
    if extra_train or "seed" in keys:
        # The dev split is made here with seed 0 and handed over as eval_file, so seed= changes only
        # the training run's randomness (adapter init, list order, lambda draws): a replicate of the row.
        if keys & {"eval_fraction", "eval_file", "train_file"}:
            raise SystemExit("--extra-train and seed= keep the dev split of every other row (seed 0, eval_fraction "
                             "0.15): they cannot be combined with eval_fraction=, eval_file= or train_file=")
        train_path, dev_path = split_files(extra_train, Path(f"runs/study/{name}.data"))
        files = {"train_file": str(train_path), "eval_file": str(dev_path)}
    base_yaml = Path(f"runs/study/{name}.base.yaml")  # COMMON as a file, so command-line overrides win
    base_yaml.parent.mkdir(parents=True, exist_ok=True)
    base_yaml.write_text(yaml.safe_dump({**COMMON, **files, "output_dir": f"runs/study/{name}"}))
    cfg = load_config(base_yaml, [*overrides, *extra])
    result = train(cfg)
    log = [h for h in result.trainer.state.log_history if "loss" in h]
    row = {"row": name, "base": base, "overrides": overrides,
           "command": "python research/steering_study.py " + ("--base " if base else "") + shlex.join([*flags, name, *overrides]),
           **measure(result, cfg, gen_prompts, points, max_new_tokens),
           "train_loss": [round(h["loss"], 4) for h in log], "wall_s": round(time.time() - started, 1)}
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def table(rows: list[dict]) -> str:
    head = ("| row | top-1 conc | top-1 inf | mean abs Delta | Spearman Delta | words w=0 / 0.5 / 1 (5 points: "
            "0 / 0.25 / 0.5 / 0.75 / 1) | ratio 1:0 "
            "| longer at w=1 (sign test) | loss first -> last | new tokens | command |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        ev, d, s = r["eval"], r["delta"], r["sweep"]
        sign = s["summary"]["sign_test"]["words"]
        words = " / ".join(f"{p['mean_words']:.0f}" for p in s["points"])
        loss = f"{r['train_loss'][0]:.2f} -> {r['train_loss'][-1]:.2f}" if r["train_loss"] and not r["base"] else "-"
        lines.append(f"| {r['row']} | {ev.get(f'{PAIR[0]}/top1', float('nan')):.2f} | "
                     f"{ev.get(f'{PAIR[1]}/top1', float('nan')):.2f} | {d['mean_abs_delta']:.2f} | "
                     f"{d['spearman']:.2f} | {words} | {s['summary']['end_ratio']:.2f} | {sign['up']}/{sign['up'] + sign['down']} "
                     f"(p={sign['p_value']:.1g}) | {loss} | {r.get('max_new_tokens', 64)} | `{r['command']}` |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", nargs="?")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--base", action="store_true", help="score the untrained model given the same lambda text")
    p.add_argument("--out", default="research/steering-data/study.jsonl")
    p.add_argument("--gen-prompts", type=int, default=16)
    p.add_argument("--points", type=int, choices=(3, 5), default=3)
    p.add_argument("--max-new-tokens", type=int, default=96, help="greedy budget of the edge sweep (default 96)")
    p.add_argument("--extra-train", metavar="FILE", help="more training lists (the dev lists stay the same)")
    p.add_argument("--table", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(table([json.loads(line) for line in out.read_text().splitlines() if line.strip()]))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out.parent.mkdir(parents=True, exist_ok=True)
    row = run_row(args.name, args.overrides, args.base, out, args.gen_prompts, args.points, args.max_new_tokens,
                  args.extra_train)
    print(table([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
