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
  ours_packed the same with the packed layout (one row per list under a dense block mask).
  ours_segments
              the packed layout attending by segment (lambda_dpo.segment_attention): what
              lambda-dpo trains with for lists of at most 1024 tokens and under checkpointing.
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

Modules beside this entry point (bench/ is not a package; each can be read on its own):

  workload.py          methods, shared settings (beta, lr, seed), synthetic lists, rank target, LoRA
  cost_model.py        token counts and the FLOP model: the predicted speed-ups
  peak_memory.py       RSS now, a resettable peak, the lifetime peak
  listwise_steps.py    timing of ours / ours_packed / naive training steps, reference precompute
  trl_steps.py         timing of TRL DPOTrainer steps on the lists expanded to pairs
  worker_process.py    one (method, config) in a fresh process of this script, its record read back
  throughput_report.py summary rows, tables, targets, environment, the .json and .md files
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the sibling modules, also when loaded from elsewhere (tests)
if (ROOT / "src" / "lambda_dpo").is_dir() and str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # works without `pip install -e .` / PYTHONPATH=src

import torch  # noqa: E402

from cost_model import token_counts  # noqa: E402
from listwise_steps import LISTWISE_LAYOUTS, time_listwise_steps  # noqa: E402
from peak_memory import current_rss_mib, peak_rss_mib, reset_peak_rss, ru_maxrss_mib, touch_weights  # noqa: E402
from throughput_report import RESULTS_DIR, environment, write_results  # noqa: E402
from trl_steps import time_trl_steps  # noqa: E402
from worker_process import run_worker, serve  # noqa: E402
from workload import LABELS, METHODS, add_lora, make_lists  # noqa: E402

DEFAULT_CONFIGS = ((64, 64), (256, 128), (512, 128))


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
        return serve(worker, args)

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
