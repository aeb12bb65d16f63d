"""2-point spatial statistics: ``two_point`` for arrays and tensors, ``TwoPointStatistics`` as a
scikit-learn style transformer, ``StatisticsPCA`` (their principal components: the classical latent)."""

from microlatent.stats.correlation import offsets, one_hot, resolve_pairs, two_point, volume_fraction
from microlatent.stats.estimator import TwoPointStatistics
from microlatent.stats.pca import StatisticsPCA

__all__ = [
    "StatisticsPCA",
    "TwoPointStatistics",
    "offsets",
    "one_hot",
    "resolve_pairs",
    "two_point",
    "volume_fraction",
]
