"""2-point spatial statistics: ``two_point`` for arrays and tensors, ``TwoPointStatistics`` as a
scikit-learn style transformer."""

from microlatent.stats.estimator import TwoPointStatistics
from microlatent.stats.correlation import offsets, resolve_pairs, two_point, volume_fraction

__all__ = ["TwoPointStatistics", "offsets", "resolve_pairs", "two_point", "volume_fraction"]
