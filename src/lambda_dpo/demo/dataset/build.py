"""Build the demo dataset: checkable prompts -> N sampled responses each -> judged ratings -> files.

`build_demo_dataset(out_dir, seed, ...)` writes into `out_dir`:

- ``train.jsonl`` / ``eval.jsonl``: native listwise records (`PreferenceList.to_json` plus extras)::

      {"id": "topic-0007",
       "prompt": [{"role": "user", "content": "Explain photosynthesis."}],
       "responses": [str, str, str, str],
       "ratings": {"instruction_following": [1..5 x N], "correctness": [...],
                   "conciseness": [...], "informativeness": [...]},
       "spec": PromptSpec.to_dict(),          # what the judges check
       "meta": [{"slot": 0, "system": "...", "temperature": 0.7, "new_tokens": 41,
                 "hit_max_new_tokens": false}, ...]}   # how each response was sampled

  The stored prompt is only the user message: the system prompt that steered each response's
  style is recorded in ``meta`` and never shown to a model trained on the data.
- ``DATASHEET.md``: how it was made, counts, rating histograms, correlations, limitations.
- ``build_info.json``: the settings and timing the datasheet reports (used by ``--rejudge``).

Responses come from the model itself, sampled per response slot with a different system prompt
(`SLOTS`) and a seeded temperature (then top-p 0.95), in left-padded batches of one slot sorted by
prompt length. The order of the N responses in a record is shuffled (seeded), so the
slot cannot be read from the position.

CLI: ``python -m lambda_dpo.demo.dataset.build --out-dir DIR [--seed 0] [--n-prompts 320]
[--n-eval 40] [--quick] [--rejudge]`` (wired as ``lambda-dpo build-data``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from .judges import ASPECTS, judge_all
from .prompts import KIND_SHARES, PromptSpec, generate_prompts, split_prompts

__all__ = ["SLOTS", "build_demo_dataset", "rejudge", "write_datasheet", "spearman", "main"]

SLOTS: tuple[tuple[str, str | None], ...] = (
    ("short", "Answer in one short sentence."),
    ("detailed", "Give a detailed, thorough answer."),
    ("default", None),  # the chat template's own default system prompt
    ("exact", "Be helpful and follow the instructions exactly."),
)
"""Response slots: (name, system prompt used to sample that response; None = the template default)."""

TEMPERATURES = (0.3, 0.7, 1.0)
DEFAULT_MAX_NEW_TOKENS = 96
DEFAULT_BATCH_SIZE = 32
EMPTY_RETRIES = 3
SPLIT_FILES = {"train": "train.jsonl", "eval": "eval.jsonl"}


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


def _messages(spec: PromptSpec, system: str | None) -> list[dict[str, str]]:
    user = {"role": "user", "content": spec.prompt}
    return [{"role": "system", "content": system}, user] if system is not None else [user]


def _eos_ids(tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


class _RowSampling:
    """Logits processor: each row's logits divided by that row's temperature, then nucleus (top-p).

    Lets one batch mix temperatures, so batches are grouped by system prompt only. Same order as
    transformers' own warpers (temperature, then top-p).
    """

    def __init__(self, temperatures, top_p: float = 1.0):
        import torch

        self.t = torch.tensor(list(temperatures), dtype=torch.float32)[:, None]
        self.top_p = top_p

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.t.to(scores.dtype)
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(scores, descending=True, dim=-1)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) > self.top_p  # keep the smallest set reaching top_p
            scores = scores.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return scores


def _generate_batch(model, tokenizer, prompts_ids: list[list[int]], temperatures: list[float], max_new_tokens: int,
                    seed: int, top_p: float) -> list[tuple[str, int, bool]]:
    """Sample one reply per prompt (left-padded batch): (text, new tokens, hit max_new_tokens)."""
    import torch
    from transformers import LogitsProcessorList

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(tokenizer)
    width = max(len(p) for p in prompts_ids)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts_ids])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts_ids])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=True, temperature=1.0,
                             top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                             logits_processor=LogitsProcessorList([_RowSampling(temperatures, top_p)]))
    results = []
    for row in out[:, width:].tolist():
        n_new = next((i + 1 for i, t in enumerate(row) if t in eos), None)
        hit_max = n_new is None
        n_new = len(row) if n_new is None else n_new
        text = tokenizer.decode(row[:n_new], skip_special_tokens=True).strip()
        results.append((text, n_new, hit_max))
    return results


def _sample_all(model, tokenizer, specs: Sequence[PromptSpec], n_responses: int, seed: int, max_new_tokens: int,
                batch_size: int, temperatures: Sequence[float], top_p: float, progress: bool):
    """{(prompt index, slot): (text, new tokens, hit_max, temperature)} for every prompt and slot.

    Batches hold one slot (one system prompt), prompts sorted by length; each row samples at its own
    seeded temperature.
    """
    from tqdm.auto import tqdm

    from ...tokenization import encode_prompt

    rng = random.Random(f"lambda-dpo-demo-temperatures:{seed}")
    temps = {(i, slot): rng.choice(list(temperatures)) for i in range(len(specs)) for slot in range(n_responses)}
    ids = {(i, slot): encode_prompt(tokenizer, _messages(specs[i], SLOTS[slot % len(SLOTS)][1]))
           for i in range(len(specs)) for slot in range(n_responses)}

    def batches(keys):
        by_slot: dict[int, list[tuple[int, int]]] = {}
        for k in keys:
            by_slot.setdefault(k[1], []).append(k)
        for slot in sorted(by_slot):
            ks = sorted(by_slot[slot], key=lambda k: (len(ids[k]), k))
            for j in range(0, len(ks), batch_size):
                yield ks[j:j + batch_size]

    out: dict[tuple[int, int], tuple[str, int, bool, float]] = {}
    # Not on a terminal (a background build writing to a log), a line a minute instead of none.
    bar = tqdm(total=len(specs) * n_responses, desc="sampling responses", unit="resp", disable=not progress,
               file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 60)
    for b, keys in enumerate(batches(sorted(ids))):
        res = _generate_batch(model, tokenizer, [ids[k] for k in keys], [temps[k] for k in keys], max_new_tokens,
                              seed=seed * 1_000_003 + b, top_p=top_p)
        for k, r in zip(keys, res):
            out[k] = (*r, temps[k])
        bar.update(len(keys))
    bar.close()
    # Empty replies cannot go into a list (make_list rejects them): sample those again.
    for attempt in range(1, EMPTY_RETRIES + 1):
        empty = sorted(k for k, v in out.items() if not v[0])
        if not empty:
            break
        for b, keys in enumerate(batches(empty)):
            res = _generate_batch(model, tokenizer, [ids[k] for k in keys], [temps[k] for k in keys],
                                  max_new_tokens, seed=seed * 1_000_003 + 100_000 * attempt + b, top_p=top_p)
            for k, r in zip(keys, res):
                out[k] = (*r, temps[k])
    return out


# ------------------------------------------------------------------------------------------------
# Records
# ------------------------------------------------------------------------------------------------


def _record(spec: PromptSpec, samples: list[tuple[int, tuple]], rng: random.Random) -> dict:
    samples = list(samples)
    rng.shuffle(samples)
    responses = [s[1][0] for s in samples]
    judged = [judge_all(spec, r) for r in responses]
    meta = [{"slot": slot, "slot_name": SLOTS[slot % len(SLOTS)][0], "system": SLOTS[slot % len(SLOTS)][1],
             "temperature": s[3], "new_tokens": s[1], "hit_max_new_tokens": s[2]} for slot, s in samples]
    return {
        "id": spec.id,
        "prompt": [{"role": "user", "content": spec.prompt}],
        "responses": responses,
        "ratings": {a: [j[a] for j in judged] for a in ASPECTS},
        "spec": spec.to_dict(),
        "meta": meta,
    }


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_demo_dataset(
    out_dir: str | Path,
    seed: int = 0,
    n_prompts: int = 320,
    n_eval: int = 40,
    n_responses: int = 4,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    model: str = "smollm2-135m-instruct",
    batch_size: int = DEFAULT_BATCH_SIZE,
    temperatures: Sequence[float] = TEMPERATURES,
    top_p: float = 0.95,
    progress: bool = True,
    command: str | None = None,
    threads: int | None = None,
    exclude: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Generate, judge and write the demo dataset into `out_dir`; returns the build info.

    Args:
        out_dir: created if missing; train.jsonl, eval.jsonl, DATASHEET.md, build_info.json are overwritten.
        seed: seeds prompt generation, the train/eval split, temperatures, sampling and response order.
        n_prompts, n_eval: total prompts and how many of them are held out (stratified by kind).
        n_responses: responses per prompt (slot k uses system prompt ``SLOTS[k % 4]``).
        max_new_tokens: sampling budget per response (a reply cut there is kept and marked in meta).
        model: model name or local checkpoint dir (`lambda_dpo.models.load_model`).
        batch_size: prompts per generation batch.
        temperatures: each (prompt, slot) samples at one of these, chosen with the seed.
        command: the command line recorded in the datasheet (default: the equivalent CLI call).
        threads: torch intra-op threads for sampling (default: torch's). On a shared, busy machine
            1 thread can be several times faster than oversubscribed cores.
        exclude: preference-list files (any format `load_lists` reads) whose prompts must not occur
            in this build: a generated prompt whose user message equals one of theirs is dropped
            before sampling (counted in the build info and the datasheet). Use it to build more
            training data that cannot leak into an existing held-out set.
    """
    import torch

    if n_responses < 2:
        raise ValueError("n_responses must be >= 2 (a list needs at least 2 responses)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _build(out, seed, n_prompts, n_eval, n_responses, max_new_tokens, model, batch_size, temperatures,
                      top_p, progress, command, [str(x) for x in exclude])
    finally:
        torch.set_num_threads(previous_threads)


def _excluded_prompts(files: Sequence[str]) -> set[str]:
    """The last user message of every list in `files` (the text a demo prompt is compared on)."""
    from ...data import load_lists

    texts: set[str] = set()
    for f in files:
        lists, _ = load_lists(f)
        for lst in lists:
            users = [m["content"] for m in lst.prompt if m["role"] == "user"]
            if users:
                texts.add(users[-1])
    return texts


def _build(out: Path, seed, n_prompts, n_eval, n_responses, max_new_tokens, model, batch_size, temperatures, top_p,
           progress, command, exclude: Sequence[str] = ()) -> dict[str, Any]:
    import torch
    import transformers

    from ...models import load_model, load_tokenizer, resolve_model_path

    start = time.perf_counter()
    specs = generate_prompts(seed, n_prompts)
    excluded: list[str] = []
    if exclude:
        seen = _excluded_prompts(exclude)
        excluded = [s.id for s in specs if s.prompt in seen]
        specs = [s for s in specs if s.prompt not in seen]
        if len(specs) < max(n_eval, 1):
            raise ValueError(f"--exclude left {len(specs)} of {n_prompts} prompts, fewer than n_eval={n_eval} "
                             "(or none at all): raise --n-prompts or change --seed")
    train, held = split_prompts(specs, n_eval, seed)
    ordered = train + held
    tokenizer = load_tokenizer(model)
    lm = load_model(model).eval()
    t0 = time.perf_counter()
    samples = _sample_all(lm, tokenizer, ordered, n_responses, seed, max_new_tokens, batch_size, temperatures,
                          top_p, progress)
    gen_seconds = time.perf_counter() - t0
    rng = random.Random(f"lambda-dpo-demo-order:{seed}")
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    dropped: list[str] = []
    for i, spec in enumerate(ordered):
        per_slot = [(slot, samples[i, slot]) for slot in range(n_responses)]
        if any(not s[0] for _, s in per_slot):
            dropped.append(spec.id)
            continue
        splits["train" if i < len(train) else "eval"].append(_record(spec, per_slot, rng))
    for name, records in splits.items():
        _write_jsonl(out / SPLIT_FILES[name], records)
    if command is None:
        command = (f"lambda-dpo build-data --out-dir {out} --seed {seed} --n-prompts {n_prompts} "
                   f"--n-eval {n_eval}" + "".join(f" --exclude {f}" for f in exclude))
    info = {
        "command": command,
        "seed": seed,
        "n_prompts": n_prompts,
        "n_eval": n_eval,
        "n_responses": n_responses,
        "model": model,
        "model_path": str(resolve_model_path(model)),
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "temperatures": list(temperatures),
        "top_p": top_p,
        "slots": [{"slot": k, "name": SLOTS[k % len(SLOTS)][0], "system": SLOTS[k % len(SLOTS)][1]}
                  for k in range(n_responses)],
        "dropped_prompts": dropped,
        "exclude": list(exclude),
        "excluded_prompts": excluded,
        "generation_seconds": round(gen_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    write_datasheet(out, info)
    return info


def rejudge(out_dir: str | Path) -> dict[str, int]:
    """Re-rate every stored response with the current judges, rewrite the files and the datasheet.

    Returns {split: number of ratings that changed}.
    """
    out = Path(out_dir)
    changed = {}
    for name, fname in SPLIT_FILES.items():
        records = _read_jsonl(out / fname)
        n = 0
        for r in records:
            spec = PromptSpec.from_dict(r["spec"])
            judged = [judge_all(spec, x) for x in r["responses"]]
            new = {a: [j[a] for j in judged] for a in ASPECTS}
            n += sum(x != y for a in ASPECTS for x, y in zip(new[a], r["ratings"].get(a, [None] * len(judged))))
            r["ratings"] = new
        _write_jsonl(out / fname, records)
        changed[name] = n
    info = json.loads((out / "build_info.json").read_text())
    write_datasheet(out, info)
    return changed


# ------------------------------------------------------------------------------------------------
# Statistics and the datasheet
# ------------------------------------------------------------------------------------------------


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan when either side is constant."""
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    rx, ry = _ranks(x), _ranks(y)
    n = len(x)
    if n < 2:
        return float("nan")
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else float("nan")


def _fmt_r(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:+.2f}"


def _stats(records: list[dict]) -> dict[str, Any]:
    ratings = {a: [v for r in records for v in r["ratings"][a]] for a in ASPECTS}
    hist = {a: [ratings[a].count(k) for k in range(1, 6)] for a in ASPECTS}
    pooled = {(a, b): spearman(ratings[a], ratings[b]) for a in ASPECTS for b in ASPECTS}
    within: dict[tuple[str, str], float] = {}
    for a in ASPECTS:
        for b in ASPECTS:
            vals = [spearman(r["ratings"][a], r["ratings"][b]) for r in records]
            vals = [v for v in vals if not math.isnan(v)]
            within[a, b] = sum(vals) / len(vals) if vals else float("nan")
    flat = {a: sum(len(set(r["ratings"][a])) == 1 for r in records) for a in ASPECTS}
    # lists whose top response under conciseness is not among the top under informativeness
    conflict = 0
    for r in records:
        c, i = r["ratings"]["conciseness"], r["ratings"]["informativeness"]
        top_c = {k for k, v in enumerate(c) if v == max(c)}
        top_i = {k for k, v in enumerate(i) if v == max(i)}
        conflict += not (top_c & top_i)
    slot_means: dict[str, dict[str, float]] = {}
    for a in ASPECTS:
        by_slot: dict[str, list[int]] = {}
        for r in records:
            for m, v in zip(r["meta"], r["ratings"][a]):
                by_slot.setdefault(m["slot_name"], []).append(v)
        slot_means[a] = {s: sum(v) / len(v) for s, v in by_slot.items()}
    words = [len(x.split()) for r in records for x in r["responses"]]
    return {
        "hist": hist,
        "mean": {a: sum(v) / len(v) if v else float("nan") for a, v in ratings.items()},
        "pooled": pooled,
        "within": within,
        "flat": flat,
        "conflict": conflict,
        "slot_means": slot_means,
        "hit_max": sum(m["hit_max_new_tokens"] for r in records for m in r["meta"]),
        "dup_lists": sum(len(set(r["responses"])) < len(r["responses"]) for r in records),
        "words_median": sorted(words)[len(words) // 2] if words else 0,
        "words_max": max(words) if words else 0,
    }


def _matrix(corr: dict[tuple[str, str], float]) -> list[str]:
    lines = ["| | " + " | ".join(ASPECTS) + " |", "|---" * (len(ASPECTS) + 1) + "|"]
    for a in ASPECTS:
        lines.append(f"| {a} | " + " | ".join(_fmt_r(corr[a, b]) for b in ASPECTS) + " |")
    return lines


def write_datasheet(out_dir: str | Path, info: dict[str, Any]) -> str:
    """Write DATASHEET.md for the files in `out_dir` (statistics computed from the files); returns it."""
    out = Path(out_dir)
    data = {name: _read_jsonl(out / fname) for name, fname in SPLIT_FILES.items()}
    allrec = data["train"] + data["eval"]
    st = {name: _stats(recs) for name, recs in data.items()}
    st_all = _stats(allrec)
    n_resp = info["n_responses"]
    L: list[str] = []
    L += ["# Demo dataset: checkable prompts, SmolLM2-135M-Instruct responses, judged on four aspects", ""]
    L += ["Listwise multi-aspect preference data for the lambda-DPO demo. Every prompt is generated by a "
          "program that knows what a good reply must contain; every response is sampled from "
          f"`{info['model']}` itself; every rating comes from a deterministic judge "
          "(`lambda_dpo.demo.dataset.judges`), so the data can be rebuilt and audited. No human or model judge "
          "rated anything.", ""]
    L += ["## Files", "",
          "- `train.jsonl`, `eval.jsonl`: native listwise records (`lambda_dpo.data.load_lists`): "
          "`prompt` (the user message only), `responses`, `ratings` {aspect: [1..5]}, plus `id`, `spec` "
          "(the `PromptSpec` the judges check) and `meta` (per response: slot, system prompt and temperature "
          "it was sampled with, new tokens, whether it hit `max_new_tokens`). Loaders ignore the extra keys.",
          "- `build_info.json`: the settings below, machine-readable.", ""]
    L += ["## How it was made", "",
          f"Command: `{info['command']}`", "",
          f"1. Prompts: `generate_prompts(seed={info['seed']}, n={info['n_prompts']})` "
          "(`lambda_dpo.demo.dataset.prompts`): "
          + ", ".join(f"{k} {v:.0%}" for k, v in KIND_SHARES.items())
          + ". qa = arithmetic (computed), unit conversions (computed), facts (capitals, chemical symbols, "
            "planet order, general facts, from the module's tables); open = requests about one of 42 topics, "
            "each with 5-6 key terms; instruction = a question, topic or 'list N things' request plus 1-2 "
            "verifiable constraints (word limits, exact bullet/numbered counts, required keywords, "
            "lowercase/uppercase, end with a question, JSON object with keys, one sentence, start word, "
            "no commas). Prompt texts are distinct.",
          f"2. Split: `split_prompts(n_eval={info['n_eval']}, seed={info['seed']})`, stratified by kind; "
          "eval prompts are never in train (texts differ; the same topic or fact can occur in both with "
          "different wording or constraints).",
          f"3. Responses: {n_resp} per prompt from `{info['model']}` (checkpoint `{info['model_path']}`; "
          "the embedded SmolLM2-135M-Instruct is a de-quantised Q4_1 GGUF, so it differs slightly from the "
          "hub weights). Each response slot uses its own system prompt; the stored prompt does NOT contain it:",
          ""]
    for s in info["slots"]:
        sys_txt = f'"{s["system"]}"' if s["system"] is not None else \
            "none given (the chat template's default: \"You are a helpful AI assistant named SmolLM, " \
            "trained by Hugging Face\")"
        L.append(f"   - slot {s['slot']} `{s['name']}`: {sys_txt}")
    L += ["",
          f"   Sampling: temperature drawn per (prompt, slot) from {info['temperatures']} (seeded), "
          f"top_p={info['top_p']}, no top-k, max_new_tokens={info['max_new_tokens']}, batches of up to "
          f"{info['batch_size']} left-padded prompts of one slot, sorted by prompt length, each row at its own "
          "temperature. Empty replies are sampled "
          f"again (up to {EMPTY_RETRIES} times); a prompt still holding an empty reply is dropped. The order of "
          "the responses in a record is shuffled (seeded).",
          "4. Ratings: `judge_all(spec, response)` for each response, aspects "
          + ", ".join(f"`{a}`" for a in ASPECTS) + " (rules below).",
          "",
          f"Environment: torch {info['torch']}, transformers {info['transformers']}, Python {info['python']}, "
          f"{info['machine']}, {info['threads']} torch thread(s). Generation took {info['generation_seconds']:.0f} s, "
          f"the whole build {info['total_seconds']:.0f} s (wall clock; the reference build ran on a shared 2-core "
          "CPU machine while other jobs were running). Sampling on CPU is seeded, but token-level "
          "reproduction needs the same torch build and thread count; the judges are exactly reproducible "
          "(re-judging the shipped responses gives the shipped ratings).", ""]
    L += ["## Judges (full rules in `lambda_dpo/demo/dataset/judges.py`)", "",
          "- `instruction_following`: fraction of the prompt's verifiable constraints met -> "
          "1 + floor(4f + 0.5); prompts without constraints use three implicit ones (gives an answer / "
          "stays on topic, finishes its last sentence, does not repeat a sentence).",
          "- `correctness`: known answer (numbers tolerant to formatting: 1,000 = 1000.0; prompt operands "
          "are neutral) given and no wrong one -> 5, given first then a wrong one -> 4, a wrong one first -> 3, "
          "no answer -> 2, only wrong ones -> 1; "
          "list requests: share of listed items that are real members of the category; topic requests: "
          "3 (neutral) unless a checkably wrong equation is stated (2).",
          "- `conciseness`: word count against a budget (the prompt's word limit, else 25 for questions, "
          "30 for lists, 50 for topics): <= budget 5, <= 1.5x 4, <= 2x 3, <= 3x 2, else 1; minus 1-2 for "
          "repeated 3-grams.",
          "- `informativeness`: distinct content words up to a cap (25 for questions and lists, 50 for "
          "topics) and, for topics, key-term coverage (0.6 coverage + 0.4 length).", ""]
    L += ["## Counts", ""]
    for name in SPLIT_FILES:
        recs = data[name]
        kinds = Counter(r["spec"]["kind"] for r in recs)
        cats = Counter(r["spec"]["category"] for r in recs)
        L.append(f"- {name}: {len(recs)} prompts, {sum(len(r['responses']) for r in recs)} responses "
                 f"(kinds: {', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; categories: "
                 f"{', '.join(f'{k} {v}' for k, v in sorted(cats.items()))})")
    L.append(f"- dropped prompts (an empty reply after retries): {len(info['dropped_prompts'])}"
             + (f" ({', '.join(info['dropped_prompts'])})" if info["dropped_prompts"] else ""))
    if info.get("exclude"):
        L.append(f"- prompts excluded before sampling because their text is in "
                 f"{', '.join(f'`{f}`' for f in info['exclude'])}: {len(info['excluded_prompts'])}")
    L.append(f"- responses that hit max_new_tokens (cut mid-reply): {st_all['hit_max']} of "
             f"{sum(len(r['responses']) for r in allrec)}")
    L.append(f"- lists with two identical responses: {st_all['dup_lists']}")
    L.append(f"- response length in whitespace words: median {st_all['words_median']}, max {st_all['words_max']}")
    L.append("")
    L += ["## Rating distributions", "", "Number of responses rated 1..5, per aspect.", ""]
    for name, s in [*st.items(), ("all", st_all)]:
        L += [f"{name}:", "", "| aspect | 1 | 2 | 3 | 4 | 5 | mean |", "|---|---|---|---|---|---|---|"]
        for a in ASPECTS:
            L.append(f"| {a} | " + " | ".join(str(c) for c in s["hist"][a]) + f" | {s['mean'][a]:.2f} |")
        L.append("")
    L += ["Lists in which an aspect gives all responses the same rating (no signal for that aspect there; "
          "its target is uniform), train + eval: "
          + ", ".join(f"{a} {st_all['flat'][a]}" for a in ASPECTS) + f" of {len(allrec)}.", ""]
    L += ["Mean rating by response slot (train + eval): the system prompts steer style, and the judges see it.", "",
          "| aspect | " + " | ".join(s["name"] for s in info["slots"]) + " |",
          "|---" * (len(info["slots"]) + 1) + "|"]
    for a in ASPECTS:
        L.append(f"| {a} | " + " | ".join(f"{st_all['slot_means'][a].get(s['name'], float('nan')):.2f}"
                                          for s in info["slots"]) + " |")
    L.append("")
    L += ["## Correlations between aspects", "",
          "Spearman rank correlation over all responses (train + eval, pooled):", ""]
    L += _matrix(st_all["pooled"])
    L += ["", "Mean within-list Spearman correlation (over lists where both aspects vary; this is what a "
          "listwise loss sees):", ""]
    L += _matrix(st_all["within"])
    cc = st_all["pooled"]["conciseness", "informativeness"]
    L += ["",
          f"Conciseness and informativeness are in real conflict: pooled Spearman {_fmt_r(cc)}, within-list "
          f"{_fmt_r(st_all['within']['conciseness', 'informativeness'])}; in {st_all['conflict']} of "
          f"{len(allrec)} lists no response is top-rated on both. A lambda that weights one of them "
          "prefers a different response than a lambda that weights the other.", ""]
    L += ["## Known limitations", "",
          "- The judges are surface checks, not understanding: a fluent but false explanation that uses the "
          "key terms scores well on informativeness and neutral (3) on correctness; topic requests have no "
          "checkable correctness signal beyond wrong equations, so correctness is flat (3) for most of them.",
          "- Number/name matching can be fooled: an explanation that mentions a wrong candidate as a "
          "contrast ('not Lyon but Paris') is scored as contradicting itself; a correct answer in words "
          "('one hundred') is not recognised beyond simple number words.",
          "- Conciseness and informativeness are built to oppose each other (length helps one and hurts the "
          "other); their conflict is partly by construction, not a discovered property of the responses.",
          "- Responses come from a 135M-parameter model: many answers are wrong, repetitive or cut off at "
          f"max_new_tokens={info['max_new_tokens']}; the data is for demonstrating steering, not for teaching "
          "facts. Prompts are short, English only, templated, and the fact tables are small.",
          "- Ratings are integers 1..5 with many ties inside a list; a softmax target over them is soft.",
          "- Only the final user message is stored; the style system prompts (meta) explain much of the "
          "variation between responses, which is the point: a model trained on the data has to learn "
          "the style from lambda, not from a leaked instruction.",
          "- Sampling is seeded but CPU kernels and thread counts can change sampled tokens across machines.",
          ""]
    text = "\n".join(L)
    (out / "DATASHEET.md").write_text(text, encoding="utf-8")
    return text


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

QUICK = dict(n_prompts=8, n_eval=2, max_new_tokens=16, batch_size=8)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `build-data` options (shared by `main` and the `lambda-dpo` CLI)."""
    parser.add_argument("--out-dir", default="demo_data", help="where train.jsonl, eval.jsonl and DATASHEET.md go")
    parser.add_argument("--seed", type=int, default=0, help="seeds prompts, split, temperatures, sampling, order")
    parser.add_argument("--n-prompts", type=int, default=None, help="total prompts (default 320; quick: 8)")
    parser.add_argument("--n-eval", type=int, default=None, help="held-out prompts (default 40; quick: 2)")
    parser.add_argument("--n-responses", type=int, default=4, help="responses per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"sampling budget per response (default {DEFAULT_MAX_NEW_TOKENS}; quick: 16)")
    parser.add_argument("--batch-size", type=int, default=None, help=f"default {DEFAULT_BATCH_SIZE}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model name or local checkpoint dir")
    parser.add_argument("--quick", action="store_true", help="tiny build (8 prompts, 16 new tokens) for tests")
    parser.add_argument("--rejudge", action="store_true",
                        help="only re-rate the responses already in --out-dir and rewrite the datasheet")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE",
                        help="a preference-list file whose prompts this build must not contain (repeatable): "
                             "generated prompts with the same user message are dropped before sampling, "
                             "e.g. to build more training data next to an existing eval.jsonl")
    return parser


def run_from_args(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict:
    if args.rejudge:
        changed = rejudge(args.out_dir)
        print(f"re-judged {args.out_dir}: changed ratings {changed}")
        return changed
    defaults = dict(n_prompts=320, n_eval=40, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, batch_size=DEFAULT_BATCH_SIZE)
    if args.quick:
        defaults.update(QUICK)
    opts = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in defaults.items()}
    command = "lambda-dpo build-data " + " ".join(argv) if argv is not None else None
    info = build_demo_dataset(args.out_dir, seed=args.seed, n_responses=args.n_responses, model=args.model,
                              progress=not args.no_progress, command=command, threads=args.threads,
                              exclude=args.exclude, **opts)
    kept = opts["n_prompts"] - len(info["excluded_prompts"]) - len(info["dropped_prompts"])
    excluded = f" ({len(info['excluded_prompts'])} prompts excluded as already in --exclude files)" \
        if args.exclude else ""
    print(f"wrote {args.out_dir}: {kept} lists in {info['total_seconds']:.0f} s{excluded} (see DATASHEET.md)")
    return info


def main(argv: Sequence[str] | None = None) -> int:
    """`lambda-dpo build-data` / `python -m lambda_dpo.demo.dataset.build`."""
    parser = add_arguments(argparse.ArgumentParser(prog="lambda-dpo build-data", description=__doc__.split("\n")[0]))
    argv = list(sys.argv[1:] if argv is None else argv)
    run_from_args(parser.parse_args(argv), argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
