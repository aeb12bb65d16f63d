"""Regression from latent codes (or control features) to homogenized properties: the estimator, its
differentiable torch copy, and the feature matrices (Cai et al. 2025 Sec. 4.3; Sardeshmukh et al.
2021 Sec. 4.4).

    PropertyRegressor(kind="mlp"|"linear"|"svr"|"gbr", features=...)  scikit-learn estimator
    TorchRegressor(regressor)            the fitted function as a torch module (for latent-space design)
    feature_matrix(images, features, ...) -> (N, D);  downsample(images, shape);  latent_codes(run, images)

Metrics (R^2, MAPE) are in ``microlatent.evaluation.metrics``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
from sklearn.base import BaseEstimator, RegressorMixin

from microlatent.errors import InputError

PROPERTY_NAMES = ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")
REGRESSOR_KINDS = ("mlp", "linear", "svr", "gbr")
FEATURE_KINDS = ("latent", "downsampled", "pca-stats")


def downsample(images, shape) -> np.ndarray:
    """Area-downsample images (N, H, W) (or (H, W)) to ``shape`` = (h, w): each output pixel is the
    mean of the input pixels in its cell (``adaptive_avg_pool2d``; exact block means when h divides H
    and w divides W). Returns float32."""
    import torch
    import torch.nn.functional as F

    arr = np.asarray(images, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"images must be (N, H, W) or (H, W), got shape {arr.shape}")
    h, w = (int(shape), int(shape)) if np.ndim(shape) == 0 else (int(shape[0]), int(shape[1]))
    if h < 1 or w < 1 or h > arr.shape[1] or w > arr.shape[2]:
        raise InputError(f"cannot area-downsample {arr.shape[1]} x {arr.shape[2]} images to {h} x {w}")
    out = F.adaptive_avg_pool2d(torch.from_numpy(arr)[:, None], (h, w))[:, 0].numpy()
    return out[0] if single else out


def control_shape(latent_shape) -> tuple[int, int]:
    """Spatial size of the downsampled control for a latent shape: (h, w) of a (C, h, w) latent grid;
    for a vector latent (D,) the square nearest D pixels (side round(sqrt(D)))."""
    latent_shape = tuple(int(v) for v in latent_shape)
    if len(latent_shape) == 3:
        return latent_shape[1], latent_shape[2]
    side = max(1, int(round(np.sqrt(int(np.prod(latent_shape))))))
    return side, side


def latent_codes(model, images, batch_size=32) -> np.ndarray:
    """Latent means mu (N, *latent_shape) of images (N, H, W) in [0, 1] (resized to the model's
    trained size as :func:`microlatent.evaluation.encode` does)."""
    from microlatent.evaluation.inference import encode

    mu, _ = encode(model, [np.asarray(image, dtype=np.float32) for image in images], batch_size)
    return mu


def feature_matrix(
    images, features: str, model=None, latent_shape=None, codes=None, pca=None, n_phases=2
) -> np.ndarray:
    """(N, D) float64 features of images (N, H, W) in [0, 1] (K phases: phase labels 0..K-1).

    ``features="latent"``: the model's latent means, flattened (pass ``codes`` to reuse encodings);
    ``"downsampled"``: the images area-downsampled to the latent's spatial size (:func:`control_shape`
    of ``latent_shape``, or of the model's latent for these images), flattened; for ``n_phases`` K > 2
    the one-hot maps of phases 1..K-1 (phase 0 is one minus their sum), each downsampled;
    ``"pca-stats"``: the codes of a fitted :class:`~microlatent.stats.StatisticsPCA` (``pca``), the
    classical latent of Paulson et al. (2017).
    """
    if features not in FEATURE_KINDS:
        raise InputError(f"features must be one of {', '.join(FEATURE_KINDS)}, got {features!r}")
    if features == "pca-stats":
        if pca is None:
            raise InputError("pca-stats features need a fitted StatisticsPCA")
        return pca_features(pca.transform(np.asarray(images, dtype=np.float64)), pca)
    if features == "latent":
        if codes is None:
            if model is None:
                raise InputError("latent features need a model (or precomputed codes)")
            codes = latent_codes(model, images)
        codes = np.asarray(codes)
        return codes.reshape(len(codes), -1).astype(np.float64)
    if latent_shape is None:
        if model is None:
            raise InputError("downsampled features need the latent shape (or a model)")
        latent_shape = model_latent_shape(model, np.shape(images[0]))
    if n_phases > 2:
        from microlatent.stats.pca import as_phases

        maps = as_phases(images, n_phases)[:, 1:]
        small = downsample(maps.reshape(-1, *maps.shape[2:]), control_shape(latent_shape))
        return small.reshape(len(maps), -1).astype(np.float64)
    small = downsample(np.asarray(images, dtype=np.float32), control_shape(latent_shape))
    return small.reshape(len(small), -1).astype(np.float64)


def pca_features(codes, pca) -> np.ndarray:
    """Regressor inputs of PCA codes (N, k): scaled so the leading component has unit variance and the
    others keep theirs in proportion (standardising each would lift noise components to its level)."""
    return np.asarray(codes, dtype=np.float64) / np.sqrt(pca.explained_variance_[0])


def model_latent_shape(model, image_shape) -> tuple:
    """The latent shape a model (or Run) gives images of ``image_shape``, at its trained size when it has one."""
    from microlatent.models.run import as_run

    run = as_run(model)
    side = (run.trained_size, run.trained_size) if run.trained_size else tuple(image_shape)
    return tuple(int(v) for v in run.model.latent_shape(side))


# --------------------------------------------------------------------------------------------
# The regressor.
# --------------------------------------------------------------------------------------------


class PropertyRegressor(RegressorMixin, BaseEstimator):
    """Standardised regressor from feature vectors to properties (scikit-learn estimator).

    Parameters
    ----------
    kind : {"mlp", "linear", "svr", "gbr"}, default "mlp"
        mlp: ``MLPRegressor(hidden_layer_sizes, activation="relu", solver="adam", alpha,
        early_stopping=True)`` (Cai et al.: hidden (1000, 1000, 100)); linear: ordinary least
        squares; svr: ``SVR(kernel="rbf", C, epsilon, gamma)`` per output (Sardeshmukh et al.);
        gbr: scikit-learn's ``HistGradientBoostingRegressor`` per output (the gradient boosting of
        PCA-of-statistics benchmarks; no ``to_torch``).
    features : {"latent", "downsampled", "pca-stats"}, default "latent"
        What the inputs are (recorded with the model; the regressor itself takes any (N, ...) array).
    hidden_layer_sizes, alpha, learning_rate_init, max_iter, n_iter_no_change : MLP settings.
    C, epsilon, gamma : SVR settings (in standardised target units: epsilon 0.05 = 5% of a std).
    random_state : int, default 0

    Inputs X (N, ...) are flattened to (N, D) and standardised; targets y (N,) or (N, k) are
    standardised per column and the predictions mapped back (``TransformedTargetRegressor``).
    ``predict`` returns (N,) if fitted on (N,), else (N, k). ``score`` is the mean R^2 over outputs.
    """

    def __init__(
        self,
        kind="mlp",
        features="latent",
        hidden_layer_sizes=(1000, 1000, 100),
        alpha=1e-4,
        learning_rate_init=1e-3,
        max_iter=500,
        n_iter_no_change=20,
        C=10.0,
        epsilon=0.05,
        gamma="scale",
        random_state=0,
    ):
        self.kind = kind
        self.features = features
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.n_iter_no_change = n_iter_no_change
        self.C = C
        self.epsilon = epsilon
        self.gamma = gamma
        self.random_state = random_state

    def _estimator(self, n_samples):
        from sklearn.linear_model import LinearRegression
        from sklearn.multioutput import MultiOutputRegressor
        from sklearn.neural_network import MLPRegressor
        from sklearn.svm import SVR

        if self.kind == "linear":
            return LinearRegression()
        if self.kind == "svr":
            return MultiOutputRegressor(SVR(kernel="rbf", C=self.C, epsilon=self.epsilon, gamma=self.gamma))
        if self.kind == "gbr":  # the PCA-of-statistics benchmark's regressor (not differentiable: no design)
            from sklearn.ensemble import HistGradientBoostingRegressor

            return MultiOutputRegressor(HistGradientBoostingRegressor(random_state=self.random_state))
        if self.kind == "mlp":
            return MLPRegressor(
                hidden_layer_sizes=tuple(self.hidden_layer_sizes),
                activation="relu",
                solver="adam",
                alpha=self.alpha,
                learning_rate_init=self.learning_rate_init,
                max_iter=self.max_iter,
                early_stopping=n_samples >= 20,
                validation_fraction=0.1,
                n_iter_no_change=self.n_iter_no_change,
                random_state=self.random_state,
            )
        raise InputError(f"kind must be one of {', '.join(REGRESSOR_KINDS)}, got {self.kind!r}")

    def fit(self, X, y):
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        if self.features not in FEATURE_KINDS:
            raise InputError(f"features must be one of {', '.join(FEATURE_KINDS)}, got {self.features!r}")
        X = self._inputs(X, fitting=True)
        y_arr = np.asarray(y, dtype=np.float64)
        if y_arr.ndim not in (1, 2) or len(y_arr) != len(X):
            raise InputError(f"y must be (N,) or (N, k) with N = {len(X)} (rows of X), got shape {y_arr.shape}")
        if not np.isfinite(X).all() or not np.isfinite(y_arr).all():
            raise InputError("X and y must be finite (NaN or inf found)")
        if len(X) < 2:
            raise InputError(f"need at least 2 samples to fit, got {len(X)}")
        self.single_output_ = y_arr.ndim == 1
        y2 = y_arr.reshape(len(y_arr), -1)
        self.n_outputs_ = y2.shape[1]
        # PCA codes keep their relative variances: standardising each component would raise the noise
        # in the trailing ones to the leading ones' level (RBF SVR on 64 PCA codes of 72 images: R^2 0.15).
        scaler = StandardScaler(with_std=self.features != "pca-stats")
        self.model_ = TransformedTargetRegressor(
            regressor=Pipeline([("scale", scaler), ("model", self._estimator(len(X)))]),
            transformer=StandardScaler(),
            check_inverse=False,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # early stopping / max_iter are the intended caps
            self.model_.fit(X, y2)
        return self

    def _inputs(self, X, fitting=False):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim < 2:
            raise InputError(f"X must be (N, D) (or (N, ...), flattened), got shape {X.shape}")
        X = X.reshape(len(X), -1)
        if fitting:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features per sample, this regressor was fitted on {self.n_features_in_}"
            )
        return X

    def predict(self, X):
        self._check_fitted()
        pred = np.asarray(self.model_.predict(self._inputs(X)), dtype=np.float64).reshape(-1, self.n_outputs_)
        return pred[:, 0] if self.single_output_ else pred

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise InputError("this PropertyRegressor is not fitted yet: call fit(X, y) first")

    def to_torch(self, dtype=None):
        """The fitted function as a torch module (N, D) -> (N, k) in the units of y (always 2-D),
        differentiable in its input: standardisation, the MLP (ReLU layers), linear map or RBF
        kernel expansion of each SVR, and the inverse target scaling. Matches :meth:`predict` to
        rounding."""
        self._check_fitted()
        if self.kind == "gbr":
            raise InputError(
                "a gradient-boosting regressor is piecewise constant, so it cannot guide a gradient "
                "search; use mlp, linear or svr"
            )
        return TorchRegressor(self, dtype=dtype)


class TorchRegressor(nn.Module):
    """Torch module computing a fitted :class:`PropertyRegressor` (see its ``to_torch``): standardisation,
    the MLP (ReLU layers), linear map or RBF kernel expansion of each SVR, and the inverse target scaling."""

    def __init__(self, regressor, dtype=None):
        super().__init__()
        dtype = dtype or torch.float32
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
        ttr = regressor.model_
        pipe = ttr.regressor_
        xs, est = pipe.named_steps["scale"], pipe.named_steps["model"]
        ys = ttr.transformer_
        self.kind = regressor.kind
        self.register_buffer("x_mean", t(xs.mean_))
        self.register_buffer("x_scale", t(xs.scale_ if xs.scale_ is not None else np.ones_like(xs.mean_)))
        self.register_buffer("y_mean", t(ys.mean_))
        self.register_buffer("y_scale", t(ys.scale_))
        if self.kind == "linear":
            coef = np.asarray(est.coef_).reshape(regressor.n_outputs_, -1)
            self.layers = nn.ModuleList([_linear(coef.T, np.ravel(est.intercept_), dtype)])
        elif self.kind == "mlp":
            self.layers = nn.ModuleList([_linear(w, b, dtype) for w, b in zip(est.coefs_, est.intercepts_)])
        else:  # svr: one RBF expansion per output
            self.sv = nn.ParameterList()
            self.dual = nn.ParameterList()
            gammas, biases = [], []
            for svr in est.estimators_:
                self.sv.append(nn.Parameter(t(svr.support_vectors_), requires_grad=False))
                self.dual.append(nn.Parameter(t(svr.dual_coef_[0]), requires_grad=False))
                gammas.append(float(svr._gamma))
                biases.append(float(np.ravel(svr.intercept_)[0]))
            self.register_buffer("gamma", t(gammas))
            self.register_buffer("bias", t(biases))

    def forward(self, x):
        x = x.reshape(len(x), -1).to(self.x_mean.dtype)
        h = (x - self.x_mean) / self.x_scale
        if self.kind == "svr":
            cols = []
            for k, (sv, dual) in enumerate(zip(self.sv, self.dual)):
                d2 = (h * h).sum(1, keepdim=True) - 2 * h @ sv.T + (sv * sv).sum(1)[None]
                cols.append(torch.exp(-self.gamma[k] * d2.clamp_min(0)) @ dual + self.bias[k])
            h = torch.stack(cols, dim=1)
        else:
            for i, layer in enumerate(self.layers):
                h = layer(h)
                if i < len(self.layers) - 1:
                    h = torch.relu(h)
        return h * self.y_scale + self.y_mean


def _linear(w, b, dtype):
    w = np.asarray(w, dtype=np.float64)
    layer = nn.Linear(w.shape[0], w.shape[1]).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w.T, dtype=dtype))
        layer.bias.copy_(torch.as_tensor(np.ravel(b), dtype=dtype))
    layer.requires_grad_(False)
    return layer
