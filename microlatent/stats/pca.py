"""The classical latent: PCA of 2-point statistics (Paulson et al. 2017), as a reversible estimator.

``StatisticsPCA(n_components)`` fits a PCA to the (flattened) 2-point statistics of a set of
microstructures; ``transform`` gives each image's principal-component code, ``inverse_transform`` maps
codes back to statistics maps, which the reconstruction from statistics
(:mod:`microlatent.reconstruction`) can turn into images. Saved as an .npz of arrays plus JSON settings
(no pickles)::

    pca = StatisticsPCA(n_components=20).fit(train_images)          # (N, H, W) in [0, 1]
    codes = pca.transform(test_images)                              # (M, 20)
    maps = pca.inverse_transform(codes)                             # (M, K, H', W')
    pca.explained_variance_ratio_                                   # (20,)
    pca.save("pca.npz"); StatisticsPCA.load("pca.npz")

K phases (``n_phases=K``; images as labels (N, H, W) 0..K-1 or probabilities (N, K, H, W)): by default
the maps of the pairs (h, h') with 1 <= h <= h' <= K - 1 (:func:`statistics_pairs`), K (K - 1) / 2 maps
that determine every periodic map (:func:`complete_statistics`), as the phase-1 autocorrelation does
for two phases. Every autocorrelation alone does not: for 3 phases one cross-correlation per offset is
left free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from microlatent.errors import DataError, InputError
from microlatent.stats.correlation import one_hot, two_point

FORMAT = "microlatent-statistics-pca"
VERSION = 1
_ARRAYS = ("components_", "mean_", "explained_variance_", "explained_variance_ratio_", "singular_values_")


class StatisticsPCA:
    """PCA of the 2-point statistics of microstructures (scikit-learn style: fit/transform).

    Parameters
    ----------
    n_components : int, default 10
        Principal components kept (at most min(N, K * H' * W') of the fitting set).
    pairs : "auto", "all" or sequence of (h, h'), default :func:`statistics_pairs` of ``n_phases``
        Phase pairs whose maps are the features (Paulson et al.: the phase-1 autocorrelation, which
        for 2 phases determines the others; for K phases the pairs among phases 1..K-1).
    periodic : bool, default True
    crop : int or (int, int), optional
        Keep only the central offsets (e.g. Cai et al.'s 50).
    svd_solver : scikit-learn PCA's (default "auto": randomized for few components of large maps)
    n_phases : int, default 2
        K > 2: images are label images (N, H, W) of phases 0..K-1 (seen one-hot) or (N, K, H, W)
        probabilities.

    Attributes (after ``fit``)
    --------------------------
    components_ : (n_components, D); mean_ : (D,); explained_variance_, explained_variance_ratio_,
    singular_values_ : (n_components,); statistics_shape_ : (K, H', W'); image_shape_ : (H, W).
    """

    # Set by fit (setattr over _ARRAYS), declared for type checkers
    components_: np.ndarray
    mean_: np.ndarray
    explained_variance_: np.ndarray
    explained_variance_ratio_: np.ndarray
    singular_values_: np.ndarray

    def __init__(self, n_components=10, pairs=None, periodic=True, crop=None, svd_solver="auto", n_phases=2):
        self.n_components = n_components
        self.pairs = statistics_pairs(n_phases) if pairs is None else pairs
        self.periodic = periodic
        self.crop = crop
        self.svd_solver = svd_solver
        self.n_phases = int(n_phases)

    def statistics(self, X) -> np.ndarray:
        """(N, K, H', W') float64 statistics of images X (N, H, W) (or (N, C, H, W) probabilities)."""
        X = as_phases(X, self.n_phases)
        return two_point(X, periodic=self.periodic, pairs=self._pairs(), crop=self.crop)

    def fit(self, X, y=None):
        from sklearn.decomposition import PCA

        n = self.n_components
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n_components must be a positive integer, got {n!r}")
        stats = self.statistics(X)
        features = stats.reshape(len(stats), -1)
        if n > min(features.shape):
            raise InputError(f"n_components = {n} is more than min(images, features) = {min(features.shape)}")
        pca = PCA(n_components=int(n), svd_solver=self.svd_solver, random_state=0).fit(features)
        for name in _ARRAYS:
            setattr(self, name, np.asarray(getattr(pca, name), dtype=np.float64))
        self.statistics_shape_ = tuple(stats.shape[1:])
        self.image_shape_ = tuple(np.shape(X)[-2:])
        return self

    def transform(self, X) -> np.ndarray:
        """(N, n_components) codes of images X."""
        self._check_fitted()
        if tuple(np.shape(X)[-2:]) != self.image_shape_:
            raise InputError(
                f"images of shape {tuple(np.shape(X)[-2:])}: this PCA was fitted on {self.image_shape_} images"
            )
        stats = self.statistics(X)
        return (stats.reshape(len(stats), -1) - self.mean_) @ self.components_.T

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, codes) -> np.ndarray:
        """(N, K, H', W') statistics maps of codes (N, n_components)."""
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.float64)
        if codes.ndim != 2 or codes.shape[1] != len(self.components_):
            raise InputError(f"codes must be (N, {len(self.components_)}), got shape {codes.shape}")
        return (codes @ self.components_ + self.mean_).reshape(len(codes), *self.statistics_shape_)

    def decode(self, codes, steps=None, time_limit=None, seed=0, device="cpu") -> np.ndarray:
        """(N, H, W) uint8 microstructures whose statistics match those of ``codes`` (N, n_components):
        each code's phase-1 autocorrelation is made a valid one (values within [max(0, 2v - 1), v],
        v = its zero-offset value) and reconstructed by :func:`microlatent.reconstruction.reconstruct`
        (gradient descent; ``steps`` or ``time_limit`` as there). Needs a PCA of the periodic (1, 1)
        map, the one that determines a 2-phase image's statistics. K phases: a PCA of the periodic
        :func:`statistics_pairs`, completed to every ordered pair and made a valid map by
        :func:`complete_statistics`, reconstructed as phase labels 0..K-1 (Adam on a softmax field)."""
        from microlatent.reconstruction import from_map, reconstruct

        self._check_fitted()
        k_phases = self.n_phases
        if k_phases > 2 and (self._pairs() != statistics_pairs(k_phases) or not self.periodic or self.crop is not None):
            raise InputError(f"decode needs a PCA of the uncropped periodic maps of pairs {statistics_pairs(k_phases)}")
        if k_phases == 2 and (self._pairs() != [(1, 1)] or not self.periodic):
            raise InputError("decode needs a PCA of the periodic phase-1 autocorrelation (pairs ((1, 1),), periodic)")
        images = []
        for k, stats in enumerate(self.inverse_transform(codes)):
            if k_phases > 2:
                full = complete_statistics(stats, k_phases, valid=True)
                target = from_map(full, pairs="all", periodic=True, size=self.image_shape_, name=f"code{k}")
            else:
                f11 = stats[0]
                centre = tuple(n // 2 for n in f11.shape)
                v = float(np.clip(f11[centre], 1e-4, 1 - 1e-4))
                f11 = np.clip(f11, max(0.0, 2 * v - 1), v)
                f11[centre] = v
                target = from_map(f11[None], pairs=[(1, 1)], periodic=True, size=self.image_shape_, name=f"code{k}")
            images.append(reconstruct(target, steps=steps, time_limit=time_limit, seed=seed, device=device)[0].image)
        return np.stack(images)

    def save(self, path):
        """Write the fitted PCA to an .npz (arrays, and the settings as JSON; atomic)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"a StatisticsPCA is saved to an .npz file, got {path}")
        settings = {
            "format": FORMAT,
            "version": VERSION,
            "n_components": int(self.n_components),
            "pairs": [list(p) for p in self._pairs()],
            "periodic": bool(self.periodic),
            "crop": None if self.crop is None else np.atleast_1d(self.crop).tolist(),
            "statistics_shape": list(self.statistics_shape_),
            "image_shape": list(self.image_shape_),
            "n_phases": self.n_phases,
        }
        partial = path.with_name(f".{path.name}.partial.npz")
        np.savez(partial, settings=np.array(json.dumps(settings)), **{n: getattr(self, n) for n in _ARRAYS})
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path) -> StatisticsPCA:
        """A PCA written by :meth:`save` (read with ``allow_pickle=False``)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                settings = json.loads(str(data["settings"]))
                arrays = {name: data[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise DataError(f"{path}: not a saved StatisticsPCA ({type(err).__name__}: {err})") from None
        if settings.get("format") != FORMAT or settings.get("version") != VERSION:
            raise DataError(f"{path}: not a microlatent StatisticsPCA (version {VERSION})")
        crop = settings["crop"]
        pca = cls(
            settings["n_components"],
            [tuple(p) for p in settings["pairs"]],
            settings["periodic"],
            None if crop is None else tuple(crop) if len(crop) > 1 else crop[0],
            n_phases=settings.get("n_phases", 2),
        )
        for name, value in arrays.items():
            setattr(pca, name, value)
        pca.statistics_shape_ = tuple(settings["statistics_shape"])
        pca.image_shape_ = tuple(settings["image_shape"])
        return pca

    def _pairs(self):
        if isinstance(self.pairs, str):
            return self.pairs
        return [tuple(int(v) for v in p) for p in self.pairs]

    def _check_fitted(self):
        if not hasattr(self, "components_"):
            raise InputError("this StatisticsPCA is not fitted yet: call fit(images) first")


def statistics_pairs(n_phases: int) -> list[tuple[int, int]]:
    """The phase pairs a :class:`StatisticsPCA` of K phases encodes by default: (h, h') with
    1 <= h <= h' <= K - 1 ([(1, 1)] for 2 phases), which determine every periodic map."""
    return [(h, k) for h in range(1, n_phases) for k in range(h, n_phases)]


def as_phases(images, n_phases: int) -> np.ndarray:
    """Images as :func:`two_point` takes them, float64: 2 phases (N, H, W) phase-1 probabilities as
    they are; K phases label images (N, H, W) of phases 0..K-1 one-hot (N, K, H, W), probabilities
    (N, K, H, W) as they are."""
    images = np.asarray(images, dtype=np.float64)
    if n_phases <= 2 or images.ndim == 4:
        return images
    if images.size and (images.min() < 0 or images.max() > n_phases - 1 or (images != np.round(images)).any()):
        raise InputError(
            f"{n_phases}-phase images must be phase labels 0..{n_phases - 1} (or (N, K, H, W) probabilities)"
        )
    return one_hot(images, n_phases, np.float64)


def complete_statistics(maps, n_phases: int, valid=False) -> np.ndarray:
    """Every ordered pair's periodic map (K * K, H, W), h-major, from the centred maps (P, H, W) of
    :func:`statistics_pairs` (f(h', h | r) = f(h, h' | -r); each row of pairs sums to the volume
    fraction f(h, h | 0), and each column too). ``valid``: first make it the map of some image, as a PCA
    code's maps need: volume fractions clipped into [1e-4, 1] and normalised, every offset's K x K
    table clipped at 0 and scaled to the volume fractions in rows and columns (Sinkhorn), the zero
    offset diag(volume fractions). Exact maps come back unchanged (to 1e-12)."""
    maps = np.asarray(maps, dtype=np.float64)
    pairs = statistics_pairs(n_phases)
    if maps.ndim != 3 or len(maps) != len(pairs):
        raise InputError(f"expected the {len(pairs)} maps of pairs {pairs}, got shape {maps.shape}")
    height, width = maps.shape[1:]
    cy, cx = height // 2, width // 2
    full = np.zeros((n_phases, n_phases, height, width))
    for (h, k), m in zip(pairs, maps):
        full[h, k] = m
        # f(k, h | r) = f(h, k | -r): centred periodic maps, the offset -r of index i is 2 c - i (mod size)
        full[k, h] = np.roll(m[::-1, ::-1], (2 * cy + 1 - height, 2 * cx + 1 - width), axis=(0, 1))
    vf = np.array([1.0] + [full[h, h, cy, cx] for h in range(1, n_phases)])
    vf[0] = 1.0 - vf[1:].sum()
    if valid:
        vf = np.clip(vf, 1e-4, 1.0)
        vf /= vf.sum()
    for h in range(1, n_phases):
        full[h, 0] = vf[h] - full[h, 1:].sum(0)
        full[0, h] = vf[h] - full[1:, h].sum(0)
    full[0, 0] = vf[0] - full[0, 1:].sum(0)
    if valid:
        table, marginal = np.clip(full, 1e-12, None), vf[:, None, None]
        for _ in range(500):  # Sinkhorn: rows, then columns, to the volume fractions
            table *= (marginal / table.sum(1))[:, None]
            table *= (marginal / table.sum(0))[None]
            if np.abs(table.sum(1) - marginal).max() < 1e-9:
                break
        full = table
        full[:, :, cy, cx] = np.diag(vf)
    return full.reshape(n_phases * n_phases, height, width)


__all__ = ["StatisticsPCA", "as_phases", "complete_statistics", "statistics_pairs"]
