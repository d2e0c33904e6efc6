"""lambda-dpo: multi-preference, lambda-weighted, listwise DPO for small causal language models."""

__version__ = "0.1.0"
