"""MICRO2D look-alikes made of inclusions: AngEllipse, RandomEllipse, VoidSmall, VoidSmallBig.

All four place shapes on a periodic square (shapes crossing an edge wrap round), rasterised
exactly at pixel centres (see :func:`raster_ellipses`). Centres are stratified: the square is cut
into a grid of about as many cells as shapes and each chosen cell holds one uniform centre, so
shapes clump less than Poisson points would (fewer overlaps, "non-overlapping-ish") while the
arrangement stays irregular. Overlaps are allowed; the number of shapes is set from the target
fraction ``phi`` with the Boolean-model relation ``phi = 1 - exp(-N <area> / size^2)``, so the
realised fraction lands near (slightly above, since stratification overlaps less) the target.
Labels carry the drawn ``target_...`` fraction and the measured ``volume_fraction`` of phase 1.

AngEllipse
    Ellipses of one shape and one common angle (``angle_deg`` uniform 0-180): semi-major axis
    ``semi_major`` log-uniform 4-32 px, ``aspect_ratio`` 1.5-6 (semi-minor at least 1.5 px),
    sizes spread by a per-ellipse factor ``exp(size_spread * z)``, ``size_spread`` 0-0.3.
    Phase 1 = ellipses, target fraction 0.1-0.7.
RandomEllipse
    As AngEllipse but every ellipse has its own uniform random angle (aspect ratio 1.2-6).
VoidSmall
    Circular voids of one radius (``void_radius`` 1.5-6 px) in a matrix. Phase 0 = voids,
    phase 1 = matrix; target void fraction 0.05-0.5, so phase-1 fraction 0.5-0.95.
VoidSmallBig
    Two void populations: small (``small_radius`` 1.5-5 px) and big (``big_radius`` 8-32 px, at
    least 3 x small), the big ones holding a share ``big_share`` (0.2-0.8) of the void area.
    Phase 0 = voids; target void fraction 0.1-0.6.
"""

from __future__ import annotations

import math

import numpy as np

from microlatent.data.generators._common import (
    BATCH,
    as_range,
    check_common,
    format_label,
    image_rng,
    log_uniform,
    raster_ellipses,
    stratified_centres,
    uniform,
)


def _boolean_count(fraction: float, mean_area: float, size: int) -> int:
    """Number of shapes whose Boolean-model union covers ``fraction`` of the square on average."""
    return int(round(-math.log1p(-min(fraction, 0.999)) * size * size / mean_area))


def _generate(name, n, size, seed, start, draw, phase_inside):
    """Shared loop: per-image shapes, batched rasterisation, measured fraction in the label.

    ``draw(rng, size)`` returns (label parameters, cy, cx, a, b, theta) for one image.
    ``phase_inside`` is the value written inside the shapes (1 for particles, 0 for voids).
    """
    images = np.zeros((n, size, size), dtype=np.uint8)
    labels = []
    for first in range(0, n, BATCH):
        count = min(BATCH, n - first)
        shapes, params = [], []
        for b in range(count):
            index = start + first + b
            p, *ellipses = draw(image_rng(seed, name, index), size)
            params.append((index, p))
            shapes.append([np.full(len(ellipses[0]), b)] + ellipses)
        image, cy, cx, a, b_axis, theta = (np.concatenate(parts) for parts in zip(*shapes))
        inside = raster_ellipses(count, size, size, image, cy, cx, a, b_axis, theta, periodic=True)
        block = inside if phase_inside == 1 else ~inside
        images[first : first + count] = block
        fractions = block.mean(axis=(1, 2))
        for (index, p), fraction in zip(params, fractions):
            labels.append(format_label(**{"class": name}, seed=seed, index=index, volume_fraction=fraction, **p))
    return images, labels


def _ellipses(rng, size, count, semi_major, semi_minor, spread, angles):
    centres = stratified_centres(rng, count, size)
    scale = np.exp(spread * rng.standard_normal(count))
    return centres[:, 0], centres[:, 1], semi_major * scale, semi_minor * scale, angles


def _ellipse_params(name, volume_fraction, semi_major, aspect_ratio, size_spread):
    return (
        as_range(name, "volume_fraction", volume_fraction, 0.0, 0.999),
        as_range(name, "semi_major", semi_major, low=0.5),
        as_range(name, "aspect_ratio", aspect_ratio, low=1.0),
        as_range(name, "size_spread", size_spread, low=0.0),
    )


def _draw_ellipse_shape(rng, vf, major, aspect, spread):
    target = uniform(rng, *vf)
    a = log_uniform(rng, *major)
    # Keep the minor axis at least 1.5 px so thin ellipses do not break into dotted lines.
    ratio = min(uniform(rng, *aspect), max(a / 1.5, 1.0))
    s = uniform(rng, *spread)
    return target, a, a / ratio, ratio, s


def ang_ellipse(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    volume_fraction=(0.1, 0.7),
    semi_major=(4.0, 32.0),
    aspect_ratio=(1.5, 6.0),
    size_spread=(0.0, 0.3),
) -> tuple[np.ndarray, list[str]]:
    """Aligned ellipses: one shape and one angle per image (MICRO2D class ``AngEllipse``).

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
    volume_fraction : float or (float, float), default (0.1, 0.7)
        Target ellipse (phase-1) fraction, uniform.
    semi_major : float or (float, float), default (4, 32)
        Semi-major axis in px, log-uniform.
    aspect_ratio : float or (float, float), default (1.5, 6)
        Semi-major over semi-minor, uniform (capped so the semi-minor axis is >= 1.5 px).
    size_spread : float or (float, float), default (0, 0.3)
        Standard deviation of the log of the per-ellipse size factor.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic; 1 = ellipse.
    labels : list of str
        ``class=AngEllipse; seed; index; volume_fraction (measured); target_volume_fraction;
        n_ellipses; semi_major; semi_minor; aspect_ratio; size_spread; angle_deg``.
    """
    name = "AngEllipse"
    n, size, seed, start = check_common(name, n, size, seed, start)
    vf, major, aspect, spread = _ellipse_params(name, volume_fraction, semi_major, aspect_ratio, size_spread)

    def draw(rng, size):
        target, a, b, ratio, s = _draw_ellipse_shape(rng, vf, major, aspect, spread)
        angle = uniform(rng, 0.0, 180.0)
        count = _boolean_count(target, math.pi * a * b * math.exp(2 * s * s), size)
        shapes = _ellipses(rng, size, count, a, b, s, np.full(count, math.radians(angle)))
        params = dict(
            target_volume_fraction=target,
            n_ellipses=count,
            semi_major=a,
            semi_minor=b,
            aspect_ratio=ratio,
            size_spread=s,
            angle_deg=angle,
        )
        return (params, *shapes)

    return _generate(name, n, size, seed, start, draw, phase_inside=1)


def random_ellipse(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    volume_fraction=(0.1, 0.7),
    semi_major=(4.0, 32.0),
    aspect_ratio=(1.2, 6.0),
    size_spread=(0.0, 0.3),
) -> tuple[np.ndarray, list[str]]:
    """Ellipses of one shape per image, each at its own random angle (class ``RandomEllipse``).

    Parameters are those of :func:`ang_ellipse`; every ellipse's angle is uniform in [0, 180).

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic; 1 = ellipse.
    labels : list of str
        ``class=RandomEllipse; seed; index; volume_fraction (measured); target_volume_fraction;
        n_ellipses; semi_major; semi_minor; aspect_ratio; size_spread``.
    """
    name = "RandomEllipse"
    n, size, seed, start = check_common(name, n, size, seed, start)
    vf, major, aspect, spread = _ellipse_params(name, volume_fraction, semi_major, aspect_ratio, size_spread)

    def draw(rng, size):
        target, a, b, ratio, s = _draw_ellipse_shape(rng, vf, major, aspect, spread)
        count = _boolean_count(target, math.pi * a * b * math.exp(2 * s * s), size)
        shapes = _ellipses(rng, size, count, a, b, s, rng.uniform(0, math.pi, count))
        params = dict(
            target_volume_fraction=target,
            n_ellipses=count,
            semi_major=a,
            semi_minor=b,
            aspect_ratio=ratio,
            size_spread=s,
        )
        return (params, *shapes)

    return _generate(name, n, size, seed, start, draw, phase_inside=1)


def void_small(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    void_fraction=(0.05, 0.5),
    void_radius=(1.5, 6.0),
) -> tuple[np.ndarray, list[str]]:
    """Small circular voids of one radius in a matrix (MICRO2D class ``VoidSmall``).

    Parameters
    ----------
    n, size, seed, start :
        As in :func:`ang_ellipse`.
    void_fraction : float or (float, float), default (0.05, 0.5)
        Target void (phase-0) fraction, uniform.
    void_radius : float or (float, float), default (1.5, 6)
        Void radius in px, uniform; one radius per image.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic; 0 = void, 1 = matrix.
    labels : list of str
        ``class=VoidSmall; seed; index; volume_fraction (measured, phase 1); target_void_fraction;
        n_voids; void_radius``.
    """
    name = "VoidSmall"
    n, size, seed, start = check_common(name, n, size, seed, start)
    phi = as_range(name, "void_fraction", void_fraction, 0.0, 0.999)
    radius = as_range(name, "void_radius", void_radius, low=0.5)

    def draw(rng, size):
        target = uniform(rng, *phi)
        r = uniform(rng, *radius)
        count = _boolean_count(target, math.pi * r * r, size)
        shapes = _ellipses(rng, size, count, r, r, 0.0, np.zeros(count))
        return (dict(target_void_fraction=target, n_voids=count, void_radius=r), *shapes)

    return _generate(name, n, size, seed, start, draw, phase_inside=0)


def void_small_big(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    void_fraction=(0.1, 0.6),
    small_radius=(1.5, 5.0),
    big_radius=(8.0, 32.0),
    big_share=(0.2, 0.8),
) -> tuple[np.ndarray, list[str]]:
    """Bimodal circular voids: many small and a few big ones (MICRO2D class ``VoidSmallBig``).

    Parameters
    ----------
    n, size, seed, start :
        As in :func:`ang_ellipse`.
    void_fraction : float or (float, float), default (0.1, 0.6)
        Target void (phase-0) fraction, uniform.
    small_radius : float or (float, float), default (1.5, 5)
        Radius of the small voids in px, uniform.
    big_radius : float or (float, float), default (8, 32)
        Radius of the big voids in px, log-uniform, raised to at least 3 x the small radius.
    big_share : float or (float, float), default (0.2, 0.8)
        Share of the void area given to big voids.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic; 0 = void, 1 = matrix.
    labels : list of str
        ``class=VoidSmallBig; seed; index; volume_fraction (measured, phase 1);
        target_void_fraction; big_share; n_small; n_big; small_radius; big_radius``.
    """
    name = "VoidSmallBig"
    n, size, seed, start = check_common(name, n, size, seed, start)
    phi = as_range(name, "void_fraction", void_fraction, 0.0, 0.999)
    small = as_range(name, "small_radius", small_radius, low=0.5)
    big = as_range(name, "big_radius", big_radius, low=0.5)
    share_range = as_range(name, "big_share", big_share, 0.0, 1.0)

    def draw(rng, size):
        target = uniform(rng, *phi)
        r_small = uniform(rng, *small)
        r_big = max(log_uniform(rng, *big), 3 * r_small)
        share = uniform(rng, *share_range)
        # Split the Boolean "intensity" -log(1 - phi) between the two populations by area share.
        total = -math.log1p(-min(target, 0.999)) * size * size
        n_big = max(1, int(round(share * total / (math.pi * r_big**2)))) if share > 0 else 0
        n_small = int(round((1 - share) * total / (math.pi * r_small**2)))
        big_voids = _ellipses(rng, size, n_big, r_big, r_big, 0.0, np.zeros(n_big))
        small_voids = _ellipses(rng, size, n_small, r_small, r_small, 0.0, np.zeros(n_small))
        shapes = [np.concatenate(pair) for pair in zip(big_voids, small_voids)]
        params = dict(
            target_void_fraction=target,
            big_share=share,
            n_small=n_small,
            n_big=n_big,
            small_radius=r_small,
            big_radius=r_big,
        )
        return (params, *shapes)

    return _generate(name, n, size, seed, start, draw, phase_inside=0)
