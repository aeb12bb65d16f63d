"""Synthetic microstructure generators (two phases, and two of three phases), one function per idea.

Every generator has the signature ``f(n, size=<default>, seed=0, start=0, **params) -> (images,
labels)`` with ``images`` a (n, size, size) uint8 array of 0/1 and ``labels`` n strings
``"class=<name>; key=value; ..."`` (read them with :func:`parse_label`). Image ``i`` depends only
on ``(seed, class, start + i)``: it has its own NumPy random stream, so the same seed gives the same
bytes however the set is cut into calls, and classes never share streams.

=====================  ===============  =========================================================
name                   function         idea (module docstrings give the design and ranges)
=====================  ===============  =========================================================
lines                  lines            Hashemi et al. 2024: 1-5 parallel lines, 224 px
circles                circles          Cai et al. 2025: 5 discs of radius 20, 224 px
GRF                    grf              thresholded periodic anisotropic Gaussian random field
NBSA                   nbsa             banded anisotropic two-scale field (lamellae)
AngEllipse             ang_ellipse      aligned ellipses, one common angle
RandomEllipse          random_ellipse   ellipses at random angles
VoidSmall              void_small       small circular voids of one size in a matrix
VoidSmallBig           void_small_big   small and big circular voids
VoronoiLarge           voronoi_large    periodic Voronoi grains, ~7-28 per image
VoronoiMedium          voronoi_medium   ~40-160 grains
VoronoiMediumSpaced    voronoi_...      medium grains with a phase-0 boundary band
VoronoiSmall           voronoi_small    ~250-1000 grains
GRF3                   grf3             three phases: a Gaussian random field cut at two levels
Voronoi3               voronoi3         three phases: Voronoi grains of phase 0, 1 or 2
=====================  ===============  =========================================================

The ten MICRO2D classes are synthetic look-alikes (256 x 256, periodic), not the Robertson et al.
(2024) generator, whose per-class parameters are not published.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import numpy as np

from microlatent.data.generators._common import format_label, parse_label
from microlatent.data.generators.circles import circles
from microlatent.data.generators.fields import grf, nbsa
from microlatent.data.generators.inclusions import ang_ellipse, random_ellipse, void_small, void_small_big
from microlatent.data.generators.lines import lines
from microlatent.data.generators.multiphase import grf3, voronoi3
from microlatent.data.generators.voronoi import (
    voronoi_large,
    voronoi_medium,
    voronoi_medium_spaced,
    voronoi_small,
)
from microlatent.errors import InputError

MICRO2D_CLASSES = (
    "GRF",
    "NBSA",
    "AngEllipse",
    "RandomEllipse",
    "VoidSmall",
    "VoidSmallBig",
    "VoronoiLarge",
    "VoronoiMedium",
    "VoronoiMediumSpaced",
    "VoronoiSmall",
)

GENERATORS = {
    "lines": lines,
    "circles": circles,
    "GRF": grf,
    "NBSA": nbsa,
    "AngEllipse": ang_ellipse,
    "RandomEllipse": random_ellipse,
    "VoidSmall": void_small,
    "VoidSmallBig": void_small_big,
    "VoronoiLarge": voronoi_large,
    "VoronoiMedium": voronoi_medium,
    "VoronoiMediumSpaced": voronoi_medium_spaced,
    "VoronoiSmall": voronoi_small,
    "GRF3": grf3,
    "Voronoi3": voronoi3,
}
# Classes with more than two phases (images hold 0 .. K - 1); every other class is 0/1.
PHASE_COUNTS = {"GRF3": 3, "Voronoi3": 3}

KINDS = ("lines", "circles", "micro2d-like") + MICRO2D_CLASSES + ("GRF3", "Voronoi3")


def n_phases(name: str) -> int:
    """Number of phases of a generated class (2 unless it is in PHASE_COUNTS)."""
    return PHASE_COUNTS.get(name, 2)


def resolve_kind(kind: str) -> list[str]:
    """Class names a kind stands for: ``"micro2d-like"`` gives all ten MICRO2D classes.

    Names match exactly or, failing that, case-insensitively. Unknown kinds raise
    :class:`~microlatent.errors.InputError` listing the valid ones.
    """
    if not isinstance(kind, str):
        raise InputError(f"kind must be a string, got {kind!r}")
    if kind in GENERATORS:
        return [kind]
    if kind.lower().replace("_", "-") in ("micro2d-like", "micro2d"):
        return list(MICRO2D_CLASSES)
    matches = [name for name in GENERATORS if name.lower() == kind.lower()]
    if matches:
        return matches
    raise InputError(f"unknown kind {kind!r} (choose from {', '.join(KINDS)})")


def default_size(name: str) -> int:
    """Default image side of a class: 224 for lines and circles, 256 for MICRO2D look-alikes."""
    return inspect.signature(GENERATORS[name]).parameters["size"].default


def _check_params(name: str, params: dict) -> None:
    accepted = [p.name for p in inspect.signature(GENERATORS[name]).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(f"{name}: unknown parameter {unknown[0]!r} (accepted: {', '.join(accepted) or 'none'})")


def iter_batches(
    name: str, n: int, size: int | None = None, seed: int = 0, batch_size: int = 256, **params
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Generate class ``name`` in batches, for sets too large to hold in memory.

    Yields ``(images, labels)`` with images (<= batch_size, size, size) uint8. The concatenation
    equals ``GENERATORS[name](n, size, seed, **params)`` whatever ``batch_size`` is.
    """
    names = resolve_kind(name)
    if len(names) != 1:
        raise InputError(f"iter_batches takes one class, not {name!r}")
    name = names[0]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    _check_params(name, params)
    size = default_size(name) if size is None else size
    for first in range(0, n, batch_size):
        yield GENERATORS[name](min(batch_size, n - first), size=size, seed=seed, start=first, **params)


def generate(kind: str, n: int, size: int | None = None, seed: int = 0, **params) -> dict:
    """Generate a synthetic data set.

    Parameters
    ----------
    kind : str
        ``"lines"``, ``"circles"``, ``"micro2d-like"`` (all ten MICRO2D classes, ``n`` images
        each) or one MICRO2D class name (exact, or matched case-insensitively).
    n : int
        Images per class.
    size : int, optional
        Image side in px; default 224 for lines and circles, 256 for MICRO2D look-alikes.
    seed : int, default 0
        Same seed, same bytes. Each class and image has its own stream.
    **params
        Keyword parameters of the generator (see :data:`GENERATORS`); with ``"micro2d-like"``
        they go to every class, so only parameters all ten share (``volume_fraction`` is not one).

    Returns
    -------
    dict
        ``{class_name: (images, labels)}``, images (n, size, size) uint8 of 0/1, labels a list of
        n strings. Memory: n * size**2 bytes per class (10,000 MICRO2D-like images = 655 MB per
        class); use :func:`iter_batches` or ``microlatent data generate`` for large sets.
    """
    out = {}
    for name in resolve_kind(kind):
        _check_params(name, params)
        out[name] = GENERATORS[name](n, size=default_size(name) if size is None else size, seed=seed, **params)
    return out


__all__ = [
    "GENERATORS",
    "KINDS",
    "MICRO2D_CLASSES",
    "PHASE_COUNTS",
    "n_phases",
    "grf3",
    "voronoi3",
    "default_size",
    "format_label",
    "generate",
    "iter_batches",
    "parse_label",
    "resolve_kind",
    "ang_ellipse",
    "circles",
    "grf",
    "lines",
    "nbsa",
    "random_ellipse",
    "void_small",
    "void_small_big",
    "voronoi_large",
    "voronoi_medium",
    "voronoi_medium_spaced",
    "voronoi_small",
]
