"""A scikit-learn style transformer over ``two_point`` (PyMKS's TwoPointCorrelation is the model)."""

from __future__ import annotations

from dataclasses import dataclass

from microlatent.stats.correlation import two_point


@dataclass
class TwoPointStatistics:
    """Images in, 2-point statistics out.

    ``transform(X)`` maps (N, H, W) phase-1 probabilities or (N, C, H, W) phase probabilities to
    (N, K, H', W') statistics, or to (N, K * H' * W') feature rows with ``flatten=True`` (ready for
    PCA or a regressor). Stateless: ``fit`` only returns self, so it drops into a Pipeline.
    """

    periodic: bool = True
    pairs: object = "auto"
    crop: object = None
    flatten: bool = False

    def fit(self, X=None, y=None):
        return self

    def transform(self, X):
        stats = two_point(X, periodic=self.periodic, pairs=self.pairs, crop=self.crop)
        return stats.reshape(len(stats), -1) if self.flatten else stats

    def fit_transform(self, X, y=None):
        return self.transform(X)

    def get_params(self, deep=True):
        return {"periodic": self.periodic, "pairs": self.pairs, "crop": self.crop, "flatten": self.flatten}

    def set_params(self, **params):
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"unknown parameter {key!r} for TwoPointStatistics")
            setattr(self, key, value)
        return self
