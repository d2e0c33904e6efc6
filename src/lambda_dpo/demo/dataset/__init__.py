"""The shipped demo dataset: checkable prompts, deterministic judges, and the builder.

- `prompts`: seeded `PromptSpec` generators (verifiable instructions, known-answer questions,
  open requests with key terms);
- `judges`: deterministic 1-5 judges per aspect, usable on any (spec, response) pair, so the
  same rules rate the built data and new generations;
- `build`: `build_demo_dataset` samples responses from SmolLM2-135M-Instruct, rates them and
  writes train/eval JSONL and a datasheet (`lambda-dpo build-data`).
"""

from .judges import ASPECTS, JUDGES, judge_all
from .prompts import PromptSpec, generate_prompts, split_prompts

__all__ = ["ASPECTS", "JUDGES", "judge_all", "PromptSpec", "generate_prompts", "split_prompts",
           "demo_data_dir"]


def demo_data_dir():
    """The directory of the shipped demo dataset (train.jsonl, eval.jsonl, DATASHEET.md)."""
    from importlib.resources import files

    return files("lambda_dpo") / "resources" / "demo"
