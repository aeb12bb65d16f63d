"""Training: configs as plain data, one readable loop with atomic checkpoints and exact resume,
data-parallel under torchrun, and hyperparameter sweeps (``microlatent.training.sweep``, needs optuna)."""

from microlatent.training.config import DEFAULTS, check_sweep, load_config, shipped_configs
from microlatent.training.loop import Interrupted, NonFiniteLoss, evaluate_loss, train

__all__ = [
    "DEFAULTS",
    "Interrupted",
    "NonFiniteLoss",
    "check_sweep",
    "evaluate_loss",
    "load_config",
    "shipped_configs",
    "train",
]
