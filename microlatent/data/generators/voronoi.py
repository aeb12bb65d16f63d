"""MICRO2D look-alikes of grain structures: VoronoiLarge, VoronoiMedium, VoronoiMediumSpaced,
VoronoiSmall.

Each image is a periodic Voronoi tessellation (every pixel belongs to its nearest seed, distances
taken on the torus, so grains wrap across the edges). A random subset of ``round(target * n_grains)``
grains is phase 1, the rest phase 0; an exact count (rather than an independent coin per grain)
keeps the realised fraction close to the target even with few grains.

Seeds: a perturbed lattice. The square is cut into ``gy x gx`` cells of about ``grain_size`` px
and each cell holds one seed, uniform in the central ``jitter`` fraction of the cell (``jitter``
0.5-1, recorded; 1 = anywhere in the cell, i.e. stratified random seeds). Two reasons: grain
sizes keep a realistic spread (Poisson seeds give slivers next to giants), and the search is local.
Every pixel compares the seeds of its own and the 8 neighbouring cells; a seed farther out is at
least ``min(distance to the cell edges) + 1.5 - jitter / 2`` cells away, and the few pixels whose
best candidate is farther than that also check the next ring of 16 cells, which always suffices
(the nearest seed is within ``sqrt(2)`` cells, every cell three steps off is at least 2 away). The
result is the exact Voronoi diagram at pixel centres. Distances are measured in cell units; with
``gy != gx`` (``elongation`` 1-2, along x or y at random) this is the Voronoi diagram of an
axis-stretched point set, i.e. grains elongated along one axis.

Grain sizes (cell side, px, log-uniform): Large 48-96 (about 7-28 grains on 256 x 256), Medium
20-40 (40-160), Small 8-16 (250-1000). Phase-1 target fraction uniform 0.1-0.9.
VoronoiMediumSpaced is Medium with square cells and a phase-0 band between grains: a pixel whose
distances to its nearest and second-nearest seeds differ by less than ``boundary_width`` px (1-4)
is boundary, so phase-1 grains never touch.
"""

from __future__ import annotations

import functools
import math

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

_NEAR = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
# With seeds anywhere in their cell (jitter 1) the nearest seed is at most sqrt(2) cells away and
# every cell three steps off is farther than that, so the 5 x 5 block is always enough.
_RING = [(di, dj) for di in range(-2, 3) for dj in range(-2, 3) if max(abs(di), abs(dj)) == 2]


def _cell_layout(size: int, cells: int):
    """Pixels of each lattice row (or column) laid out as a padded (cells, slots) block.

    Returns the cell index and slot of every pixel (size,), the pixel-centre coordinate in cell
    units relative to its cell (cells, slots), and the number of slots.
    """
    centre = (np.arange(size) + 0.5) * cells / size
    cell = np.minimum(np.floor(centre).astype(int), cells - 1)
    first = np.searchsorted(cell, np.arange(cells))
    slot = np.arange(size) - first[cell]
    slots = int(slot.max()) + 1
    local = np.full((cells, slots), 0.5)
    local[cell, slot] = centre - cell
    return cell, slot, local, slots


@functools.lru_cache(maxsize=64)
def _layout(size: int, gy: int, gx: int):
    """Block layout of a ``gy x gx`` lattice on a ``size`` image, cached per lattice.

    The work arrays have one axis per (cell row i, slot p in the cell, cell column j, slot q);
    their order ``perm`` puts the longer of (q) and (i, j) last, because NumPy broadcasts fastest
    over long contiguous inner axes. Returns (perm, shape, ry, rx, flat) where ``flat`` (size,
    size) indexes every image pixel in the flattened work array.
    """
    row_cell, row_slot, ry, py = _cell_layout(size, gy)
    col_cell, col_slot, rx, px = _cell_layout(size, gx)
    perm = (0, 1, 2, 3) if px >= gy * gx else (1, 3, 0, 2)
    canonical = (gy, py, gx, px)
    shape = tuple(canonical[k] for k in perm)
    index = (row_cell[:, None], row_slot[:, None], col_cell[None, :], col_slot[None, :])
    flat = np.ravel_multi_index(tuple(np.broadcast_to(index[k], (size, size)) for k in perm), shape)
    return perm, shape, ry, rx, flat


def tessellate(
    size: int,
    grid: tuple[int, int],
    seeds: np.ndarray,
    phases: np.ndarray,
    boundary_width: float = 0.0,
) -> np.ndarray:
    """Phase image of a periodic perturbed-lattice Voronoi tessellation.

    Parameters
    ----------
    size : int
        Image side in px.
    grid : (int, int)
        Lattice cells ``(gy, gx)``.
    seeds : (gy, gx, 2) float
        Seed of each cell in cell units relative to the cell corner, within
        ``[0.5 - jitter / 2, 0.5 + jitter / 2]`` for some ``jitter <= 1``.
    phases : (gy, gx) uint8
        Phase of each grain.
    boundary_width : float
        If > 0, pixels whose second-nearest seed is less than this many px farther than the
        nearest are set to 0 (grain-boundary band). Needs square cells (``gy == gx``).

    Returns
    -------
    (size, size) uint8
    """
    gy, gx = grid
    jitter = float(2 * np.max(np.abs(seeds - 0.5))) if seeds.size else 0.0
    perm, shape, ry, rx, flat = _layout(size, gy, gx)

    def arrange(canonical):
        """A (gy | 1, py | 1, gx | 1, px | 1) array in the work layout, contiguous so that
        broadcasting runs over one long inner axis."""
        return np.ascontiguousarray(canonical.transpose(perm))

    # Work arrays hold, for every pixel, the squared distance (cell units) to the nearest
    # candidate so far and which of the 9 candidates that is.
    best = np.full(shape, np.inf, dtype=np.float32)
    second = np.full(shape, np.inf, dtype=np.float32) if boundary_width > 0 else None
    dist = np.empty(shape, dtype=np.float32)
    closer = np.empty(shape, dtype=bool)
    which = np.zeros(shape, dtype=np.uint8)
    ry32, rx32, seeds32 = ry.astype(np.float32), rx.astype(np.float32), seeds.astype(np.float32)
    for k, (di, dj) in enumerate(_NEAR):
        shifted = np.roll(seeds32, (-di, -dj), axis=(0, 1))
        dy = ry32[:, :, None, None] - (di + shifted[:, None, :, None, 0])  # (gy, py, gx, 1)
        dx = rx32[None, None, :, :] - (dj + shifted[:, None, :, None, 1])  # (gy, 1, gx, px)
        np.add(arrange(dy * dy), arrange(dx * dx), out=dist)
        if second is not None:
            np.minimum(second, np.maximum(best, dist), out=second)
        np.less(dist, best, out=closer)
        np.copyto(which, k, where=closer)
        np.minimum(best, dist, out=best)
    # near_phase[k, i, j] is the phase of candidate k of cell (i, j); one flat take reads it out.
    near_phase = np.stack([np.roll(phases, (-di, -dj), axis=(0, 1)) for di, dj in _NEAR])
    cell = arrange(np.arange(gy * gx, dtype=np.int32).reshape(gy, 1, gx, 1))
    phase = np.take(near_phase.ravel(), which.astype(np.int32) * (gy * gx) + cell)

    # Any seed outside the 3 x 3 block is at least `bound` away (cell units); pixels whose nearest
    # (or, for the band, second-nearest) candidate is farther than that check the next ring too.
    # The bound is never below 1.5 - jitter / 2, so only pixels beyond that need the exact bound.
    checked = second if second is not None else best
    unsure = np.nonzero(checked > np.float32((1.5 - jitter / 2) ** 2))
    i, p, j, q = (unsure[perm.index(axis)] for axis in range(4))
    edge = np.minimum(np.minimum(ry[i, p], 1 - ry[i, p]), np.minimum(rx[j, q], 1 - rx[j, q]))
    keep = checked[unsure] > (edge + 1.5 - jitter / 2) ** 2
    unsure = tuple(axis[keep] for axis in unsure)
    i, p, j, q = i[keep], p[keep], j[keep], q[keep]
    if i.size:
        b1, ph = best[unsure], phase[unsure]
        b2 = second[unsure] if second is not None else np.full_like(b1, np.inf)
        for di, dj in _RING:
            sy = seeds[(i + di) % gy, (j + dj) % gx]
            d = ((ry[i, p] - di - sy[:, 0]) ** 2 + (rx[j, q] - dj - sy[:, 1]) ** 2).astype(np.float32)
            b2 = np.minimum(b2, np.maximum(b1, d))
            ph = np.where(d < b1, phases[(i + di) % gy, (j + dj) % gx], ph)
            b1 = np.minimum(b1, d)
        best[unsure], phase[unsure] = b1, ph
        if second is not None:
            second[unsure] = b2

    if boundary_width > 0:
        gap = (np.sqrt(second) - np.sqrt(best)) * (size / gy)
        phase[gap < boundary_width] = 0
    return np.take(phase.ravel(), flat)


def _generate(name, n, size, seed, start, grain_size, volume_fraction, elongation, jitter, boundary_width=None):
    n, size, seed, start = check_common(name, n, size, seed, start)
    grain = as_range(name, "grain_size", grain_size, low=1.0)
    vf = as_range(name, "volume_fraction", volume_fraction, 0.0, 1.0)
    stretch = as_range(name, "elongation", elongation, low=1.0)
    jit = as_range(name, "jitter", jitter, 0.0, 1.0)
    width = None if boundary_width is None else as_range(name, "boundary_width", boundary_width, low=0.0)

    images = np.zeros((n, size, size), dtype=np.uint8)

    def one(k):
        index = start + k
        rng = image_rng(seed, name, index)
        target = uniform(rng, *vf)
        cell = log_uniform(rng, *grain)
        ratio = uniform(rng, *stretch)
        along_x = bool(rng.random() < 0.5)
        j = uniform(rng, *jit)
        band = uniform(rng, *width) if width is not None else 0.0
        if width is not None:
            ratio = 1.0  # square cells keep the band width in px the same in x and y
        long_side, short_side = cell * math.sqrt(ratio), cell / math.sqrt(ratio)
        gx = max(1, round(size / (long_side if along_x else short_side)))
        gy = max(1, round(size / (short_side if along_x else long_side)))
        if width is not None:
            gx = gy
        seeds = 0.5 + j * (rng.random((gy, gx, 2)) - 0.5)
        n_grains = gy * gx
        phases = np.zeros(n_grains, dtype=np.uint8)
        phases[rng.permutation(n_grains)[: int(round(target * n_grains))]] = 1
        image = images[k] = tessellate(size, (gy, gx), seeds, phases.reshape(gy, gx), band)
        params = dict(
            volume_fraction=float(image.mean()),
            target_volume_fraction=target,
            n_grains=n_grains,
            n_phase1_grains=int(phases.sum()),
            grid_y=gy,
            grid_x=gx,
            grain_size=cell,
            elongation=ratio,
            elongation_axis="x" if along_x else "y",
            jitter=j,
        )
        if width is not None:
            params["boundary_width"] = band
        return format_label(**{"class": name}, seed=seed, index=index, **params)

    labels = map_images(one, range(n))
    return images, labels


def voronoi_large(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    grain_size=(48.0, 96.0),
    volume_fraction=(0.1, 0.9),
    elongation=(1.0, 2.0),
    jitter=(0.5, 1.0),
) -> tuple[np.ndarray, list[str]]:
    """Few large grains (MICRO2D class ``VoronoiLarge``).

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
    grain_size : float or (float, float), default (48, 96)
        Lattice cell side in px (mean grain diameter), log-uniform.
    volume_fraction : float or (float, float), default (0.1, 0.9)
        Target share of phase-1 grains, uniform.
    elongation : float or (float, float), default (1, 2)
        Grain aspect ratio (cell long over short side), along x or y at random.
    jitter : float or (float, float), default (0.5, 1)
        Seed freedom within its cell: 0 = regular lattice, 1 = anywhere in the cell.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic.
    labels : list of str
        ``class; seed; index; volume_fraction (measured); target_volume_fraction; n_grains;
        n_phase1_grains; grid_y; grid_x; grain_size; elongation; elongation_axis; jitter``.
    """
    return _generate("VoronoiLarge", n, size, seed, start, grain_size, volume_fraction, elongation, jitter)


def voronoi_medium(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    grain_size=(20.0, 40.0),
    volume_fraction=(0.1, 0.9),
    elongation=(1.0, 2.0),
    jitter=(0.5, 1.0),
) -> tuple[np.ndarray, list[str]]:
    """Medium grains (MICRO2D class ``VoronoiMedium``); parameters as :func:`voronoi_large`."""
    return _generate("VoronoiMedium", n, size, seed, start, grain_size, volume_fraction, elongation, jitter)


def voronoi_small(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    grain_size=(8.0, 16.0),
    volume_fraction=(0.1, 0.9),
    elongation=(1.0, 2.0),
    jitter=(0.5, 1.0),
) -> tuple[np.ndarray, list[str]]:
    """Many small grains (MICRO2D class ``VoronoiSmall``); parameters as :func:`voronoi_large`."""
    return _generate("VoronoiSmall", n, size, seed, start, grain_size, volume_fraction, elongation, jitter)


def voronoi_medium_spaced(
    n: int,
    size: int = 256,
    seed: int = 0,
    start: int = 0,
    *,
    grain_size=(20.0, 40.0),
    volume_fraction=(0.1, 0.9),
    boundary_width=(1.0, 4.0),
    jitter=(0.5, 1.0),
) -> tuple[np.ndarray, list[str]]:
    """Medium equiaxed grains separated by a phase-0 band (MICRO2D class ``VoronoiMediumSpaced``).

    Parameters
    ----------
    n, size, seed, start, grain_size, volume_fraction, jitter :
        As in :func:`voronoi_large` (cells are square here).
    boundary_width : float or (float, float), default (1, 4)
        Band width in px: a pixel is boundary (phase 0) when its two nearest seeds are less than
        this much apart in distance.

    Returns
    -------
    images : (n, size, size) uint8 of 0/1, periodic.
    labels : list of str
        As :func:`voronoi_large` plus ``boundary_width``.
    """
    return _generate(
        "VoronoiMediumSpaced",
        n,
        size,
        seed,
        start,
        grain_size,
        volume_fraction,
        (1.0, 1.0),
        jitter,
        boundary_width=boundary_width,
    )
