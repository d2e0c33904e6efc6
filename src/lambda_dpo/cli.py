"""`lambda-dpo` command line: each command parses its arguments and calls the library once."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from .data import FORMATS  # light: the loaders import datasets / pyarrow only when they need them
from .rating_scales import (DEFAULT_RATING_TEMPERATURE, RATING_SCALES, apply_rating_scales, fit_rating_scales,
                            format_targets, parse_rating_scale, targets_summary)


class _Choices:
    """An option's allowed values, read from the module that defines them (`module`, `name`) only when argparse
    checks a given value or shows the help: building the parser imports no torch, so `validate-data` and
    `--help` stay quick. Give the argument a metavar (argparse would list the values when it is added)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def _values(self) -> tuple:
        return tuple(getattr(importlib.import_module(self.module, __package__), self.name))

    def __contains__(self, value) -> bool:
        return value in self._values()

    def __iter__(self):
        return iter(self._values())


def _validate_data(args) -> int:
    from .data import format_summary, load_lists, summarize

    scale = parse_rating_scale(args.rating_scale, "--rating-scale")
    lists, report = load_lists(args.file, args.format, skip_bad=args.skip_bad,
                               aspects=args.aspects.split(",") if args.aspects else None)
    summary = summarize(lists, report)
    scaled = apply_rating_scales(lists, fit_rating_scales(lists, scale, list(summary["aspects"])))
    summary["targets"] = targets_summary(scaled, args.rating_temperature, scale)
    print(json.dumps(summary, indent=2) if args.json
          else f"{format_summary(summary)}\n{format_targets(summary['targets'])}")
    return 0


def _train(args) -> int:
    from .training.config import load_config
    from .training.run import train

    import torch.distributed as dist

    try:
        result = train(load_config(args.config, args.overrides))
    finally:  # under `accelerate launch`: close the process group before exit (gloo aborts otherwise)
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    print(f"model saved to {result.output_dir}")
    for key, value in sorted(result.eval_metrics.items()):
        if key.startswith("eval_mean/"):
            print(f"  {key}: {value:.4f}")
    return 0


def _generate(args) -> int:
    from .generation import generate, generate_mixed, load_steerable

    if args.decoding == "mixed" and args.sample:
        raise SystemExit("lambda-dpo generate: --decoding mixed decodes greedily; drop --sample")
    sm = load_steerable(args.model, trust_remote_code=args.trust_remote_code)
    if args.decoding == "mixed":
        replies = generate_mixed(sm, args.prompts, args.lam, max_new_tokens=args.max_new_tokens,
                                 batch_size=args.batch_size)
    else:
        replies = generate(sm, args.prompts, args.lam, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                           temperature=args.temperature, seed=args.seed, batch_size=args.batch_size)
    for reply in replies:
        print(reply)
    return 0


def _evaluate_front(args) -> int:
    from .evaluate_steering import evaluate_front, format_front

    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    result = evaluate_front(args.model_dir, args.data, tuple(_pair(args.front)), judge=args.judge,
                            **({"weights": weights} if weights else {}), controls=args.control or ("base",),
                            max_new_tokens=args.max_new_tokens, limit=args.limit, decoding=args.decoding)
    print(json.dumps(result, indent=2) if args.json else format_front(result))
    return 0


def _pair(text: str) -> list[str]:
    pair = [p.strip() for p in text.split(",")]
    if len(pair) != 2 or not all(pair):
        raise SystemExit(f"lambda-dpo evaluate: --front {text!r} must name two aspects, e.g. conciseness,informativeness")
    return pair


def _evaluate(args) -> int:
    if args.front:
        return _evaluate_front(args)
    if args.decoding != "prompt":
        raise SystemExit("lambda-dpo evaluate: --decoding applies to --front only (the listwise figures score given replies)")
    from .evaluate_saved import evaluate_saved, format_evaluation

    result = evaluate_saved(args.model_dir, args.data, batch_size=args.batch_size,
                            reference_cache_dir=None if args.no_cache else "auto", dtype=args.dtype,
                            steering=args.steering)
    print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


def _export(args) -> int:
    from .export import export_model

    out = export_model(args.model_dir, args.out_dir, dtype=args.dtype, overwrite=args.overwrite,
                       trust_remote_code=args.trust_remote_code)
    print(f"standalone checkpoint written to {out} (how to pass lambda: {out / 'README.md'})")
    return 0


def _playground(args) -> int:
    from .playground import launch_playground

    try:
        launch_playground(args.model_dir, host=args.host, port=args.port, references=(args.ref_a, args.ref_b),
                          max_new_tokens=args.max_new_tokens, trust_remote_code=args.trust_remote_code)
    except ImportError as err:
        if err.name != "gradio":
            raise
        print(f"lambda-dpo: error: {err}", file=sys.stderr)  # says which extra to install
        return 2
    return 0


def _demo(args) -> int:
    mode = "--merge" if args.merge else "--remeasure" if args.remeasure else None
    if mode and not args.out:
        raise SystemExit(f"lambda-dpo demo {mode}: give --out, the directory of the new report")
    if args.merge:
        from .demo.merge import merge_runs

        out = merge_runs(args.merge, args.out)
    elif args.remeasure:
        from .demo.remeasure import remeasure_demo

        out = remeasure_demo(args.remeasure, args.out, args.decoding)
    else:
        from .demo.run import run_demo

        out = run_demo(args.preset, args.out, seed=args.seed, model_dtype=args.model_dtype, decoding=args.decoding)
    from .demo.report import PLOTS_EXTRA

    plots = (f"{out / 'fronts.png'}, {out / 'lengths.png'}" if (out / "fronts.png").exists()
             else f"none: they need matplotlib ({PLOTS_EXTRA})")
    print(f"demo report: {out / 'report.md'}\nmetrics: {out / 'metrics.json'}\nplots: {plots}")
    return 0


# --study -> (module, runner, default preset, default seeds, report file)
_STUDIES = {"lambda": (".demo.ablation", "run_ablation", "quick", [0, 1], "ablation.md"),
            "losses": (".demo.loss_comparison", "run_loss_comparison", "full", [0, 1, 2], "report.md"),
            "scheduler": (".demo.scheduler_study", "run_scheduler_study", "full", [0, 1, 2], "report.md")}


def _ablation(args) -> int:
    module, runner, preset, seeds, report = _STUDIES[args.study]
    run = getattr(importlib.import_module(module, __package__), runner)
    out = run(args.preset or preset, args.out, seeds=args.seeds or seeds)
    print(f"{args.study} study report: {out / report}\nmetrics: {out / 'metrics.json'}")
    return 0


def _build_data(args) -> int:
    from .demo.dataset.build import main as build_main

    return build_main(args.args) or 0


def _label(args) -> int:
    from .labeling import label, load_label_config

    cfg = load_label_config(args.config, args.overrides, input=args.input, output=args.output, limit=args.limit,
                            progress=False if args.no_progress else None)
    result = label(cfg, overwrite=args.overwrite)
    rejected = sum(result.input.rejected.values())
    print(f"{result.lists} lists in {result.output} ({result.written} written now, {result.done_before} prompt(s) done "
          f"before); skipped: {result.skipped} now, {rejected} unusable input record(s)\ndatasheet: {result.datasheet}")
    return 0


_DECODINGS = _Choices(".generation", "DECODINGS")
_DECODING_HELP = ("prompt (default): lambda written into the prompt, as in training; mixed: greedy, each token from the "
                  "vertices' log-probs weighted by lambda, a continuum between the vertices (docs/steering.md)")


def _add_label(sub) -> None:
    p = sub.add_parser("label", help="build listwise preference data: prompts -> N sampled replies each -> ratings per "
                                     "aspect from judges (reward models, an LLM endpoint, Python functions); resumable")
    p.add_argument("config", help="a label config (YAML; docs/labeling.md)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--input", help="the prompts (overrides the config's input)")
    p.add_argument("--output", help="the .jsonl file written (overrides the config's output)")
    p.add_argument("--limit", type=int, help="label only the first N usable prompts")
    p.add_argument("--overwrite", action="store_true", help="start the output again instead of resuming it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_label)


def _estimate_memory(args) -> int:
    from .memory import estimate_for_config
    from .training.config import load_config

    est = estimate_for_config(load_config(args.config, args.overrides), n_responses=args.n, device=args.device)
    print(json.dumps(est.as_dict(), indent=2) if args.json else est.table())
    return 0


def _add_estimate_memory(sub) -> None:
    p = sub.add_parser("estimate-memory", help="predict the peak memory of a training config's step, term by term "
                                               "(weights, gradients, AdamW, activations), without loading the model")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--n", type=int, default=4, help="responses per list: the data's largest list (default 4)")
    p.add_argument("--device", default="cuda", help="where training would run, for model_dtype and "
                                                    "attn_implementation auto (default cuda)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.set_defaults(func=_estimate_memory)


def _add_validate_data(sub) -> None:
    p = sub.add_parser("validate-data", help="load a preference file and print what it holds and what was rejected")
    p.add_argument("file")
    p.add_argument("--format", default="auto", help=" | ".join(("auto", *FORMATS)))
    p.add_argument("--skip-bad", action="store_true", help="count malformed records instead of stopping")
    p.add_argument("--aspects", help="comma-separated aspects the data may use (others are errors)")
    p.add_argument("--rating-temperature", type=float, default=DEFAULT_RATING_TEMPERATURE,
                   help="the training's rating_temperature (default %(default)s): per aspect, the share of the lists "
                        "with unequal ratings whose target softmax(ratings / tau) puts more than 0.99 on the "
                        "best-rated reply, with a warning where it is over half")
    p.add_argument("--rating-scale", default="as_is", metavar="SCALE",
                   help=f"the training's rating_scale, applied before the check: {' | '.join(RATING_SCALES)}, or "
                        "aspect=scale,... (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_validate_data)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train from a YAML config; key=value arguments override it")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=_train)


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate under a chosen lambda")
    p.add_argument("prompts", nargs="+")
    p.add_argument("--model", required=True, help="a directory saved by `lambda-dpo train`")
    p.add_argument("--lambda", dest="lam", help="e.g. helpfulness=0.7,honesty=0.3 (default: uniform)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--decoding", choices=_DECODINGS, metavar="DECODING", default="prompt", help=_DECODING_HELP)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="prompts decoded together (default 32); larger batches are faster while memory lasts "
                        "(docs/performance.md)")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=_generate)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="listwise top-1 / NDCG / Kendall of a saved model's implicit reward at "
                                        "each aspect's vertex, on any preference file")
    p.add_argument("model_dir", help="a directory saved by `lambda-dpo train`")
    p.add_argument("data", help="a preference file (any format validate-data reads), e.g. a held-out eval.jsonl; "
                                "with --front, a JSONL file of prompts (records with a \"prompt\")")
    p.add_argument("--batch-size", type=int, help="lists per scoring batch (default: the run's eval batch size)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the reference log-prob cache")
    p.add_argument("--dtype", choices=["float32"],
                   help="score a bf16/fp16-trained model's weights in fp32 (figures independent of the batch; "
                        "default: the dtype it trained in)")
    p.add_argument("--steering", metavar="A,B",
                   help="also measure how lambda steers: Delta = log pi(y | x, A's vertex) - log pi(y | x, B's "
                        "vertex) per reply (mean |Delta| and its Spearman with r_A - r_B), for the model and for "
                        "the base model given the same text")
    p.add_argument("--front", metavar="A,B",
                   help="the steering protocol instead: sweep lambda from A's vertex to B's, judge greedy replies to "
                        "the prompts, print each model's front, hypervolume and steerability (docs/steering.md)")
    p.add_argument("--judge", default="length",
                   help="with --front: 'length' (word budget and distinct content words) or module:name, a callable "
                        "(record, reply) -> {aspect: score}")
    p.add_argument("--weights", help="with --front: comma-separated weights of B (default 0,.1,.25,.4,.5,.6,.75,.9,1)")
    p.add_argument("--control", action="append",
                   help="with --front: a control given the same lambda text: 'base' (the default) or a model "
                        "directory; repeat for several")
    p.add_argument("--max-new-tokens", type=int, default=96, help="with --front: reply budget (tokens)")
    p.add_argument("--limit", type=int, help="with --front: the first N prompts only")
    p.add_argument("--decoding", choices=_DECODINGS, metavar="DECODING", default="prompt",
                   help="with --front, for the model and its controls alike: " + _DECODING_HELP)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=_evaluate)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write a standalone transformers checkpoint (LoRA merged) with a model card "
                                      "that says how to write lambda")
    p.add_argument("model_dir", help="a directory saved by `lambda-dpo train`")
    p.add_argument("out_dir", help="where the checkpoint goes (must not exist, or be empty)")
    p.add_argument("--dtype", choices=_Choices(".export", "EXPORT_DTYPES"), default="float32", metavar="DTYPE",
                   help="dtype of the saved weights: %(choices)s (default float32: the merge is exact)")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty out_dir")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=_export)


def _add_playground(sub) -> None:
    p = sub.add_parser("playground", help="a local web page: sliders for lambda, a prompt, replies beside two "
                                          "reference lambdas (needs the playground extra)")
    p.add_argument("model_dir", help="a directory saved by `lambda-dpo train`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--ref-a", help="reference lambda A, e.g. conciseness=1 (default: the first aspect's vertex)")
    p.add_argument("--ref-b", help="reference lambda B (default: the second aspect's vertex)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=_playground)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train DPO and lambda-DPO variants on the embedded data and compare them")
    p.add_argument("--preset", choices=_Choices(".demo.run", "PRESETS"), default="default", metavar="PRESET",
                   help="the budget: %(choices)s (default %(default)s)")
    p.add_argument("--out", help="run directory (default runs/demo-PRESET-TIME)")
    p.add_argument("--seed", type=int, default=None, help="one seed instead of the preset's (full: 0 1 2)")
    p.add_argument("--model-dtype", choices=_Choices(".precision", "MODEL_DTYPES"), default="auto", metavar="DTYPE",
                   help="model_dtype of every trained model and of the base model: %(choices)s (default %(default)s)")
    p.add_argument("--merge", nargs="+", metavar="RUN_DIR",
                   help="merge finished single-seed runs of one preset (e.g. --preset full --seed 0, 1, 2) into one "
                        "report in --out, instead of running the demo")
    p.add_argument("--decoding", choices=_DECODINGS, metavar="DECODING", default="prompt", help=_DECODING_HELP)
    p.add_argument("--remeasure", metavar="RUN_DIR", help="measure a finished run's saved models again under "
                   "--decoding into --out (training's diagnostics kept), instead of training")
    p.set_defaults(func=_demo)


def _add_ablation(sub) -> None:
    p = sub.add_parser("ablation", help="a study at equal budget over several seeds (--study)")
    p.add_argument("--study", choices=tuple(_STUDIES), default="lambda",
                   help="lambda: lambda sources x conditioning modes, judged over a lambda grid (default); losses: "
                        "lambda-DPO, DPO best-vs-worst, DPO all pairs, Plackett-Luce and LiPO-lambda at equal data "
                        "and compute, judged on the held-out prompts with 95%% intervals; scheduler: the lambda sources "
                        "fixed / dirichlet / grid / adaptive (both signals) in the steering recipe, judged by the "
                        "front and the vertex scores. losses and scheduler reruns on the same --out keep what is "
                        "already measured")
    p.add_argument("--preset", choices=_Choices(".demo.run", "PRESETS"), default=None, metavar="PRESET",
                   help="the budget: %(choices)s (default quick for lambda, full otherwise)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 (lambda), 0 1 2 otherwise")
    p.add_argument("--out", help="run directory (default runs/{ablation,losses,scheduler}-PRESET-TIME)")
    p.set_defaults(func=_ablation)


def _add_build_data(sub) -> None:
    # Its options belong to its own parser (main passes them through; argparse.REMAINDER would not
    # pass a leading option such as --help).
    p = sub.add_parser("build-data", help="rebuild the embedded multi-aspect dataset (see its --help)",
                       add_help=False)
    p.set_defaults(func=_build_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-dpo", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_validate_data, _add_train, _add_label, _add_generate, _add_evaluate, _add_export,
                _add_playground, _add_demo, _add_ablation, _add_build_data, _add_estimate_memory):  # one per command
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "build-data":
        args.args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # DataError is a ValueError: file:line:field and the fix
        print(f"lambda-dpo: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
