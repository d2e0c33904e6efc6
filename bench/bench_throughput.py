"""Throughput and peak memory of one listwise training step: lambda-dpo vs the naive forward vs TRL.

Run from the repository root (defaults: the three (P, R) configs, N = 4, 2 torch threads):

    python bench/bench_throughput.py
    python bench/bench_throughput.py --configs 256x128 --methods ours,naive --steps 4

Every method trains SmolLM2-135M-Instruct (fp32) with the same LoRA (r=16, alpha=32, dropout 0,
all linear layers) with AdamW (lr 1e-5, no weight decay), one list per optimizer step, on the same
synthetic lists: exactly P random prompt tokens and N responses of exactly R random tokens,
drawn with a fixed seed. Methods:

  ours        lambda-dpo's default shared-prompt layout (prompt_cache): the prompt runs once, its
              key/value cache (with gradients) serves the N response rows; P + N*R tokens;
              reference log-probs computed once before training (reported separately: paid once
              per dataset).
  ours_packed the same with the packed layout (one row per list under a dense block mask), the
              layout lambda-dpo uses under gradient checkpointing.
  naive       one row per response, N*(P+R) tokens, and a reference forward of the same N rows
              every step with the adapter disabled (the authors' approach). Same loss, same
              response-only fp32 log-softmax as ours, so the difference is the layout + the cache.
  trl_all     TRL DPOTrainer on the list expanded to all C(N,2) pairs (chosen = better rank):
              2*C(N,2)*(P+R) policy tokens per list + the same again for its per-step reference
              forward (TRL's default with PEFT: adapter disabled, no precompute).
  trl_bw      TRL DPOTrainer on the best-vs-worst pair only: 2*(P+R) tokens + reference.

Each (method, config) runs in a fresh subprocess (this script with --worker), so its peak RSS is
its own. Timings are medians over the timed steps, after warm-up steps that are not counted.
Results: bench/results/throughput.json and bench/results/throughput.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # works without `pip install -e .` / PYTHONPATH=src

import torch  # noqa: E402

RESULTS_DIR = HERE / "results"
DEFAULT_CONFIGS = ((64, 64), (256, 128), (512, 128))
METHODS = ("ours", "ours_packed", "naive", "trl_all", "trl_bw")
LISTWISE_LAYOUTS = {"ours": "prompt_cache", "ours_packed": "packed", "naive": "naive"}
LABELS = {
    "ours": "lambda-dpo (shared prompt, cached ref)",
    "ours_packed": "lambda-dpo, packed layout",
    "naive": "naive (per-response rows, ref every step)",
    "trl_all": "TRL DPOTrainer, all pairs",
    "trl_bw": "TRL DPOTrainer, best-vs-worst",
}
BETA = 0.1
LR = 1e-5
SEED = 0


# --------------------------------------------------------------------------- data, model, costs


def make_lists(prompt_len: int, response_len: int, n: int, n_lists: int, vocab_size: int, seed: int = SEED,
               low: int = 100) -> list[tuple[list[int], list[list[int]]]]:
    """`n_lists` synthetic lists: (P prompt ids, N responses of R ids), uniform in [low, vocab_size - 1).

    Ids below `low` are skipped so no special token (bos/eos/pad, chat markers) appears. Response i
    is ranked i-th (0 = best) by the targets built from these lists.
    """
    g = torch.Generator().manual_seed(seed)
    high = vocab_size - 1
    out = []
    for _ in range(n_lists):
        prompt = torch.randint(low, high, (prompt_len,), generator=g).tolist()
        responses = [torch.randint(low, high, (response_len,), generator=g).tolist() for _ in range(n)]
        out.append((prompt, responses))
    return out


def rank_target(n: int) -> torch.Tensor:
    """[1, n] target distribution p_i proportional to n - i (response 0 best): what ratings give."""
    w = torch.arange(n, 0, -1, dtype=torch.float32)
    return (w / w.sum())[None]


def lora_config(r: int = 16):
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear", bias="none",
                      task_type="CAUSAL_LM")


def add_lora(model, r: int = 16):
    from peft import get_peft_model

    torch.manual_seed(SEED)  # same LoRA init for every method
    return get_peft_model(model, lora_config(r))


def pairs_of(n: int, which: str) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs of one list whose response i is ranked i-th."""
    if which == "all":
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    if which == "bw":
        return [(0, n - 1)]
    raise ValueError(which)


def token_counts(method: str, p: int, r: int, n: int) -> dict:
    """Tokens one list costs per training step: through forward+backward, and forward-only (reference)."""
    if method in ("ours", "ours_packed"):
        return {"policy_tokens": p + n * r, "reference_tokens": 0, "precompute_tokens": p + n * r, "rows": 1}
    if method == "naive":
        return {"policy_tokens": n * (p + r), "reference_tokens": n * (p + r), "precompute_tokens": 0, "rows": n}
    pairs = len(pairs_of(n, "all" if method == "trl_all" else "bw"))
    return {"policy_tokens": 2 * pairs * (p + r), "reference_tokens": 2 * pairs * (p + r), "precompute_tokens": 0,
            "rows": 2 * pairs}


def token_cost(method: str, p: int, r: int, n: int, k: float) -> float:
    """Per-step cost in forward-token units: k * (forward+backward tokens) + 1 * (reference tokens)."""
    c = token_counts(method, p, r, n)
    return k * c["policy_tokens"] + c["reference_tokens"]


def predicted_speedup(method: str, p: int, r: int, n: int, k: float) -> float:
    """How much faster ours should be than `method` if time followed token counts."""
    return token_cost(method, p, r, n, k) / token_cost("ours", p, r, n, k)


# SmolLM2-135M: 30 layers, hidden 576, 9 query / 3 key-value heads of 64, MLP 1536, vocabulary 49152.
SMOLLM2_DIMS = {"layers": 30, "hidden": 576, "kv": 192, "mlp": 1536, "vocab": 49152}


def flop_model(method: str, p: int, r: int, n: int, dims: dict = SMOLLM2_DIMS) -> float:
    """Multiply-adds of one training step on one list: a refinement of the token counts.

    Three parts, each with its own backward factor (LoRA: frozen weights get no weight gradient):
      body   every token through the decoder's linear layers; backward = 1 forward (input grads);
      head   the 49k-word output layer on response tokens only (N*R in every method), x2: ours and
             naive form the frozen head's input gradient in forward (logits, then softmax @ W),
             TRL runs the head forward and its input-gradient backward;
      attn   query-key pairs x 2 (scores and weighted values) x hidden; backward ~3 forwards (flash
             kernel recomputes the scores). Ours (prompt_cache): P^2 / 2 causal prompt pairs, then
             each response row's R queries over P cached keys and its own R/2 (causal). The packed
             row pays (P+N*R)^2 pairs: a dense block mask is not skipped by the kernel. Plain rows
             are causal: (P+R)^2 / 2 each.
    Reference forwards (naive, TRL) cost 1x of each part.
    """
    d, layers = dims["hidden"], dims["layers"]
    body_tok = layers * (2 * d * d + 2 * d * dims["kv"] + 3 * d * dims["mlp"])
    head_tok = d * dims["vocab"]
    pair = layers * 2 * d
    if method in ("ours", "ours_packed"):
        tokens, head_tokens, head_x = p + n * r, n * r, 2
        pairs = (p + n * r) ** 2 if method == "ours_packed" else p * p / 2 + n * r * (p + r / 2)
        return 2 * tokens * body_tok + head_x * head_tokens * head_tok + 4 * pairs * pair
    rows = {"naive": n, "trl_all": 2 * len(pairs_of(n, "all")), "trl_bw": 2}[method]
    head_x = 2
    body = rows * (p + r) * body_tok
    head = rows * r * head_tok
    attn = rows * (p + r) ** 2 / 2 * pair
    return (2 * body + head_x * head + 4 * attn) + (body + head + attn)


def predicted_speedup_flops(method: str, p: int, r: int, n: int) -> float:
    return flop_model(method, p, r, n) / flop_model("ours", p, r, n)


# --------------------------------------------------------------------------- memory helpers


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """VmHWM (peak RSS since the last reset), else ru_maxrss (peak over the process lifetime)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mib()


def ru_maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- listwise steps (ours, naive)


def touch_weights(model) -> None:
    """Read every parameter once. transformers maps safetensors weights from the file, so they only
    count in RSS once touched; touching them here makes "RSS after loading" include the weights."""
    with torch.no_grad():
        for param in model.parameters():
            param.sum()


def _reference_context(model):
    if not hasattr(model, "disable_adapter"):
        raise TypeError("the benchmark expects a PEFT (LoRA) model: its reference is the adapter disabled")
    return model.disable_adapter()


def precompute_reference(model, lists, chunk_size: int = 1024, layout: str = "prompt_cache"
                         ) -> tuple[list[torch.Tensor], float]:
    """Reference log-probs of every list with lambda_dpo.reference.compute_reference_logps.

    Returns (per-list [N] tensors, seconds per list). This is what training reads from the cache.
    """
    from lambda_dpo.data.schema import PreferenceList
    from lambda_dpo.reference import compute_reference_logps
    from lambda_dpo.tokenization import TokenizedList

    tls = []
    for prompt, responses in lists:
        src = PreferenceList(prompt=({"role": "user", "content": "synthetic"},),
                             responses=tuple(f"r{i}" for i in range(len(responses))), ratings={})
        tls.append(TokenizedList(source=src, prompt=src.prompt, prompt_ids=tuple(prompt),
                                 response_ids=tuple(tuple(r) for r in responses)))
    start = time.perf_counter()
    refs = compute_reference_logps(model, tls, batch_size=1, layout=layout, chunk_size=chunk_size,
                                   desc="bench reference")
    return refs, (time.perf_counter() - start) / max(len(lists), 1)


def time_listwise_steps(model, lists, method: str, warmup: int = 1, steps: int = 3, *, min_steps: int = 1,
                        max_timed_seconds: float = float("inf"), chunk_size: int = 1024, beta: float = BETA,
                        lr: float = LR, log=None) -> dict:
    """Time full training steps (forward + backward + AdamW step) of `method` (a LISTWISE_LAYOUTS key).

    One list per step; list i is used at step i (cycling). "ours" / "ours_packed": prompt_cache /
    packed layout, reference log-probs precomputed before timing. "naive": one row per response and a reference forward
    (adapter disabled, no grad) inside every step. Timing stops early once `max_timed_seconds`
    of timed steps have run and at least `min_steps` were timed.

    Returns {"step_s": [...], "cpu_s": [...], "precompute_s_per_list": float | None, "loss": float}.
    """
    from lambda_dpo.losses import lambda_dpo_loss, sequence_scores
    from lambda_dpo.scoring import build_batch, score_batch

    if method not in LISTWISE_LAYOUTS:
        raise ValueError(f"method must be one of {sorted(LISTWISE_LAYOUTS)}, got {method!r}")
    layout = LISTWISE_LAYOUTS[method]
    cached_ref = layout != "naive"
    log = log or (lambda msg: None)
    n = len(lists[0][1])
    target, mask = rank_target(n), torch.ones(1, n, dtype=torch.bool)
    batches = [build_batch([p], [rs], layout=layout) for p, rs in lists]
    precompute = None
    if cached_ref:
        refs, precompute = precompute_reference(model, lists, chunk_size, layout)
        refs = [r[None] for r in refs]
        log(f"reference precompute {precompute:.2f} s/list")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    step_s, cpu_s, loss_value = [], [], float("nan")
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        if cached_ref:
            ref = refs[i % len(refs)]
        else:
            with torch.no_grad(), _reference_context(model):
                ref, _ = score_batch(model, batch, chunk_size)
        logps, n_tok = score_batch(model, batch, chunk_size)
        scores = sequence_scores(logps, ref, n_tok, "sum")
        loss = lambda_dpo_loss(scores, target, mask, beta).mean()
        loss.backward()
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


# --------------------------------------------------------------------------- TRL DPOTrainer


def trl_pair_rows(lists, which: str) -> dict[str, list[list[int]]]:
    """The lists expanded to (prompt, chosen, rejected) token-id rows, pairs of a list contiguous."""
    rows = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for prompt, responses in lists:
        for c, r in pairs_of(len(responses), which):
            rows["prompt_ids"].append(list(prompt))
            rows["chosen_ids"].append(list(responses[c]))
            rows["rejected_ids"].append(list(responses[r]))
    return rows


def time_trl_steps(base_model, tokenizer, lists, which: str, warmup: int = 1, steps: int = 3, *, min_steps: int = 1,
                   max_timed_seconds: float = float("inf"), pairs_per_micro_batch: int = 1,
                   gradient_checkpointing: bool = False, lora_r: int = 16, beta: float = BETA, lr: float = LR,
                   log=None, after_init=None) -> dict:
    """Time TRL DPOTrainer optimizer steps on the lists expanded to pairs ("all" or "bw").

    One optimizer step = the pairs of one list: per_device_train_batch_size = pairs_per_micro_batch
    and gradient_accumulation_steps = pairs per list / pairs_per_micro_batch. TRL tokenises text
    itself, so the trainer is built on a one-row text placeholder and its train_dataset then
    replaced by the exact token ids (prompt_ids / chosen_ids / rejected_ids, the columns TRL's
    collator reads), so TRL sees the very tokens the other methods see. Times are taken from
    on_step_begin to on_step_end (batches are prefetched before on_step_begin).
    """
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    log = log or (lambda msg: None)
    n = len(lists[0][1])
    p_len, r_len = len(lists[0][0]), len(lists[0][1][0])
    pairs_per_list = len(pairs_of(n, which))
    if pairs_per_list % pairs_per_micro_batch:
        pairs_per_micro_batch = 1
    total = warmup + steps
    rows = trl_pair_rows([lists[i % len(lists)] for i in range(total)], which)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.t0 = self.c0 = None
            self.step_s, self.cpu_s = [], []

        def on_step_begin(self, args, state, control, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            dt, dc = time.perf_counter() - self.t0, time.process_time() - self.c0
            timed = state.global_step > warmup
            if timed:
                self.step_s.append(dt), self.cpu_s.append(dc)
            log(f"{'step' if timed else 'warm-up'} {state.global_step}/{total}: {dt:.2f} s (cpu {dc:.2f} s)")
            if timed and len(self.step_s) >= min_steps and sum(self.step_s) >= max_timed_seconds:
                if len(self.step_s) < steps:
                    log(f"time budget {max_timed_seconds:.0f} s reached after {len(self.step_s)} timed steps")
                control.should_training_stop = True
            return control

    shapes: set[tuple[int, ...]] = set()

    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out_dir:
        config = DPOConfig(
            output_dir=out_dir, per_device_train_batch_size=pairs_per_micro_batch,
            gradient_accumulation_steps=pairs_per_list // pairs_per_micro_batch, max_steps=total,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
            beta=beta, max_length=p_len + r_len, bf16=False, fp16=False, use_cpu=True,
            gradient_checkpointing=gradient_checkpointing, logging_steps=10**6, save_strategy="no",
            eval_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=SEED,
            precompute_ref_log_probs=False,
        )
        placeholder = Dataset.from_dict({"prompt": ["a"], "chosen": [" b"], "rejected": [" c"]})
        torch.manual_seed(SEED)
        trainer = DPOTrainer(model=base_model, args=config, train_dataset=placeholder, processing_class=tokenizer,
                             peft_config=lora_config(lora_r))
        trainer.train_dataset = Dataset.from_dict(rows)
        collate = trainer.data_collator

        def recording_collator(examples):
            out = collate(examples)
            shapes.add(tuple(out["input_ids"].shape))
            return out

        trainer.data_collator = recording_collator
        timer = StepTimer()
        trainer.add_callback(timer)
        if after_init is not None:
            after_init()
        trainer.train()
    expected = (2 * pairs_per_micro_batch, p_len + r_len)
    if shapes != {expected}:
        raise RuntimeError(f"TRL batches had shapes {sorted(shapes)}, expected {expected}: truncation or padding")
    return {"step_s": timer.step_s, "cpu_s": timer.cpu_s, "precompute_s_per_list": None,
            "pairs_per_list": pairs_per_list, "pairs_per_micro_batch": pairs_per_micro_batch,
            "gradient_accumulation_steps": pairs_per_list // pairs_per_micro_batch,
            "gradient_checkpointing": gradient_checkpointing, "batch_shape": list(expected)}


# --------------------------------------------------------------------------- worker


def worker(args) -> dict:
    """One method on one config in this (fresh) process; returns the result record."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    from lambda_dpo.models import load_model, load_tokenizer

    p, r, n, method = args.prompt_len, args.response_len, args.n, args.worker

    def log(msg):
        print(f"    [{method} {p}/{r} N={n}] {msg}", file=sys.stderr, flush=True)

    load_start = time.perf_counter()
    model = load_model(args.model)
    touch_weights(model)
    vocab = model.config.vocab_size
    lists = make_lists(p, r, n, args.warmup + args.steps, vocab)
    record = {"method": method, "label": LABELS[method], "prompt_len": p, "response_len": r, "n": n,
              "threads": torch.get_num_threads(), "warmup": args.warmup, "steps_requested": args.steps,
              **token_counts(method, p, r, n)}
    mem = {}

    def mark_loaded():
        mem["rss_loaded_mib"] = current_rss_mib()
        mem["load_peak_mib"] = ru_maxrss_mib()
        mem["peak_reset"] = reset_peak_rss()
        log(f"loaded in {time.perf_counter() - load_start:.1f} s, RSS {mem['rss_loaded_mib']:.0f} MiB")

    common = dict(warmup=args.warmup, steps=args.steps, min_steps=args.min_steps,
                  max_timed_seconds=args.max_timed_seconds, log=log)
    if method in LISTWISE_LAYOUTS:
        model = add_lora(model, args.lora_r)
        mark_loaded()
        result = time_listwise_steps(model, lists, method, chunk_size=args.chunk_size, **common)
    else:
        tokenizer = load_tokenizer(args.model)
        result = time_trl_steps(model, tokenizer, lists, "all" if method == "trl_all" else "bw",
                                pairs_per_micro_batch=args.trl_pairs_per_micro_batch,
                                gradient_checkpointing=args.trl_gradient_checkpointing, lora_r=args.lora_r,
                                after_init=mark_loaded, **common)
    peak = peak_rss_mib() if mem.get("peak_reset") else ru_maxrss_mib()
    record.update(result)
    record.update(mem)
    record["peak_rss_mib"] = peak
    record["peak_increment_mib"] = peak - mem["rss_loaded_mib"]
    record["ru_maxrss_mib"] = ru_maxrss_mib()
    record["median_step_s"] = statistics.median(result["step_s"])
    record["median_cpu_s"] = statistics.median(result["cpu_s"])
    record["min_step_s"] = min(result["step_s"])
    record["lists_per_s"] = 1.0 / record["median_step_s"]
    return record


def run_worker(method: str, p: int, r: int, n: int, args, timeout: float = 1800.0) -> dict:
    """Run `method` on (p, r, n) in a fresh subprocess of this script; a failure becomes an error record."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--prompt-len", str(p),
           "--response-len", str(r), "--n", str(n), "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--min-steps", str(args.min_steps),
           "--max-timed-seconds", str(args.max_timed_seconds), "--model", args.model, "--lora-r", str(args.lora_r),
           "--chunk-size", str(args.chunk_size), "--trl-pairs-per-micro-batch", str(args.trl_pairs_per_micro_batch)]
    if args.trl_gradient_checkpointing:
        cmd.append("--trl-gradient-checkpointing")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    base = {"method": method, "label": LABELS[method], "prompt_len": p, "response_len": r, "n": n,
            **token_counts(method, p, r, n)}
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        why = f"exit code {proc.returncode}"
        if proc.returncode in (-9, 137):
            why += " (killed: out of memory?)"
        err_lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
        if err_lines:
            why += ": " + err_lines[-1][6:]
        return {**base, "error": why, "worker_wall_s": wall}
    record = json.loads(lines[-1][7:])
    record["worker_wall_s"] = wall
    record["loadavg_before"] = load_before
    record["loadavg_after"] = os.getloadavg()
    return record


# --------------------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs visible)" if names else platform.processor()
    except OSError:
        return platform.processor() or "unknown"


def environment(args, argv) -> dict:
    import peft
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    return {
        "command": "python bench/bench_throughput.py" + ("".join(" " + shlex.quote(a) for a in argv)),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(), "torch_threads": args.threads, "os_cpus": os.cpu_count(),
        "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "trl": trl_version, "python": platform.python_version(), "model": args.model, "precision": "float32",
        "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0, "target_modules": "all-linear"},
        "optimizer": {"name": "AdamW", "lr": LR, "weight_decay": 0.0}, "beta": BETA, "seed": SEED,
        "omp_wait_policy": args.omp_wait_policy or None,
        "note": ("Measured on a shared 2-core machine: other jobs (dataset generation, tests) may have run at the "
                 "same time, so absolute figures are noisy; the ratios, measured side by side in one run, are the "
                 "robust part. loadavg_before/after per worker show the contention."),
    }


def fmt(x, spec=".2f", missing="-"):
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summarise(records: list[dict], k_values=(3.0, 2.0)) -> list[dict]:
    """One row per (config, method) with ratios: measured speed-up of ours and the token-count prediction."""
    rows = []
    by_cfg: dict[tuple, dict[str, dict]] = {}
    for rec in records:
        by_cfg.setdefault((rec["prompt_len"], rec["response_len"], rec["n"]), {})[rec["method"]] = rec
    for (p, r, n), recs in by_cfg.items():
        ours = recs.get("ours")
        ours_t = ours.get("median_step_s") if ours else None
        for method in METHODS:
            rec = recs.get(method)
            if rec is None:
                continue
            t = rec.get("median_step_s")
            row = {"prompt_len": p, "response_len": r, "n": n, "method": method, "label": LABELS[method],
                   "policy_tokens": rec["policy_tokens"], "reference_tokens": rec["reference_tokens"],
                   "s_per_list": t, "lists_per_s": (1 / t) if t else None, "cpu_s_per_list": rec.get("median_cpu_s"),
                   "min_s_per_list": rec.get("min_step_s"),
                   "steps_timed": len(rec.get("step_s", [])), "peak_rss_mib": rec.get("peak_rss_mib"),
                   "peak_increment_mib": rec.get("peak_increment_mib"), "rss_loaded_mib": rec.get("rss_loaded_mib"),
                   "precompute_s_per_list": rec.get("precompute_s_per_list"), "error": rec.get("error")}
            row["speedup_of_ours"] = (t / ours_t) if (t and ours_t) else None
            row["cpu_speedup_of_ours"] = (rec.get("median_cpu_s") / ours["median_cpu_s"]
                                          if (rec.get("median_cpu_s") and ours and ours.get("median_cpu_s")) else None)
            for k in k_values:
                row[f"predicted_k{k:g}"] = predicted_speedup(method, p, r, n, k)
            row["predicted_flops"] = predicted_speedup_flops(method, p, r, n)
            rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    head = ("| P/R | method | tokens/list: fwd+bwd + ref fwd | s/list | lists/s | peak RSS MiB (+ over loaded) "
            "| ours speed-up, measured (CPU-time) | predicted k=3 | predicted k=2 | predicted, FLOP model |")
    lines = [head, "|" + "|".join(["---"] * 10) + "|"]
    for row in rows:
        cfg = f"{row['prompt_len']}/{row['response_len']}"
        tokens = f"{row['policy_tokens']} + {row['reference_tokens']}"
        if row["method"] in ("ours", "ours_packed"):
            tokens += f" (+ {row['policy_tokens']} once, precompute)"
        if row["error"]:
            lines.append(f"| {cfg} | {row['label']} | {tokens} | failed: {row['error']} | | | | "
                         f"{fmt(row['predicted_k3'])}x | {fmt(row['predicted_k2'])}x | {fmt(row['predicted_flops'])}x |")
            continue
        extra = ""
        if row["method"] in ("ours", "ours_packed") and row["precompute_s_per_list"] is not None:
            extra = f" (+{row['precompute_s_per_list']:.2f} precompute)"
        measured = "1 (baseline)" if row["method"] == "ours" else (
            f"**{fmt(row['speedup_of_ours'])}x** ({fmt(row['cpu_speedup_of_ours'])}x)")
        pk3 = "1" if row["method"] == "ours" else f"{fmt(row['predicted_k3'])}x"
        pk2 = "1" if row["method"] == "ours" else f"{fmt(row['predicted_k2'])}x"
        pfl = "1" if row["method"] == "ours" else f"{fmt(row['predicted_flops'])}x"
        lines.append(f"| {cfg} | {row['label']} | {tokens} | {fmt(row['s_per_list'])}{extra} | "
                     f"{fmt(row['lists_per_s'], '.3f')} | {fmt(row['peak_rss_mib'], '.0f')} "
                     f"(+{fmt(row['peak_increment_mib'], '.0f')}) | {measured} | {pk3} | {pk2} | {pfl} |")
    return "\n".join(lines)


def table_plain(rows: list[dict]) -> str:
    cols = ["P/R", "method", "fwd+bwd tok", "ref tok", "s/list", "lists/s", "peak MiB", "+MiB", "ours x",
            "ours x cpu", "pred k=3", "pred k=2", "pred FLOPs"]
    data = []
    for row in rows:
        label = {"ours": "lambda-dpo", "ours_packed": "ours, packed", "naive": "naive", "trl_all": "TRL all pairs",
                 "trl_bw": "TRL best-worst"}
        s = fmt(row["s_per_list"]) if not row["error"] else "FAILED"
        data.append([f"{row['prompt_len']}/{row['response_len']}", label[row["method"]], str(row["policy_tokens"]),
                     str(row["reference_tokens"]), s, fmt(row["lists_per_s"], ".3f"),
                     fmt(row["peak_rss_mib"], ".0f"), fmt(row["peak_increment_mib"], ".0f"),
                     fmt(row["speedup_of_ours"]), fmt(row["cpu_speedup_of_ours"]),
                     fmt(row["predicted_k3"]), fmt(row["predicted_k2"]), fmt(row["predicted_flops"])])
    widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
    out = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(d, widths)) for d in data]
    errors = [f"  {r['prompt_len']}/{r['response_len']} {r['label']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(out + (["failures:"] + errors if errors else []))


def targets(rows: list[dict]) -> list[str]:
    out = []
    naive = [r for r in rows if r["method"] == "naive" and (r["prompt_len"], r["response_len"]) == (256, 128)]
    if naive and naive[0]["speedup_of_ours"]:
        s = naive[0]["speedup_of_ours"]
        out.append(f"target >= 2x the naive forward at 256/128: {s:.2f}x -> {'MET' if s >= 2 else 'NOT MET'}")
    trl = [r for r in rows if r["method"] == "trl_all"]
    if trl:
        ok = [r for r in trl if r["speedup_of_ours"]]
        if ok:
            worst = min(r["speedup_of_ours"] for r in ok)
            met = worst > 1 and len(ok) == len(trl)
            out.append(f"target more lists/s than TRL all pairs on every config: min {worst:.2f}x over "
                       f"{len(ok)}/{len(trl)} configs -> {'MET' if met else 'NOT MET'}")
    return out


EXPLANATION = """\
How to read the ratios. "ours speed-up" = (s/list of the method) / (s/list of lambda-dpo), both
medians of the timed steps; the CPU-time ratio in brackets uses process CPU time instead of wall
time and is less sensitive to other jobs on the machine. The predicted ratios follow the tokens
each method pushes through the model per list, P + N*R for ours against N*(P+R) for the naive
forward and 2*C(N,2)*(P+R) (all pairs) or 2*(P+R) (best-vs-worst) for TRL, with a forward+backward
token costing k forward tokens and the per-step reference forward 1: cost = k*policy + reference.
k = 3 is the full fine-tuning rule of thumb (backward = 2 forwards: activation and weight grads);
with LoRA the frozen weights get no weight gradient, so k is nearer 2. Ours has no reference term
(precomputed once per dataset: its cost per list is shown and is amortised over epochs).
What token counts leave out, and the "FLOP model" column adds (see flop_model()): (1) only
response tokens go through the 49k-word output layer, N*R in every method (two vocabulary-sized
products per token with the frozen LoRA head), so prompt tokens are cheaper than response
tokens; (2) attention: ours covers P^2/2 + N*R*(P+R/2) query-key pairs (prompt causally, then
each response over the cached prompt and itself), the packed layout (P+N*R)^2 (a dense block
mask the kernel does not skip), naive rows N*(P+R)^2/2 causally; (3) with LoRA, backward through
a frozen linear layer costs ~1 forward (k ~ 2), attention backward ~3. TRL runs slower than its
FLOPs: per-micro-batch overheads of the Trainer loop and small two-row matrix products, one pair
per forward.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(f"{p}x{r}" for p, r in DEFAULT_CONFIGS),
                        help="comma-separated PxR prompt/response lengths (default: %(default)s)")
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of %(default)s")
    parser.add_argument("--n", type=int, default=4, help="responses per list (default 4)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps (default 1)")
    parser.add_argument("--min-steps", type=int, default=2, help="timed steps always run (default 2)")
    parser.add_argument("--max-timed-seconds", type=float, default=30.0,
                        help="stop timing a method after this many timed seconds, once --min-steps ran (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every worker (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat all methods this many times, interleaved; medians over rounds (default 1)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=1024, help="log-softmax chunk of lambda-dpo's scoring")
    parser.add_argument("--trl-pairs-per-micro-batch", type=int, default=1,
                        help="pairs per TRL forward; the rest of a list's pairs by gradient accumulation (default 1)")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true",
                        help="TRL's own default; off here because the other methods do not checkpoint the body")
    parser.add_argument("--omp-wait-policy", default="PASSIVE",
                        help="OMP_WAIT_POLICY of the workers (default PASSIVE: idle OpenMP threads sleep instead of "
                             "spinning, which keeps timings sane when other jobs share the cores; '' = unset)")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="results dir (default bench/results)")
    parser.add_argument("--tag", default="throughput", help="results file stem (default throughput)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--prompt-len", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--response-len", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--render", metavar="JSON",
                        help="only rewrite the tables of an existing results JSON (and its .md); no measuring")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)

    if args.worker:
        try:
            record = worker(args)
        except Exception as err:  # reported in the table instead of crashing the whole run
            import traceback

            traceback.print_exc()
            print("ERROR " + f"{type(err).__name__}: {err}".replace("\n", " ")[:500], flush=True)
            return 1
        print("RESULT " + json.dumps(record), flush=True)
        return 0

    configs = [tuple(int(x) for x in c.lower().split("x")) for c in args.configs.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    env = environment(args, argv)
    print(f"lambda-dpo throughput benchmark: {env['cpu']}, torch threads {args.threads}, N={args.n}, "
          f"configs {configs}, methods {methods}", flush=True)
    start = time.perf_counter()
    records: list[dict] = []
    for p, r in configs:
        per_method: dict[str, list[dict]] = {m: [] for m in methods}
        for round_ in range(args.rounds):
            for method in methods:
                print(f"[{time.perf_counter() - start:6.0f} s] {p}/{r} {LABELS[method]}"
                      + (f" (round {round_ + 1}/{args.rounds})" if args.rounds > 1 else ""), flush=True)
                rec = run_worker(method, p, r, args.n, args)
                if rec.get("error"):
                    print(f"    FAILED: {rec['error']}", flush=True)
                else:
                    print(f"    {rec['median_step_s']:.2f} s/list, peak RSS {rec['peak_rss_mib']:.0f} MiB "
                          f"(+{rec['peak_increment_mib']:.0f} over loaded)", flush=True)
                per_method[method].append(rec)
        for method, recs in per_method.items():
            ok = [x for x in recs if not x.get("error")]
            if not ok:
                records.append(recs[-1])
                continue
            merged = dict(ok[0])
            if len(ok) > 1:
                merged["rounds"] = ok
                merged["step_s"] = [s for x in ok for s in x["step_s"]]
                merged["median_step_s"] = statistics.median(x["median_step_s"] for x in ok)
                merged["median_cpu_s"] = statistics.median(x["median_cpu_s"] for x in ok)
                merged["lists_per_s"] = 1 / merged["median_step_s"]
                merged["peak_rss_mib"] = max(x["peak_rss_mib"] for x in ok)
                merged["peak_increment_mib"] = max(x["peak_increment_mib"] for x in ok)
            records.append(merged)
    env["total_wall_s"] = round(time.perf_counter() - start, 1)
    write_results(records, env, args)
    return 0


def write_results(records: list[dict], env: dict, args) -> None:
    """Summary table on stdout, and <out>/<tag>.json + <tag>.md."""
    rows = summarise(records)
    verdicts = targets(rows)
    print("\n" + table_plain(rows))
    print("\n".join([""] + verdicts))
    print("\n" + EXPLANATION)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag}.json").write_text(json.dumps({"environment": env, "summary": rows, "targets": verdicts,
                                                      "workers": records}, indent=2) + "\n")
    md = [f"# Throughput: lambda-dpo vs naive vs TRL DPOTrainer (N={args.n}, SmolLM2-135M fp32, LoRA r={args.lora_r})",
          "", f"- command: `{env['command']}`", f"- date: {env['date']}", f"- CPU: {env['cpu']}",
          f"- torch threads: {args.threads} (OMP_WAIT_POLICY={args.omp_wait_policy or 'unset'}); "
          f"torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}, trl {env['trl']}",
          f"- steps: {args.warmup} warm-up + up to {args.steps} timed per method (at least {args.min_steps}; "
          f"fewer once {args.max_timed_seconds:g} s of timed steps ran), median reported; each method x config in "
          "a fresh process", f"- total wall time: {env['total_wall_s']:.0f} s", f"- {env['note']}", "",
          table_markdown(rows), "", *[f"- {v}" for v in verdicts], "", EXPLANATION]
    if env.get("rendered"):
        md.insert(8, f"- tables re-rendered from the JSON on {env['rendered']} (same measurements)")
    (out / f"{args.tag}.md").write_text("\n".join(md))
    print(f"wrote {out / (args.tag + '.json')} and {out / (args.tag + '.md')}")


def render(path: str) -> int:
    """Rewrite the tables of a results JSON (and its .md) with the current summary code; no measuring."""
    path = Path(path)
    data = json.loads(path.read_text())
    env = data["environment"]
    argv = shlex.split(env["command"])[2:]
    parser_args = build_parser().parse_args(argv)
    parser_args.out, parser_args.tag = str(path.parent), path.stem
    env["rendered"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    write_results(data["workers"], env, parser_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
