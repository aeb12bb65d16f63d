"""A predictor folder on disk: its metadata, its fitted regressors (skops files) and
:class:`PropertyPredictor`, which opens one.

A predictor folder (written by :func:`~microlatent.design.predictor.fit_property_models`,
``microlatent design fit``) holds::

    predictor.json                  metadata (read first, no code executed): property names, feature
                                    kinds, checkpoint path and its state_dict SHA-256, latent shape,
                                    image size, data file, split, phase properties, label statistics
                                    of the training split, files of the regressors
    {latent,downsampled}_{kind}.skops   fitted PropertyRegressors (labels of the original images)
    decoded_{kind}.skops            "closed-loop" regressors: latent code z -> solver-computed
                                    properties of threshold(decode(z)) (used by ``design``)
    pca_stats.npz                   the PCA of statistics (``--features pca-stats``)
    fit_data.npz                    latents, labels and closed-loop properties used to fit them
    metrics.csv, predictions.npz, pred_vs_true.png

Regressors are stored with skops (``skops.io``), a format that cannot execute code: loading builds
only the types it lists, and :func:`load_regressor` refuses any type outside scikit-learn, NumPy and
:class:`PropertyRegressor`. Pickles (.joblib, .pkl) are refused, and every file ``predictor.json``
names must be a plain file name inside the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from microlatent.design.regression import PropertyRegressor, feature_matrix
from microlatent.errors import DataError, InputError

PCA_FILE = "pca_stats.npz"
META_FILE = "predictor.json"
META_FORMAT = "microlatent-property-predictor"
META_VERSION = 2  # 2: regressors in skops files (1: joblib pickles, refused)
REGRESSOR_SUFFIX = ".skops"


class PropertyPredictor:
    """A predictor folder: metadata (``meta``) and its fitted regressors, loaded lazily.

    ``regressor(kind, features)`` returns a :class:`PropertyRegressor`; ``features`` is "latent",
    "downsampled" or "decoded" (the closed-loop latent regressor).
    """

    def __init__(self, directory, meta):
        self.directory = Path(directory)
        self.meta = meta
        self._cache = {}

    @property
    def properties(self):
        return tuple(self.meta["properties"])

    def available(self):
        """Keys "features_kind" of the stored regressors."""
        return list(self.meta.get("regressors", {}))

    def regressor(self, kind="mlp", features="latent") -> PropertyRegressor:
        key = f"{features}_{kind}"
        if key not in self.meta.get("regressors", {}):
            raise InputError(
                f"{self.directory}: no {kind} regressor on {features} features "
                f"(has: {', '.join(self.available()) or 'none'})"
            )
        if key not in self._cache:
            self._cache[key] = load_regressor(self.file(self.meta["regressors"][key]))
        return self._cache[key]

    def file(self, name) -> Path:
        """``directory / name``; DataError unless ``name`` is a plain file name (no folder, no "..")."""
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise DataError(f"{self.directory / META_FILE}: file {name!r} is not a plain file name inside the folder")
        return self.directory / name

    def check_run(self, run):
        """DataError unless the :class:`~microlatent.models.run.Run` holds the weights the predictor was
        fitted on."""
        want = self.meta["checkpoint"].get("state_dict_sha256")
        if want and run.state_dict_sha256 != want:
            raise DataError(
                f"{os.fspath(run.path)}: not the model this predictor was fitted on "
                f"({self.directory / META_FILE} names {self.meta['checkpoint']['path']}, "
                f"weights SHA-256 {want[:12]}..., this one {str(run.state_dict_sha256)[:12]}...)"
            )

    def fit_data(self) -> dict:
        file = self.file("fit_data.npz")
        try:
            with np.load(file, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{file}: cannot read ({err})") from None

    def pca(self):
        """The folder's :class:`~microlatent.stats.StatisticsPCA` (fitted with ``--features pca-stats``)."""
        from microlatent.stats import StatisticsPCA

        if not self.meta.get("pca"):
            raise InputError(f"{self.directory}: no PCA of statistics (fit with `design fit --features pca-stats`)")
        return StatisticsPCA.load(self.file(self.meta["pca"].get("file", PCA_FILE)))

    @property
    def n_phases(self) -> int:
        """Phases of the images the predictor was fitted on (2 for folders that do not say)."""
        return int(self.meta.get("n_phases", 2))

    def predict_images(self, images, model=None, kind="mlp", features="latent") -> np.ndarray:
        """(N, 5) properties of images (N, H, W) in [0, 1] (K phases: labels 0..K-1); latent features
        need ``model``."""
        reg = self.regressor(kind, features)
        if features == "decoded":
            raise InputError("the decoded (closed-loop) regressors take latent codes, not images")
        pca = self.pca() if features == "pca-stats" else None
        X = feature_matrix(
            images, features, model=model, latent_shape=self.meta["latent_shape"], pca=pca, n_phases=self.n_phases
        )
        return reg.predict(X)


REGRESSOR_TYPE = f"{PropertyRegressor.__module__}.{PropertyRegressor.__qualname__}"


def _trusted_type(name: str) -> bool:
    return name.startswith(("sklearn.", "numpy.")) or name == REGRESSOR_TYPE


def save_regressor(regressor, path):
    """Write a fitted :class:`PropertyRegressor` to ``path`` with skops (atomic: a partial file never
    has the final name)."""
    import skops.io as sio

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    sio.dump(regressor, tmp)
    os.replace(tmp, path)


def load_regressor(path) -> PropertyRegressor:
    """Read a skops file written by :func:`save_regressor`. Only scikit-learn and NumPy types and
    :class:`PropertyRegressor` are built; anything else (a function, ``os.system``, another class)
    -> DataError naming it, before anything is constructed. Pickles are refused by suffix."""
    import skops.io as sio

    path = Path(path)
    if path.suffix != REGRESSOR_SUFFIX:
        raise DataError(
            f"{path}: regressors must be {REGRESSOR_SUFFIX} files (pickles such as .joblib or .pkl can "
            "execute code and are refused; refit with `microlatent design fit`)"
        )
    try:
        types = sio.get_untrusted_types(file=path)
    except Exception as err:
        raise DataError(f"{path}: not a readable skops file ({type(err).__name__}: {str(err)[:200]})") from None
    bad = [t for t in types if not _trusted_type(t)]
    if bad:
        raise DataError(f"{path}: refusing to load type {bad[0]} (only scikit-learn, NumPy and PropertyRegressor)")
    try:
        reg = sio.load(path, trusted=types)
    except Exception as err:
        raise DataError(f"{path}: cannot load the fitted regressor ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(reg, PropertyRegressor):
        raise DataError(f"{path}: not a PropertyRegressor")
    return reg


def load_predictor(directory) -> PropertyPredictor:
    """Open a predictor folder written by :func:`~microlatent.design.predictor.fit_property_models`
    (reads predictor.json only; regressors are read, with skops, when first used)."""
    directory = Path(directory)
    file = directory / META_FILE
    if not file.is_file():
        raise DataError(f"{directory}: not a predictor folder (no {META_FILE}; make one with `microlatent design fit`)")
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
        raise DataError(f"{file}: cannot read ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DataError(f"{file}: not a microlatent property predictor")
    if meta.get("version") != META_VERSION:
        old = " (version 1 stored pickles, which are no longer loaded: refit with `microlatent design fit`)"
        raise DataError(
            f"{file}: unsupported predictor version {meta.get('version')!r} (expected {META_VERSION})"
            + (old if meta.get("version") == 1 else "")
        )
    return PropertyPredictor(directory, meta)
