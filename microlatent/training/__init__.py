"""Training: configs as plain data, one readable loop with atomic checkpoints and exact resume."""

from microlatent.training.config import DEFAULTS, load_config, shipped_configs
from microlatent.training.loop import Interrupted, evaluate_loss, resolve_device, train

__all__ = ["DEFAULTS", "Interrupted", "evaluate_loss", "load_config", "resolve_device",
           "shipped_configs", "train"]
