"""Per-sample metrics of reconstructions, and the comparisons the papers draw from them.

Arrays in, arrays out: images are (N, H, W) in [0, 1] (phase-1 probabilities), one value per sample
comes back as an (N,) float64 array.

Statistics-space losses (Cai et al. 2025, eq. 7-8) are the training terms of
:mod:`microlatent.losses.terms` with one value per sample (``reduction="none"``): periodic 2-point
statistics of all ordered phase pairs, CESS with the same log floor as training. They are computed
in float64.

Volume fraction difference (Hashemi et al. 2024, B.1)::

    |vf(input) - vf(threshold(recon))| / vf(input) x 100,   threshold(v) = 1 if v >= t else 0.

Threshold mapping: Hashemi et al. draw lines dark (0) on white (1) and threshold at 0.05, so a pixel is
a line pixel only when its value is below 0.05. Our line phase is 1 (bright), i.e. our value is one
minus theirs: their "line if value < 0.05" is our "phase 1 if value > 0.95". We use ``v >= t`` with
t = 0.95 for the lines set (identical except for pixels exactly at 0.95) and t = 0.5, the unbiased
choice, for MICRO2D-like sets (see :func:`default_threshold`). We do not round to 4 decimals as they do.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special

from microlatent.errors import InputError
from microlatent.losses.terms import (
    cess_from_stats,
    entropy_from_stats,
    excess_cess_from_stats,
    js_divergence_from_stats,
    msess_from_stats,
)
from microlatent.stats import two_point

# Thresholds of the volume fraction difference, in our convention (phase 1 iff value >= t).
LINES_THRESHOLD = 0.95  # = Hashemi et al.'s 0.05 on dark lines
DEFAULT_THRESHOLD = 0.5
_STATS_BATCH = 64


def _as_batch(images, name="images"):
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3:
        raise InputError(f"{name}: expected (N, H, W) images, got shape {array.shape}")
    return array


def _pair(inputs, recons):
    inputs, recons = _as_batch(inputs, "inputs"), _as_batch(recons, "reconstructions")
    if inputs.shape != recons.shape:
        raise InputError(f"inputs {inputs.shape} and reconstructions {recons.shape} differ in shape")
    return inputs, recons


def default_threshold(class_name: str | None) -> float:
    """Threshold of the volume fraction difference for a class: 0.95 for ``lines`` (Hashemi et al.'s
    0.05 on dark lines, mapped to our bright-line convention), 0.5 otherwise."""
    return LINES_THRESHOLD if class_name is not None and class_name.lower() == "lines" else DEFAULT_THRESHOLD


def image_mse(inputs, recons):
    """Mean squared pixel error of each reconstruction against its input: (N,)."""
    inputs, recons = _pair(inputs, recons)
    return ((recons - inputs) ** 2).mean(axis=(1, 2))


def statistics_losses(inputs, recons, periodic=True, crop=None):
    """Per-sample statistics-space scores of reconstructions against inputs, float64 (N,) each:

    cess         Cai eq. 8, as trained (log floor 1e-6);
    entropy      the input's own statistics entropy H(f_in), CESS's floor;
    excess_cess  cess - entropy = mean over offsets of KL(f_in || f_recon): what differs between models;
    msess        Cai eq. 7;
    js           Jensen-Shannon divergence of the statistics (no log floor: fit for binary images).

    Statistics of all ordered phase pairs.
    """
    inputs, recons = _pair(inputs, recons)
    keys = ("cess", "entropy", "excess_cess", "msess", "js")
    parts = {k: [] for k in keys}
    for start in range(0, len(inputs), _STATS_BATCH):
        f_in = two_point(
            inputs[start : start + _STATS_BATCH], periodic=periodic, pairs="all", crop=crop, validate=False
        )
        f_rec = two_point(
            recons[start : start + _STATS_BATCH], periodic=periodic, pairs="all", crop=crop, validate=False
        )
        parts["cess"].append(cess_from_stats(f_in, f_rec, reduction="none"))
        parts["entropy"].append(entropy_from_stats(f_in, reduction="none"))
        parts["excess_cess"].append(excess_cess_from_stats(f_in, f_rec, reduction="none"))
        parts["msess"].append(msess_from_stats(f_in, f_rec, reduction="none"))
        parts["js"].append(js_divergence_from_stats(f_in, f_rec, reduction="none"))
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}


def reconstruction_metrics(inputs, recons, periodic=True, threshold=DEFAULT_THRESHOLD):
    """Per-sample scores of each reconstruction: {name: (N,)}.

    cess, log_cess, excess_cess, msess, mse: of the reconstruction as the model gives it;
    entropy: H(f_in); js_binary: Jensen-Shannon divergence between the input's statistics and those
    of the reconstruction thresholded at ``threshold`` (a number or one per sample): the statistics
    score of the binary microstructure a user would take away.
    """
    inputs, recons = _pair(inputs, recons)
    losses = statistics_losses(inputs, recons, periodic=periodic)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(inputs),))
    binary = (recons >= threshold[:, None, None]).astype(np.float64)
    return {
        "cess": losses["cess"],
        "log_cess": np.log(losses["cess"]),
        "entropy": losses["entropy"],
        "excess_cess": losses["excess_cess"],
        "msess": losses["msess"],
        "mse": image_mse(inputs, recons),
        "js_binary": statistics_losses(inputs, binary, periodic=periodic)["js"],
    }


def calibrated_excess_cess(inputs, recons, periodic=True, iterations=100):
    """Excess CESS (N,) of each 2-phase reconstruction after its best per-image calibration: the
    minimum over a > 0 and b of the excess CESS of sigmoid(a logit(p) + b), found by L-BFGS from
    a = 1, b = 0 (the images' problems are independent; their sum is minimised), never above the raw
    excess.

    a sets the contrast and b the volume fraction. What calibration removes is error in those two
    numbers; what stays is error in the structure. On the Cai CPU models most of the raw excess CESS
    was calibration: every model, MSE and finetunes alike, came down to nearly the same floor.
    """
    import torch

    inputs, recons = _pair(inputs, recons)
    out = []
    for start in range(0, len(inputs), _STATS_BATCH):
        x = torch.as_tensor(inputs[start : start + _STATS_BATCH], dtype=torch.float64)
        p = torch.as_tensor(recons[start : start + _STATS_BATCH], dtype=torch.float64)
        f_in = two_point(x, periodic=periodic, pairs="all", validate=False)
        logits = torch.logit(p.clamp(1e-6, 1 - 1e-6))
        scale = torch.zeros(len(p), 1, 1, dtype=torch.float64, requires_grad=True)
        shift = torch.zeros(len(p), 1, 1, dtype=torch.float64, requires_grad=True)

        def excess():
            q = torch.sigmoid(logits * scale.exp() + shift)
            return excess_cess_from_stats(f_in, two_point(q, periodic=periodic, pairs="all", validate=False), "none")

        raw = excess().detach()
        optimiser = torch.optim.LBFGS(
            [scale, shift], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_grad=1e-12
        )

        def closure():
            optimiser.zero_grad()
            loss = excess().sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        with torch.no_grad():
            out.append(torch.minimum(raw, excess()).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def match_volume_fraction(recons, volume_fractions, iterations=60):
    """Each 2-phase reconstruction (N, H, W) shifted in logit space, sigmoid(logit(p) + b), with the
    one b per image that makes its mean the given volume fraction (N,) (bisection; exact to ~1e-12
    for fractions strictly between 0 and 1 and p away from 0 and 1).

    The shift keeps the order of the pixels and changes nothing but the volume fraction: the excess
    CESS left after it is error in the structure and the contrast. On the Cai CPU models it removed
    all of the CESS finetunes' advantage over the MSE model (see :func:`calibrated_excess_cess`)."""
    recons = _as_batch(recons, "reconstructions")
    target = np.asarray(volume_fractions, dtype=np.float64).reshape(-1)
    if target.shape != (len(recons),) or not np.all((target >= 0) & (target <= 1)):
        raise InputError(f"volume fractions: expected {len(recons)} values in [0, 1], got {target.shape}")
    logits = scipy.special.logit(np.clip(recons, 1e-12, 1 - 1e-12))
    low, high = np.full(len(recons), -50.0), np.full(len(recons), 50.0)  # mean(sigmoid) is monotone in b

    def shifted(b):
        return scipy.special.expit(logits + b[:, None, None])

    for _ in range(iterations):
        middle = (low + high) / 2
        below = shifted(middle).mean((1, 2)) < target
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return shifted((low + high) / 2)


def matched_excess_cess(inputs, recons):
    """Excess CESS (N,) of each 2-phase reconstruction after :func:`match_volume_fraction` to its
    input's volume fraction."""
    inputs, recons = _pair(inputs, recons)
    matched = match_volume_fraction(recons, inputs.mean((1, 2)))
    return statistics_losses(inputs, matched)["excess_cess"]


def volume_fraction_difference(inputs, recons, threshold=DEFAULT_THRESHOLD):
    """Hashemi et al. B.1: |vf(input) - vf(recon >= threshold)| / vf(input) x 100, per sample (N,).

    ``threshold`` is a number or one per sample. The input's volume fraction is its mean (the phase-1
    pixel count over the pixel count for a binary input). NaN where the input has no phase 1.
    """
    inputs, recons = _pair(inputs, recons)
    threshold = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(inputs),))
    vf_in = inputs.mean(axis=(1, 2))
    vf_thr = (recons >= threshold[:, None, None]).mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(vf_in > 0, np.abs(vf_in - vf_thr) / vf_in * 100.0, np.nan)


def win_matrix(losses: dict):
    """Cai et al. Fig. 11: share of samples on which model A has a strictly lower loss than model B.

    losses: {model: (N,) per-sample losses, the same samples in the same order for every model}.
    Returns (labels, (M, M) float64 matrix) with matrix[a, b] = mean(loss_a < loss_b) over samples
    where both are finite; ties count for neither; the diagonal is NaN.
    """
    labels = list(losses)
    values = [np.asarray(losses[k], dtype=np.float64) for k in labels]
    if len({v.shape for v in values}) > 1:
        raise InputError("win matrix: every model needs one loss per sample of the same samples")
    matrix = np.full((len(labels), len(labels)), np.nan)
    for a, la in enumerate(values):
        for b, lb in enumerate(values):
            if a != b:
                valid = np.isfinite(la) & np.isfinite(lb)
                matrix[a, b] = float(np.mean(la[valid] < lb[valid])) if valid.any() else np.nan
    return labels, matrix


def summarize(values) -> dict:
    """Summary of per-sample values, ignoring NaN: n (finite values), mean, std, median, quantiles
    q05 q25 q75 q95, min, max. NaN statistics (JSON null) when there are no finite values."""
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    keys = ("mean", "std", "median", "q05", "q25", "q75", "q95", "min", "max")
    if finite.size == 0:
        return {"n": 0, **{k: math.nan for k in keys}}
    q05, q25, median, q75, q95 = np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "n": int(finite.size),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(median),
        "q05": float(q05),
        "q25": float(q25),
        "q75": float(q75),
        "q95": float(q95),
        "min": float(finite.min()),
        "max": float(finite.max()),
    }


# ---------------------------------------------------------------------------------------------------
# Statistics space: features, nearest neighbours, mean distance to a set (Hashemi et al. B.3, B).
# ---------------------------------------------------------------------------------------------------


def autocorrelation_features(images, periodic=True):
    """Flattened centred autocorrelation f(1, 1 | r) of each image: (N, H' W') float64 (Hashemi et
    al.'s statistics space: the autocorrelation of the line phase, periodic)."""
    images = _as_batch(images)
    parts = [
        two_point(images[s : s + _STATS_BATCH], periodic=periodic, pairs=[(1, 1)], validate=False)[:, 0]
        for s in range(0, len(images), _STATS_BATCH)
    ]
    return np.concatenate(parts).reshape(len(images), -1) if parts else np.zeros((0, 0))


def flatten(images):
    """(N, H, W) -> (N, H W) float64: the image space as feature vectors."""
    images = _as_batch(images)
    return images.reshape(len(images), -1)


def _chunks(references):
    if isinstance(references, np.ndarray):
        references = [references]
    for chunk in references:
        chunk = np.asarray(chunk, dtype=np.float64)
        yield chunk.reshape(len(chunk), -1)


class NearestSearch:
    """Nearest reference vector (least mean squared difference) of each query, over references fed in
    chunks with :meth:`update` (for sets larger than memory); references are numbered in the order
    fed, ties go to the lowest number. :meth:`result` -> ((Q,) int64 indices, (Q,) float64 MSEs)."""

    def __init__(self, queries):
        queries = np.asarray(queries, dtype=np.float64)
        self.queries = queries.reshape(len(queries), -1)
        self.norms = (self.queries**2).sum(1)
        self.best = np.full(len(self.queries), np.inf)
        self.index = np.full(len(self.queries), -1, dtype=np.int64)
        self.seen = 0

    def update(self, chunk):
        chunk = np.asarray(chunk, dtype=np.float64)
        chunk = chunk.reshape(len(chunk), -1)
        if len(chunk) == 0:
            return self
        if chunk.shape[1] != self.queries.shape[1]:
            raise InputError(
                f"nearest neighbours: queries have {self.queries.shape[1]} features, references {chunk.shape[1]}"
            )
        distances = (self.norms[:, None] - 2 * self.queries @ chunk.T + (chunk**2).sum(1)[None, :]) / chunk.shape[1]
        local = distances.argmin(1)
        value = distances[np.arange(len(self.queries)), local]
        better = value < self.best
        self.best[better], self.index[better] = value[better], local[better] + self.seen
        self.seen += len(chunk)
        return self

    def result(self):
        if self.seen == 0:
            raise InputError("nearest neighbours: no reference vectors")
        return self.index.copy(), np.maximum(self.best, 0.0)


def nearest_neighbours(queries, references):
    """Index into ``references`` of each query's nearest vector (least mean squared difference) and
    that mean squared difference. references: an (R, D) array or an iterable of (r, D) chunks, indexed
    in order. Ties go to the lowest index. Returns ((Q,) int64, (Q,) float64)."""
    search = NearestSearch(queries)
    for chunk in _chunks(references):
        search.update(chunk)
    return search.result()


class SetMoments:
    """Running mean vector m and mean squared norm q (per feature) of a set of vectors, so that the mean
    over the set of the MSE between x and each member is exact without pairwise distances:

        mean_j mean_d (x_d - s_jd)^2 = mean_d x_d^2 - 2 mean_d x_d m_d + q.
    """

    def __init__(self):
        self.count, self.total, self.total_sq = 0, None, 0.0

    def update(self, vectors):
        vectors = np.asarray(vectors, dtype=np.float64)
        vectors = vectors.reshape(len(vectors), -1)
        if len(vectors) == 0:
            return self
        self.total = vectors.sum(0) if self.total is None else self.total + vectors.sum(0)
        self.total_sq += float((vectors**2).mean(1).sum())
        self.count += len(vectors)
        return self

    def mean_mse(self, queries):
        """(Q,) mean over the set of the MSE between each query and each member."""
        if not self.count:
            raise InputError("mean MSE to a set: the set is empty")
        queries = np.asarray(queries, dtype=np.float64)
        queries = queries.reshape(len(queries), -1)
        mean = self.total / self.count
        if queries.shape[1] != mean.shape[0]:
            raise InputError(f"mean MSE to a set: queries have {queries.shape[1]} features, the set {mean.shape[0]}")
        value = (queries**2).mean(1) - 2 * (queries @ mean) / queries.shape[1] + self.total_sq / self.count
        return np.maximum(value, 0.0)


def mean_mse_to_set(queries, references):
    """Hashemi et al.'s overfitting measure: for each query, the mean of its MSE to every member of
    ``references`` ((R, D) array or iterable of chunks). (Q,) float64."""
    moments = SetMoments()
    for chunk in _chunks(references):
        moments.update(chunk)
    return moments.mean_mse(queries)


# Property prediction scores.


def _two_d(y, name="y") -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise InputError(f"{name} must be (N,) or (N, k), got shape {y.shape}")
    return y


def mape(y_true, y_pred) -> np.ndarray | float:
    """Mean absolute percentage error per column, in percent: ``100 mean_i |y_i - p_i| / |y_i|``.

    (scikit-learn's ``mean_absolute_percentage_error`` gives the same as a fraction.) Returns (k,)
    for (N, k) inputs, a float for (N,) inputs. True values of 0 raise InputError.
    """
    t, p = _two_d(y_true, "y_true"), _two_d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if (t == 0).any():
        raise InputError("MAPE is undefined for true values of 0")
    out = 100.0 * np.mean(np.abs(t - p) / np.abs(t), axis=0)
    return float(out[0]) if np.ndim(y_true) == 1 else out


def r2_per_property(y_true, y_pred) -> np.ndarray | float:
    """Coefficient of determination per column: ``1 - SS_res / SS_tot`` (sklearn's r2_score,
    multioutput="raw_values"). 0 = as good as predicting the mean of y_true."""
    from sklearn.metrics import r2_score

    t, p = _two_d(y_true, "y_true"), _two_d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    out = np.asarray(r2_score(t, p, multioutput="raw_values"), dtype=np.float64)
    return float(out[0]) if np.ndim(y_true) == 1 else out
