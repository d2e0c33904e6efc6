"""The dev split of the demo's training data: what recipes and defaults are tuned on.

24 lists of the shipped train.jsonl, chosen with random.Random(7), are held out as dev lists; the
remaining 256 train. eval.jsonl (and the general questions of resources/ood/questions.jsonl) are kept
for final numbers and never read by a study that chooses a setting.
"""

from __future__ import annotations

import random
from pathlib import Path

from .dataset import demo_data_dir

DEV_LISTS, DEV_SEED = 24, 7


def write_dev_split(root: Path) -> Path:
    """root/train.jsonl (the training split minus the dev lists) and root/eval.jsonl (the dev lists, in
    the training file's order), written once; returns root, laid out as the demo's data directory."""
    train, dev = root / "train.jsonl", root / "eval.jsonl"
    if not (train.exists() and dev.exists()):
        lines = (Path(str(demo_data_dir())) / "train.jsonl").read_text().splitlines()
        idx = list(range(len(lines)))
        random.Random(DEV_SEED).shuffle(idx)
        held = set(idx[:DEV_LISTS])  # read at call time: tests shrink it for tiny data
        root.mkdir(parents=True, exist_ok=True)
        dev.write_text("\n".join(lines[i] for i in sorted(held)) + "\n")
        train.write_text("\n".join(lines[i] for i in range(len(lines)) if i not in held) + "\n")
    return root
