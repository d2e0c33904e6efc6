"""Training: the config (`LambdaDPOConfig`) and the trainer (`LambdaDPOTrainer`, called as TRL's DPOTrainer is)."""

from .config import LambdaDPOConfig
from .trainer import LambdaDPOTrainer

__all__ = ["LambdaDPOConfig", "LambdaDPOTrainer"]
