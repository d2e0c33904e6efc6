"""Labeling: prompts -> N sampled replies each -> ratings per aspect from judges -> listwise records.

What `lambda-dpo label CONFIG.yaml` runs (docs/labeling.md). One job per module:

- `config`: the label config (`LabelConfig`, `Slot`, `load_label_config`) and its fingerprint;
- `inputs`: the prompts, read from any source training reads, checked, keyed, counted;
- `sampling`: replies from a causal LM with transformers' ``generate`` (batched, seeded, per-slot
  system prompt, temperature and top-p);
- `judges`: reward models, an LLM behind an OpenAI-compatible endpoint, Python callables;
- `rate`: the judges applied to lists, keeping the ratings they already have;
- `output`: append-only, fsync'ed records and the resume logic;
- `datasheet`: what the file holds and how it was made;
- `api`: `label(config)`, the steps in order.
"""

from .api import LabelResult, label
from .config import LabelConfig, Slot, load_label_config

__all__ = ["label", "LabelResult", "LabelConfig", "Slot", "load_label_config"]
