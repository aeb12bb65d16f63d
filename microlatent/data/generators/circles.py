"""Disc images after Cai et al. (2025) §3.2: 5 discs of radius 20 px at random places on 224 x 224.

Design: centres are integer pixels drawn uniformly where the whole disc fits inside the image
(``radius <= centre <= size - 1 - radius``), so every disc has exactly the pixel area of a digital
disc (1257 px for radius 20: the pixel centres within distance ``radius``). Discs may overlap, as in
the paper ("adding 5 circles ... at random locations"); ``overlap=False`` redraws a centre until it is
more than ``2 * radius + 2`` px from every other centre, so discs do not touch even diagonally
(each disc is then its own 8-connected component). ``periodic=True`` instead draws
centres anywhere and wraps discs across the edges.

Phase 1 (value 1) = disc, 0 = background.
"""

from __future__ import annotations

import numpy as np

from microlatent.data.generators._common import (
    BATCH,
    as_range,
    check_common,
    format_label,
    image_rng,
    raster_ellipses,
)
from microlatent.errors import InputError

NAME = "circles"


def circles(
    n: int,
    size: int = 224,
    seed: int = 0,
    start: int = 0,
    *,
    n_discs: int = 5,
    radius: float = 20,
    overlap: bool = True,
    periodic: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Binary images of equal discs at random positions.

    Parameters
    ----------
    n : int
        Number of images.
    size : int, default 224
        Image side in pixels.
    seed : int, default 0
        Seed; image ``i`` depends only on ``(seed, i)``.
    start : int, default 0
        Index of the first image.
    n_discs : int, default 5
        Discs per image.
    radius : float, default 20
        Disc radius in pixels: pixel ``(i, j)`` is in the disc when its centre lies within
        ``radius`` of the disc centre.
    overlap : bool, default True
        Allow discs to overlap. If False, centres are more than ``2 * radius + 2`` px apart,
        so discs do not touch, not even diagonally.
    periodic : bool, default False
        Wrap discs across the image edges (centres anywhere) instead of keeping them inside.

    Returns
    -------
    images : (n, size, size) uint8
        1 inside a disc, 0 elsewhere.
    labels : list of str
        ``class=circles; seed; index; n_discs; radius; periodic; centres_y; centres_x``.
    """
    n, size, seed, start = check_common(NAME, n, size, seed, start)
    n_discs = as_range(NAME, "n_discs", n_discs, low=0, integer=True)[0]
    radius = as_range(NAME, "radius", radius, low=0.5)[0]
    room = size if periodic else size - 2 * int(np.floor(radius))
    if room < 1:
        raise InputError(f"{NAME}: discs of radius {radius:g} do not fit in a {size} px image")

    images = np.zeros((n, size, size), dtype=np.uint8)
    labels = []
    for first in range(0, n, BATCH):
        count = min(BATCH, n - first)
        centres = np.zeros((count, n_discs, 2))
        for b in range(count):
            index = start + first + b
            rng = image_rng(seed, NAME, index)
            centres[b] = _draw_centres(rng, n_discs, radius, size, room, overlap, periodic, index)
            labels.append(
                format_label(
                    **{"class": NAME},
                    seed=seed,
                    index=index,
                    n_discs=n_discs,
                    radius=radius,
                    periodic=periodic,
                    centres_y=centres[b, :, 0].astype(int),
                    centres_x=centres[b, :, 1].astype(int),
                )
            )
        flat = centres.reshape(-1, 2)
        discs = np.full(len(flat), radius, dtype=float)
        images[first : first + count] = raster_ellipses(
            count,
            size,
            size,
            np.repeat(np.arange(count), n_discs),
            flat[:, 0],
            flat[:, 1],
            discs,
            discs,
            np.zeros(len(flat)),
            periodic=periodic,
        )
    return images, labels


def _draw_centres(rng, n_discs, radius, size, room, overlap, periodic, index):
    offset = 0 if periodic else int(np.floor(radius))
    if overlap:
        return offset + rng.integers(0, room, size=(n_discs, 2))
    placed = np.zeros((0, 2))
    for _ in range(1000 * max(n_discs, 1)):
        if len(placed) == n_discs:
            return placed
        candidate = offset + rng.integers(0, room, size=2)
        delta = np.abs(placed - candidate)
        if periodic:
            delta = np.minimum(delta, size - delta)
        if np.all(np.hypot(delta[:, 0], delta[:, 1]) > 2 * radius + 2):
            placed = np.vstack([placed, candidate])
    raise InputError(
        f"{NAME}: could not place {n_discs} non-overlapping discs of radius {radius:g} "
        f"in a {size} px image (image {index})"
    )
