"""MICRO2D look-alikes built from thresholded periodic Gaussian random fields: GRF and NBSA.

Both classes filter white noise in Fourier space (so the field, and the image, tile seamlessly)
and keep the ``round(volume_fraction * size**2)`` largest values as phase 1, so the volume
fraction of each image is exactly its drawn target (to one pixel).

GRF
    Noise smoothed by an anisotropic Gaussian kernel: standard deviations ``corr_length_u`` and
    ``corr_length_v`` (px, each log-uniform in 1.5-24) along axes rotated by ``angle_deg``
    (uniform 0-180, from the +x/column axis towards +y/row). Blobs from round to elongated, small
    to large; volume fraction uniform in 0.1-0.9. Spectral amplitude
    ``exp(-2 pi^2 (l_u^2 f_u^2 + l_v^2 f_v^2))`` with ``f`` in cycles/px.
NBSA
    Banded, strongly anisotropic structure with two length scales. The power spectrum is a pair
    of Gaussian bumps at ``+-1/wavelength`` along the band normal (``angle_deg``), giving
    quasi-periodic wavy lamellae ``wavelength`` px apart (log-uniform 8-48), plus a share
    ``roughness_weight`` (0-0.4) of isotropic small-scale noise (Gaussian kernel
    ``roughness_length`` 1-3 px) that roughens the band edges. ``bandwidth`` (0.15-0.4, radial
    bump width relative to ``1/wavelength``) sets how regular the spacing is; ``straightness``
    (1-6, ratio of radial to transverse bump width) how long the bands stay straight. The
    MICRO2D paper does not spell out its NBSA generator in our references; this class stands in
    for its elongated, banded members and adds oscillating 2-point statistics that GRF lacks.
"""

from __future__ import annotations

import math

import numpy as np

from microlatent.data.generators._common import (
    BATCH,
    as_range,
    check_common,
    filtered_noise,
    format_label,
    frequency_grid,
    image_rng,
    log_uniform,
    map_images,
    threshold_to_fraction,
    uniform,
)


def generate_fields(name, n, size, seed, start, draw, amplitude, cut=None):
    """Shared loop of the field classes: per-image parameters and noise, batched FFT filtering, and
    ``cut(field (B, H, W), params list) -> (B, H, W) uint8`` (default: the ``volume_fraction`` share
    of the highest values is phase 1)."""
    fy, fx = frequency_grid(size)
    cut = cut or (lambda field, params: threshold_to_fraction(field, np.array([p["volume_fraction"] for p in params])))

    def draw_one(index):
        rng = image_rng(seed, name, index)
        params = draw(rng)
        noise = rng.standard_normal((size, size), dtype=np.float32)
        label = format_label(**{"class": name}, seed=seed, index=index, **params)
        return noise, amplitude(fy, fx, params).astype(np.float32), params, label

    images = np.zeros((n, size, size), dtype=np.uint8)
    labels = []
    for first in range(0, n, BATCH):
        indices = range(start + first, start + min(n, first + BATCH))
        noise, amp, params, batch_labels = zip(*map_images(draw_one, indices))
        field = filtered_noise(np.stack(noise), np.stack(amp))
        images[first : first + len(noise)] = cut(field, params)
        labels.extend(batch_labels)
    return images, labels


def _rotated(fy, fx, angle_deg):
    theta = math.radians(angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    return fx * c + fy * s, -fx * s + fy * c


def gaussian_amplitude(fy, fx, p):
    """Spectral amplitude of an anisotropic Gaussian kernel: standard deviations ``corr_length_u``,
    ``corr_length_v`` (px) along axes rotated by ``angle_deg``."""
    fu, fv = _rotated(fy, fx, p["angle_deg"])
    return np.exp(-2 * math.pi**2 * ((p["corr_length_u"] * fu) ** 2 + (p["corr_length_v"] * fv) ** 2))


def grf(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    volume_fraction=(0.1, 0.9),
    corr_length=(1.5, 24.0),
) -> tuple[np.ndarray, list[str]]:
    """Thresholded periodic anisotropic Gaussian random fields (MICRO2D class ``GRF``).

    Parameters
    ----------
    n : int
        Number of images.
    size : int, default 256
        Image side in pixels.
    seed : int, default 0
        Seed; image ``i`` depends only on ``(seed, i)``.
    start : int, default 0
        Index of the first image.
    volume_fraction : float or (float, float), default (0.1, 0.9)
        Fraction of phase-1 pixels, uniform in the range.
    corr_length : float or (float, float), default (1.5, 24)
        Standard deviation in px of the smoothing kernel along each of its two axes, each drawn
        log-uniformly in the range.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic.
    labels : list of str
        ``class=GRF; seed; index; volume_fraction; corr_length_u; corr_length_v; angle_deg``.
    """
    name = "GRF"
    n, size, seed, start = check_common(name, n, size, seed, start)
    vf = as_range(name, "volume_fraction", volume_fraction, 0.0, 1.0)
    length = as_range(name, "corr_length", corr_length, low=0.1)

    def draw(rng):
        return {
            "volume_fraction": uniform(rng, *vf),
            "corr_length_u": log_uniform(rng, *length),
            "corr_length_v": log_uniform(rng, *length),
            "angle_deg": uniform(rng, 0.0, 180.0),
        }

    return generate_fields(name, n, size, seed, start, draw, gaussian_amplitude)


def nbsa(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    volume_fraction=(0.1, 0.9),
    wavelength=(8.0, 48.0),
    bandwidth=(0.15, 0.4),
    straightness=(1.0, 6.0),
    roughness_length=(1.0, 3.0),
    roughness_weight=(0.0, 0.4),
) -> tuple[np.ndarray, list[str]]:
    """Banded anisotropic two-scale structures (MICRO2D class ``NBSA`` look-alike).

    Parameters
    ----------
    n, size, seed, start :
        As in :func:`grf`.
    volume_fraction : float or (float, float), default (0.1, 0.9)
        Fraction of phase-1 pixels, uniform.
    wavelength : float or (float, float), default (8, 48)
        Band spacing in px, log-uniform.
    bandwidth : float or (float, float), default (0.15, 0.4)
        Radial width of the spectral bump relative to ``1 / wavelength``; small = regular spacing.
    straightness : float or (float, float), default (1, 6)
        Radial over transverse bump width; large = long straight bands.
    roughness_length : float or (float, float), default (1, 3)
        Kernel standard deviation in px of the small-scale component.
    roughness_weight : float or (float, float), default (0, 0.4)
        Share of the field variance in the small-scale component.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic.
    labels : list of str
        ``class=NBSA; seed; index; volume_fraction; wavelength; angle_deg; bandwidth;
        straightness; roughness_length; roughness_weight``.
    """
    name = "NBSA"
    n, size, seed, start = check_common(name, n, size, seed, start)
    vf = as_range(name, "volume_fraction", volume_fraction, 0.0, 1.0)
    wave = as_range(name, "wavelength", wavelength, low=2.0)
    band = as_range(name, "bandwidth", bandwidth, low=0.01)
    straight = as_range(name, "straightness", straightness, low=0.1)
    rough_len = as_range(name, "roughness_length", roughness_length, low=0.1)
    rough_w = as_range(name, "roughness_weight", roughness_weight, 0.0, 1.0)

    def draw(rng):
        return {
            "volume_fraction": uniform(rng, *vf),
            "wavelength": log_uniform(rng, *wave),
            "angle_deg": uniform(rng, 0.0, 180.0),
            "bandwidth": uniform(rng, *band),
            "straightness": uniform(rng, *straight),
            "roughness_length": uniform(rng, *rough_len),
            "roughness_weight": uniform(rng, *rough_w),
        }

    def amplitude(fy, fx, p):
        f_normal, f_along = _rotated(fy, fx, p["angle_deg"])
        peak = 1.0 / p["wavelength"]
        radial = p["bandwidth"] * peak
        transverse = radial / p["straightness"]
        bands = np.exp(-((np.abs(f_normal) - peak) ** 2) / (2 * radial**2) - f_along**2 / (2 * transverse**2))
        rough = np.exp(-4 * math.pi**2 * p["roughness_length"] ** 2 * (fy**2 + fx**2))
        # Mix powers, each normalised to unit variance, so roughness_weight is a variance share.
        power = (1 - p["roughness_weight"]) * bands / bands.sum() + p["roughness_weight"] * rough / rough.sum()
        return np.sqrt(power)

    return generate_fields(name, n, size, seed, start, draw, amplitude)
