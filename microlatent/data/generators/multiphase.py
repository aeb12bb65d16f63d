"""Three-phase microstructures, so tests and demos of n-phase work need no outside data.

GRF3
    A periodic anisotropic Gaussian random field (as ``GRF``) cut at two levels: the lowest
    ``fraction_0`` of the pixels are phase 0, the highest ``fraction_2`` phase 2, the rest phase 1.
    Phase 1 therefore always lies between 0 and 2, like the shell around a core or a
    transformation rim (a typical duplex/triplex morphology).
Voronoi3
    Periodic Voronoi grains (as ``VoronoiMedium``), each grain given phase 0, 1 or 2 so that the
    shares of grains match drawn targets: three phases of the same morphology, touching anywhere.

Both draw each phase's target fraction uniformly in ``fraction_range`` and normalise the three to sum
to one; images are (n, size, size) uint8 holding 0, 1 and 2.
"""

from __future__ import annotations

import numpy as np

from microlatent.data.generators._common import (
    as_range,
    check_common,
    format_label,
    image_rng,
    log_uniform,
    map_images,
    uniform,
)
from microlatent.data.generators.fields import gaussian_amplitude, generate_fields
from microlatent.data.generators.voronoi import tessellate

N_PHASES = 3


def _fractions(rng, low, high) -> np.ndarray:
    f = np.array([uniform(rng, low, high) for _ in range(N_PHASES)])
    return f / f.sum()


def grf3(
    n: int,
    size: int = 128,
    seed: int = 0,
    start: int = 0,
    *,
    fraction_range=(0.2, 0.6),
    corr_length=(2.0, 16.0),
) -> tuple[np.ndarray, list[str]]:
    """Three-phase Gaussian random fields cut at two levels (class ``GRF3``).

    Parameters
    ----------
    n, size, seed, start : as every generator (image ``i`` depends only on ``(seed, i)``).
    fraction_range : (float, float), default (0.2, 0.6)
        Each phase's target share is drawn uniformly here; the three are then normalised to sum 1.
    corr_length : (float, float), default (2, 16)
        Standard deviations in px of the smoothing kernel along its two axes, log-uniform.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1/2, periodic; exact pixel counts per phase (to one pixel).
    labels : ``class=GRF3; seed; index; fraction_0; fraction_1; fraction_2; corr_length_u; ...``.
    """
    name = "GRF3"
    n, size, seed, start = check_common(name, n, size, seed, start)
    low, high = as_range(name, "fraction_range", fraction_range, 0.0, 1.0)
    length = as_range(name, "corr_length", corr_length, low=0.1)

    def draw(rng):
        f = _fractions(rng, low, high)
        return {
            **{f"fraction_{k}": float(f[k]) for k in range(N_PHASES)},
            "corr_length_u": log_uniform(rng, *length),
            "corr_length_v": log_uniform(rng, *length),
            "angle_deg": uniform(rng, 0.0, 180.0),
        }

    def cut(field, params):
        """The lowest fraction_0 share of each field -> 0, the highest fraction_2 -> 2, the rest 1."""
        out = np.zeros(field.shape, dtype=np.uint8)
        for b, (values, p) in enumerate(zip(field.reshape(len(field), -1), params)):
            order = np.argsort(values, kind="stable")
            cuts = np.round(np.cumsum([p["fraction_0"], p["fraction_1"]]) * values.size).astype(int)
            phase = out[b].reshape(-1)
            phase[order[cuts[0] : cuts[1]]] = 1
            phase[order[cuts[1] :]] = 2
        return out

    return generate_fields(name, n, size, seed, start, draw, gaussian_amplitude, cut)


def voronoi3(
    n: int,
    size: int = 128,
    seed: int = 0,
    start: int = 0,
    *,
    grain_size=(12.0, 32.0),
    fraction_range=(0.2, 0.6),
    jitter=(0.5, 1.0),
) -> tuple[np.ndarray, list[str]]:
    """Periodic Voronoi grains of three phases (class ``Voronoi3``).

    Parameters
    ----------
    n, size, seed, start : as every generator.
    grain_size : (float, float), default (12, 32)
        Lattice cell side in px (mean grain diameter), log-uniform.
    fraction_range : (float, float), default (0.2, 0.6)
        Target share of each phase's grains, uniform, normalised to sum 1.
    jitter : (float, float), default (0.5, 1)
        Seed freedom within its cell (0: a regular lattice).

    Returns
    -------
    images : (n, size, size) uint8 of 0/1/2, periodic.
    labels : ``class=Voronoi3; seed; index; fraction_0..2 (of pixels); n_grains; grain_size; jitter``.
    """
    name = "Voronoi3"
    n, size, seed, start = check_common(name, n, size, seed, start)
    grain = as_range(name, "grain_size", grain_size, low=1.0)
    low, high = as_range(name, "fraction_range", fraction_range, 0.0, 1.0)
    jit = as_range(name, "jitter", jitter, 0.0, 1.0)
    images = np.zeros((n, size, size), dtype=np.uint8)

    def one(k):
        index = start + k
        rng = image_rng(seed, name, index)
        f = _fractions(rng, low, high)
        cell = log_uniform(rng, *grain)
        j = uniform(rng, *jit)
        g = max(2, round(size / cell))
        seeds = 0.5 + j * (rng.random((g, g, 2)) - 0.5)
        counts = np.round(np.cumsum(f) * g * g).astype(int)
        phases = np.zeros(g * g, dtype=np.uint8)
        order = rng.permutation(g * g)
        phases[order[counts[0] : counts[1]]] = 1
        phases[order[counts[1] :]] = 2
        image = images[k] = tessellate(size, (g, g), seeds, phases.reshape(g, g))
        params = {f"fraction_{p}": float(np.mean(image == p)) for p in range(N_PHASES)}
        return format_label(
            **{"class": name}, seed=seed, index=index, **params, n_grains=g * g, grain_size=cell, jitter=j
        )

    labels = map_images(one, range(n))
    return images, labels
