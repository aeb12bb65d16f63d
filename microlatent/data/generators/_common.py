"""Shared pieces of the generators: random streams, label strings, argument checks, rasterisers.

Every generator draws image ``i`` of class ``C`` from its own NumPy ``Generator`` seeded by
``(seed, crc32(C), i)``. An image therefore depends only on (seed, class, index): generating 10 or
10,000 images, in one call or in batches, gives identical bytes for the images they share, and
different classes never share a stream.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import scipy.fft

from microlatent.errors import InputError

# Images are produced in batches of this many, so temporaries stay small (a few tens of MB) while
# the per-call overhead of NumPy is spread over many images.
BATCH = 64


def image_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of class ``class_name`` for ``seed``."""
    return np.random.default_rng([int(seed), zlib.crc32(class_name.encode()), int(index)])


def _workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8))


def map_images(function, indices) -> list:
    """``[function(i) for i in indices]``, on a thread per core when there are several images.

    Per-image work here is NumPy calls on arrays of ~10^4-10^5 elements and random draws, which
    release the GIL, so threads use every core. Each image has its own random stream, so the
    results do not depend on the scheduling.
    """
    indices = list(indices)
    workers = _workers()
    if workers == 1 or len(indices) < 8:
        return [function(i) for i in indices]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, indices))


# --------------------------------------------------------------------------------------------
# Labels: "key=value; key=value" with ints, floats, strings and [a,b,c] lists.
# --------------------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?\d+")


def _format_value(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.6g}"
    text = str(value)
    if any(c in text for c in ";=[]\n"):
        raise InputError(f"label value {text!r} may not contain ';', '=', '[', ']' or a newline")
    return text


def format_label(**params) -> str:
    """Join ``key=value`` pairs with ``"; "``; lists become ``[a,b,c]``, floats keep 6 digits."""
    return "; ".join(f"{key}={_format_value(value)}" for key, value in params.items())


def parse_value(text: str):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [parse_value(part) for part in inner.split(",")] if inner else []
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_label(label: str) -> dict:
    """Parse a ``key=value; key=value`` label string into a dict.

    Values become ``int`` or ``float`` where they read as numbers, ``list`` for ``[a,b,c]`` and
    ``str`` otherwise. A part without ``=`` (as in the free-text MICRO2D labels) is kept under the
    key ``"text"`` (joined with ``"; "`` if there are several).

    Parameters
    ----------
    label : str or bytes

    Returns
    -------
    dict
    """
    if isinstance(label, bytes):
        label = label.decode("utf-8")
    out: dict = {}
    free = []
    for part in str(label).split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = parse_value(value)
        else:
            free.append(part.strip())
    if free:
        out["text"] = "; ".join(free)
    return out


# --------------------------------------------------------------------------------------------
# Argument checks (one-line InputError messages).
# --------------------------------------------------------------------------------------------


def check_common(name: str, n, size, seed, start) -> tuple[int, int, int, int]:
    """Validate the arguments every generator takes and return them as ints."""
    for label, value, low in (("n", n, 0), ("size", size, 8), ("seed", seed, 0), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise InputError(f"{name}: {label} must be an integer >= {low}, got {value!r}")
    return int(n), int(size), int(seed), int(start)


def as_range(name: str, key: str, value, low=None, high=None, integer=False) -> tuple:
    """A ``(lo, hi)`` range from a scalar or a pair, checked against ``[low, high]``."""
    pair = value if isinstance(value, (list, tuple, np.ndarray)) else (value, value)
    if len(pair) != 2:
        raise InputError(f"{name}: {key} must be a number or a (min, max) pair, got {value!r}")
    try:
        lo, hi = float(pair[0]), float(pair[1])
    except (TypeError, ValueError):
        raise InputError(f"{name}: {key} must be numeric, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{name}: {key} must be finite, got {value!r}")
    if integer:
        if lo != int(lo) or hi != int(hi):
            raise InputError(f"{name}: {key} must be integers, got {value!r}")
        lo, hi = int(lo), int(hi)
    if lo > hi or (low is not None and lo < low) or (high is not None and hi > high):
        raise InputError(f"{name}: {key} must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return lo, hi


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    # Length scales spread evenly over orders of magnitude, so small features are not rare.
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


# --------------------------------------------------------------------------------------------
# Periodic Gaussian random fields.
# --------------------------------------------------------------------------------------------


def frequency_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles per pixel) of ``rfft2`` on a ``size x size`` image: fy (size, 1), fx (1, size//2+1)."""
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    return fy, fx


def filtered_noise(noise: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """Circular (periodic) filtering of white noise by a spectral amplitude.

    noise : (B, H, W) float32; amplitude : (B, H, W//2+1) float32. Returns (B, H, W) float32.
    Working in Fourier space makes the field exactly periodic: it tiles without seams.
    """
    spectrum = scipy.fft.rfft2(noise, workers=-1)
    spectrum *= amplitude
    return scipy.fft.irfft2(spectrum, s=noise.shape[-2:], workers=-1)


def threshold_to_fraction(field: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Binary images with exactly ``round(f * H * W)`` ones at the largest field values.

    field : (B, H, W); fractions : (B,) in [0, 1]. Returns (B, H, W) uint8.
    """
    batch, height, width = field.shape
    flat = field.reshape(batch, -1)
    out = np.zeros(flat.shape, dtype=np.uint8)
    for b in range(batch):
        ones = int(round(fractions[b] * flat.shape[1]))
        if ones >= flat.shape[1]:
            out[b] = 1
        elif ones > 0:
            # np.partition is O(pixels), several times cheaper than a full sort.
            cut = np.partition(flat[b], flat.shape[1] - ones - 1)[flat.shape[1] - ones - 1]
            out[b] = flat[b] > cut
    return out.reshape(batch, height, width)


# --------------------------------------------------------------------------------------------
# Ellipse rasteriser: exact pixel-centre sampling, one scanline interval per ellipse row.
# --------------------------------------------------------------------------------------------


def raster_ellipses(
    n_images: int,
    height: int,
    width: int,
    image: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    periodic: bool = True,
) -> np.ndarray:
    """Union of filled ellipses, rasterised at pixel centres.

    Pixel ``(i, j)`` has its centre at ``(y, x) = (i, j)`` and belongs to an ellipse when
    ``u^2/a^2 + v^2/b^2 <= 1`` with ``(u, v)`` its offset from the centre rotated by ``theta``.
    Each ellipse row is an interval of columns, solved from a quadratic; intervals are painted with
    a difference array (+1 at the start, -1 after the end) and a cumulative sum, so the cost is one
    pass over the image plus one entry per ellipse row, whatever the number of ellipses.

    Parameters
    ----------
    n_images, height, width : int
        Output shape.
    image : (E,) int
        Which image each ellipse goes to.
    cy, cx : (E,) float
        Centres in pixels (row, column).
    a, b : (E,) float
        Semi-axes in pixels; ``a`` lies along ``theta``.
    theta : (E,) float
        Angle of the ``a`` axis in radians, from the +x (column) axis towards +y (row).
    periodic : bool
        Wrap ellipses that cross an edge to the other side (else clip them).

    Returns
    -------
    (n_images, height, width) bool
    """
    image = np.asarray(image, dtype=np.int64)
    order = np.argsort(image, kind="stable")
    arrays = [np.asarray(v, dtype=np.float64)[order] for v in (cy, cx, a, b, theta)]
    image = image[order]
    out = np.empty((n_images, height, width), dtype=bool)
    # A few images at a time: the difference array then stays in cache instead of being a fresh
    # multi-megabyte allocation per batch (page faults cost more than the arithmetic here).
    step = 4
    bounds = np.searchsorted(image, np.arange(0, n_images + step, step))

    def paint(k):
        first = k * step
        count = min(step, n_images - first)
        sel = slice(bounds[k], bounds[k + 1])
        out[first : first + count] = _raster_chunk(
            count, height, width, image[sel] - first, *(v[sel] for v in arrays), periodic
        )

    map_images(paint, range(math.ceil(n_images / step)))
    return out


def _raster_chunk(
    n_images: int,
    height: int,
    width: int,
    image: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    periodic: bool = True,
) -> np.ndarray:
    image = np.asarray(image, dtype=np.int64)
    cy, cx, a, b, theta = (np.asarray(v, dtype=np.float64) for v in (cy, cx, a, b, theta))
    cos, sin = np.cos(theta), np.sin(theta)
    qa = cos**2 / a**2 + sin**2 / b**2
    qb = 2 * cos * sin * (1 / a**2 - 1 / b**2)
    qc = sin**2 / a**2 + cos**2 / b**2
    half_height = np.sqrt(a**2 * sin**2 + b**2 * cos**2)
    y_lo = np.ceil(cy - half_height).astype(np.int64)
    y_hi = np.floor(cy + half_height).astype(np.int64)
    if not periodic:
        y_lo, y_hi = np.maximum(y_lo, 0), np.minimum(y_hi, height - 1)
    rows = np.maximum(y_hi - y_lo + 1, 0)
    if periodic:
        # An ellipse taller than the image would paint rows twice; the union is unchanged.
        rows = np.minimum(rows, height + 1)

    ell = np.repeat(np.arange(len(rows)), rows)
    first = np.repeat(np.cumsum(rows) - rows, rows)
    y = y_lo[ell] + (np.arange(len(ell)) - first)
    dy = y - cy[ell]
    disc = (qb[ell] * dy) ** 2 - 4 * qa[ell] * (qc[ell] * dy**2 - 1)
    root = np.sqrt(np.maximum(disc, 0.0))
    lo = (-qb[ell] * dy - root) / (2 * qa[ell])
    hi = (-qb[ell] * dy + root) / (2 * qa[ell])
    # Tiny tolerance so pixels exactly on the boundary count as inside despite rounding.
    x0 = np.ceil(cx[ell] + lo - 1e-9).astype(np.int64)
    x1 = np.floor(cx[ell] + hi + 1e-9).astype(np.int64)
    if not periodic:
        x0, x1 = np.maximum(x0, 0), np.minimum(x1, width - 1)
    keep = (disc >= 0) & (x1 >= x0)
    ell, y, x0, x1 = ell[keep], y[keep], x0[keep], x1[keep]

    stride = width + 1  # one spare column absorbs the -1 of intervals that end at the edge
    base = (image[ell] * height + np.mod(y, height)) * stride
    length = np.minimum(x1 - x0 + 1, width)
    start = np.mod(x0, width)
    end = start + length
    plus = [base + start]
    minus = [base + np.minimum(end, width)]
    wrapped = end > width
    plus.append(base[wrapped])
    minus.append(base[wrapped] + end[wrapped] - width)
    total = n_images * height * stride
    diff = np.bincount(np.concatenate(plus), minlength=total).astype(np.int32)
    diff -= np.bincount(np.concatenate(minus), minlength=total).astype(np.int32)
    cover = np.cumsum(diff.reshape(n_images, height, stride), axis=2, dtype=np.int32)
    return cover[:, :, :width] > 0


def stratified_centres(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` points on a periodic ``size x size`` square, at most one per cell of a grid.

    The square is cut into ``g x g`` cells with ``g = ceil(sqrt(count))``; ``count`` distinct
    cells are picked at random and each gets one uniform point. This keeps the points from
    clumping (fewer overlaps than Poisson points) while leaving their positions random.
    Returns (count, 2) float (row, column).
    """
    if count == 0:
        return np.zeros((0, 2))
    grid = math.ceil(math.sqrt(count))
    cells = rng.choice(grid * grid, size=count, replace=False)
    corner = np.stack([cells // grid, cells % grid], axis=1)
    return (corner + rng.random((count, 2))) * (size / grid)
