"""Write docs/config.md, the config reference, from `LambdaDPOConfig`'s field metadata.

    .venv/bin/python docs/gen_config_reference.py           # rewrite docs/config.md
    .venv/bin/python docs/gen_config_reference.py --check   # exit 1 when docs/config.md is stale

Nothing about a field is written here: its help is the field's `help` metadata, its type and
default are the dataclass's, its group is the `# ---- name ----` comment above it in config.py,
and its allowed values are its entry in config.py's `CHOICES` (what the config validates against,
each set defined by the module that implements the option), or, for a transformers option, its
enum. The one list kept here is the transformers options the project relies on, with what
lambda-dpo does with each (tests/e2e/test_docs.py checks the page is current).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import json
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "config.md"
COMMAND = "python docs/gen_config_reference.py"
TRAINING_ARGUMENTS_DOCS = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

# Titles of config.py's field groups (the `# ---- name ----` comments); a group not named here is
# titled by its comment.
GROUP_TITLES = {
    "model": "Model",
    "data": "Data",
    "objective": "Objective and loss",
    "lambda": "Lambda and conditioning",
    "efficiency": "Layout and efficiency",
    "reliability": "Reliability",
    "Trainer defaults that differ from transformers'": "Training: transformers options with lambda-dpo defaults",
}

# transformers TrainingArguments fields lambda-dpo reads, constrains or documents, with what it does
# with them. Their type and default come from the dataclass.
TRAINER_OPTIONS = {
    "num_train_epochs": "Passes over the training lists; max_steps > 0 overrides it.",
    "max_steps": "Optimiser steps to train; -1: num_train_epochs decides.",
    "gradient_accumulation_steps": "Batches of per_device_train_batch_size lists per optimiser step.",
    "seed": "Seeds the held-out split (eval_fraction), the lambda draws and the adapter's initial weights.",
    "bf16": "The Trainer's autocast over fp32 weights (full fine-tuning in mixed precision). With LoRA, "
            "model_dtype: bfloat16 keeps the frozen weights in bfloat16 instead.",
    "gradient_checkpointing": "Recompute activations in the backward pass. layout: auto then "
                              "picks packed, as checkpointing drops the prompt caches.",
    "resume_from_checkpoint": "A checkpoint directory, or `latest` for the newest complete checkpoint in output_dir.",
    "save_steps": "With save_strategy: steps, a checkpoint every this many optimiser steps.",
    "dataloader_num_workers": "Collator worker processes; must be 0 with lambda_source: adaptive (workers never "
                              "see the scheduler's updates).",
    "disable_tqdm": "Progress bars. Unset: shown when stderr is a terminal, hidden in logs and CI.",
}

def _fields():
    from transformers import TrainingArguments

    from lambda_dpo.training.config import LambdaDPOConfig

    return LambdaDPOConfig, TrainingArguments, {f.name: f for f in dataclasses.fields(LambdaDPOConfig)}


def _choices() -> dict[str, tuple[str, ...]]:
    from lambda_dpo.training.config import CHOICES

    return CHOICES


def _groups(config_cls) -> list[tuple[str, list[str]]]:
    """The class body's `# ---- name ----` comments and the fields declared under each, in order."""
    groups: list[tuple[str, list[str]]] = []
    for line in inspect.getsource(config_cls).splitlines():
        header = re.match(r"\s*# -{2,} (.+?) -{3,}\s*$", line)
        name = re.match(r"    (\w+)\s*:", line)
        if header:
            groups.append((header.group(1), []))
        elif name and not line.lstrip().startswith("def"):
            if not groups:
                raise SystemExit(f"config.py: field {name.group(1)} comes before any '# ---- group ----' comment")
            groups[-1][1].append(name.group(1))
    return groups


def _type(t) -> str:
    if isinstance(t, type):
        return t.__name__
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", str(t)).replace("typing.", "")


def _default(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def _enum_values(t) -> list[str]:
    for arg in typing.get_args(t) or (t,):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return [str(member.value) for member in arg]
    return []


def _allowed(choices: dict, trainer_fields: dict, field: dataclasses.Field) -> list[str]:
    """The values config validation accepts: the field's entry in config.CHOICES (or transformers' enum)."""
    if _type(field.type) in ("bool", "bool | None"):
        return ["true", "false"] + (["null"] if "None" in _type(field.type) else [])
    if field.name in choices:
        return list(choices[field.name])
    if field.name in trainer_fields:
        return _enum_values(trainer_fields[field.name].type)
    return []


def _text(text: str) -> str:
    """Markdown for a table cell: pipes, angle brackets and asterisks escaped outside code spans,
    and `docs/<page>.md` turned into a link to that page."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        part = parts[i].replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
        parts[i] = re.sub(r"\bdocs/([\w-]+\.md)\b",
                          lambda m: f"[{m.group(1)}]({m.group(1)})" if (ROOT / "docs" / m.group(1)).is_file()
                          else m.group(0), part)
    return "`".join(parts)


def _table(choices, trainer_fields, fields, names, helps) -> list[str]:
    rows = ["| name | type | default | allowed values | help |", "|---|---|---|---|---|"]
    for name in names:
        field = fields[name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        allowed = ", ".join(f"`{v}`" for v in _allowed(choices, trainer_fields, field))
        rows.append(f"| `{name}` | `{_type(field.type)}` | `{_default(default)}` | {allowed} | {_text(helps[name])} |")
    return rows


def render() -> str:
    config_cls, trainer_cls, fields = _fields()
    choices = _choices()
    trainer_fields = {f.name: f for f in dataclasses.fields(trainer_cls)}
    missing = sorted(set(TRAINER_OPTIONS) - set(trainer_fields))
    if missing:
        raise SystemExit(f"gen_config_reference.py: TRAINER_OPTIONS names fields TrainingArguments lacks: {missing}")
    lines = [
        "# Config reference",
        "",
        f"<!-- Generated from LambdaDPOConfig's field metadata by docs/gen_config_reference.py: do not edit; "
        f"run `{COMMAND}`. -->",
        "",
        "Every training option is a field of `LambdaDPOConfig` (`lambda_dpo.training.config`), which extends",
        "transformers' `TrainingArguments`. Set them as keys of the YAML file given to `lambda-dpo train`, as",
        "`key=value` overrides after it (parsed as YAML values), or as keyword arguments of `LambdaDPOConfig`",
        "and `load_config` in Python. Unknown keys and values outside the allowed ones are errors.",
        "",
        "```bash",
        "lambda-dpo train configs/example.yaml beta=0.2 lambda_source=dirichlet max_steps=50",
        "```",
    ]
    own = set(config_cls.__dict__.get("__annotations__", {}))
    listed: set[str] = set()
    for group, names in _groups(config_cls):
        names = [n for n in names if n in own]
        listed.update(names)
        helps = {n: fields[n].metadata.get("help", "") for n in names}
        lines += ["", f"## {GROUP_TITLES.get(group, group[:1].upper() + group[1:])}", ""]
        lines += _table(choices, trainer_fields, fields, names, helps)
    unlisted = sorted(own - listed)
    if unlisted:
        raise SystemExit(f"gen_config_reference.py: fields outside any '# ---- group ----' comment: {unlisted}")
    names = [n for n in TRAINER_OPTIONS if n not in own]
    lines += ["", "## Training: other transformers options lambda-dpo relies on", "",
              "Defaults are transformers'; the help says what lambda-dpo does with each.", ""]
    lines += _table(choices, trainer_fields, fields, names, TRAINER_OPTIONS)
    lines += ["", f"Every other field of [transformers' `TrainingArguments`]({TRAINING_ARGUMENTS_DOCS}) works too "
              "(optimiser, scheduler, evaluation and saving strategies, ...), with transformers' default.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/config.md is stale; write nothing")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            print(f"docs/config.md is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
