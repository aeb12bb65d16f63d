"""Straight-line images after Hashemi, Guerzhoy and Paulson (2024).

Each image (default 224 x 224, not periodic) holds 1-5 straight lines, all horizontal or all
vertical. A line is a filled axis-aligned rectangle: ``thickness`` pixels across (5-9), ``length``
pixels along (112-224), placed anywhere it fits inside the image.

Spacing rule, our reading of "parallel lines closer than 10 px are rejected": the *gap* between
neighbouring lines, counted in background pixels between their facing edges, is at least
``min_gap`` (10). Since all lines in an image are parallel, the gap is measured across them,
whatever their extent along their length; lines never touch, so each line is one 4- or
8-connected component. Positions are built directly rather than by rejection: the free space
``size - sum(thickness) - min_gap * (k - 1)`` is split at ``k`` uniform random cut points into
``k + 1`` extra gaps, so every valid layout is reachable and no draw is wasted.

Phase 1 (value 1) is the line, 0 the background (the reference code draws dark lines on white;
we store the line as the phase of interest).
"""

from __future__ import annotations

import numpy as np

from microlatent.data.generators._common import BATCH, as_range, check_common, format_label, image_rng
from microlatent.errors import InputError

NAME = "lines"


def lines(
    n: int,
    size: int = 224,
    seed: int = 0,
    start: int = 0,
    *,
    n_lines=(1, 5),
    length=None,
    thickness=(5, 9),
    min_gap: int = 10,
    orientation: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Binary images of parallel straight lines, all horizontal or all vertical.

    Parameters
    ----------
    n : int
        Number of images.
    size : int, default 224
        Image side in pixels.
    seed : int, default 0
        Seed; image ``i`` depends only on ``(seed, i)``.
    start : int, default 0
        Index of the first image (to generate a long set in pieces).
    n_lines : int or (int, int), default (1, 5)
        Number of lines per image, drawn uniformly from the inclusive range.
    length : int or (int, int), optional
        Line length in pixels, uniform integer in the inclusive range; default
        ``(size // 2, size)`` = (112, 224).
    thickness : int or (int, int), default (5, 9)
        Line thickness in pixels, uniform integer in the inclusive range.
    min_gap : int, default 10
        Least number of background pixels between the facing edges of two lines.
    orientation : {"horizontal", "vertical"}, optional
        Force one orientation; default: each image picks one with probability 1/2.

    Returns
    -------
    images : (n, size, size) uint8
        1 on lines, 0 elsewhere.
    labels : list of str
        ``class=lines; seed; index; orientation; n_lines; lengths; thicknesses; starts; positions``
        with per-line lists: ``starts`` is the first pixel along the line, ``positions`` the first
        pixel across it (row for horizontal lines, column for vertical ones).
    """
    n, size, seed, start = check_common(NAME, n, size, seed, start)
    count_range = as_range(NAME, "n_lines", n_lines, low=1, integer=True)
    length_range = as_range(NAME, "length", (size // 2, size) if length is None else length, 1, size, True)
    thick_range = as_range(NAME, "thickness", thickness, low=1, integer=True)
    gap = as_range(NAME, "min_gap", min_gap, low=0, integer=True)[0]
    if orientation not in (None, "horizontal", "vertical"):
        raise InputError(f"{NAME}: orientation must be 'horizontal' or 'vertical', got {orientation!r}")
    worst = count_range[1] * thick_range[1] + gap * (count_range[1] - 1)
    if worst > size:
        raise InputError(
            f"{NAME}: {count_range[1]} lines of thickness {thick_range[1]} with gaps of {gap} "
            f"need {worst} px but the image is {size} px"
        )

    images = np.zeros((n, size, size), dtype=np.uint8)
    labels = []
    axis = np.arange(size)
    for first in range(0, n, BATCH):
        count = min(BATCH, n - first)
        # across[b, k, :] and along[b, k, :] are the pixel ranges of line k; the image is the
        # sum of their outer products (lines never overlap, so the sum stays 0/1).
        across = np.zeros((count, count_range[1], size), dtype=np.float32)
        along = np.zeros((count, count_range[1], size), dtype=np.float32)
        vertical = np.zeros(count, dtype=bool)
        for b in range(count):
            index = start + first + b
            rng = image_rng(seed, NAME, index)
            k = int(rng.integers(count_range[0], count_range[1] + 1))
            vertical[b] = rng.random() < 0.5 if orientation is None else orientation == "vertical"
            thick = rng.integers(thick_range[0], thick_range[1] + 1, size=k)
            lengths = rng.integers(length_range[0], length_range[1] + 1, size=k)
            starts = (rng.random(k) * (size - lengths + 1)).astype(int)
            slack = size - int(thick.sum()) - gap * (k - 1)
            cuts = np.sort(rng.integers(0, slack + 1, size=k))
            extra = np.diff(cuts, prepend=0)
            positions = np.cumsum(extra) + np.concatenate([[0], np.cumsum(thick[:-1] + gap)])
            across[b, :k] = (axis >= positions[:, None]) & (axis < (positions + thick)[:, None])
            along[b, :k] = (axis >= starts[:, None]) & (axis < (starts + lengths)[:, None])
            labels.append(
                format_label(
                    **{"class": NAME},
                    seed=seed,
                    index=index,
                    orientation="vertical" if vertical[b] else "horizontal",
                    n_lines=k,
                    lengths=lengths,
                    thicknesses=thick,
                    starts=starts,
                    positions=positions,
                )
            )
        block = np.matmul(across.transpose(0, 2, 1), along).astype(np.uint8)  # rows = across
        block[vertical] = block[vertical].transpose(0, 2, 1)
        images[first : first + count] = block
    return images, labels
