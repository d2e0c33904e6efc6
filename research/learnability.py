"""Learnability check on the real model (issue 11, step 1): can lambda-DPO overfit steering at all?

Trains SmolLM2-135M on 16 lists of the shipped training file, lambda drawn from the two vertices
of the conflicting pair only, then scores those same 16 lists with the policy conditioned on each
vertex: the implicit reward should rank that aspect's best reply first (top-1 >= 0.9 each).
Appends one JSON line to --out and prints it.

    python research/learnability.py [key=value ...]   # overrides, e.g. lambda_text=weights
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path

from lambda_dpo.demo.dataset import demo_data_dir
from lambda_dpo.evaluation.listwise import evaluate_lists
from lambda_dpo.training.config import load_config
from lambda_dpo.training.run import train

PAIR = ("conciseness", "informativeness")


def main(argv: list[str]) -> int:
    out = Path("research/steering-data/learnability.jsonl")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.time()
    settings = dict(model_name_or_path="smollm2-135m-instruct",
                    train_file=str(Path(str(demo_data_dir())) / "train.jsonl"), eval_fraction=0,
                    max_train_lists=16, aspects=list(PAIR), lambda_source="table",
                    lambda_table=[{"weights": {a: 1.0}, "prob": 0.5} for a in PAIR], conditioning="prompt",
                    lambda_text="instructions", max_steps=100, per_device_train_batch_size=2,
                    learning_rate=5e-4, beta=0.1, rating_temperature=0.5, max_prompt_length=256,
                    max_response_length=160, logging_steps=10, seed=0, output_dir="runs/learnability",
                    score_cut_ends=True)  # as the recorded rows ran (before cut replies were read as such)
    # As overrides before the command line's (JSON is YAML), so that the command line's win.
    cfg = load_config(None, [*(f"{k}={json.dumps(v)}" for k, v in settings.items()), *argv])
    result = train(cfg)
    top1 = evaluate_lists(result.trainer.model, result.trainer.data_collator, result.trainer.train_dataset.items,
                          batch_size=4)
    row = {"command": "python research/learnability.py " + shlex.join(argv), "train_lists": 16,
           "top1_on_train": {a: round(top1[f"{a}/top1"], 3) for a in PAIR},
           "passed": all(top1[f"{a}/top1"] >= 0.9 for a in PAIR),
           "loss": [round(h["loss"], 3) for h in result.trainer.state.log_history if "loss" in h],
           "wall_s": round(time.time() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0 if row["passed"] else 1


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # no argparse here: the docstring is the usage
        print(__doc__)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
