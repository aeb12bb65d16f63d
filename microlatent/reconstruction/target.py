"""What a reconstruction aims at: the 2-point statistics of every ordered phase pair, checked.

A target comes from a microstructure (its statistics are computed) or from a statistics map, e.g. the
.npz that ``microlatent stats --save`` writes. Either way it becomes a :class:`TargetStatistics`:
f(h, h' | r) for all C x C ordered pairs (h-major), centred as ``microlatent.stats.two_point`` returns
them, with the image size to reconstruct and the volume fractions read off the zero offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from microlatent.errors import DataError, InputError
from microlatent.stats import offsets, one_hot, resolve_pairs, two_point

# How far a statistics map may stray from the identities every valid map obeys (FFT roundoff of
# float32 maps is ~1e-7; maps saved from images in float32 easily meet 1e-4).
TOLERANCE = 1e-4


@dataclass(frozen=True)
class TargetStatistics:
    """2-point statistics to reconstruct.

    statistics : (C*C, H', W') float64, every ordered pair (h, h') h-major, zero offset at
        [H'//2, W'//2] (or the centre of the ``crop``).
    n_phases : C >= 2.
    periodic : whether offsets wrap around the image.
    shape : (H, W) of the images to reconstruct.
    crop : None when the map holds every offset of an H x W image, else (kh, kw): the central
        offsets it holds (``two_point(..., crop=crop)``).
    volume_fractions : (C,) volume fraction of each phase (f(h, h | 0), or as given).
    image : the microstructure the statistics came from, when known ((H, W) phase labels or
        phase-1 probabilities), for figures.
    name : a label for tables and file names.
    """

    statistics: np.ndarray
    n_phases: int
    periodic: bool
    shape: tuple[int, int]
    crop: tuple[int, int] | None = None
    volume_fractions: np.ndarray = field(default=None)
    image: np.ndarray | None = None
    name: str = "target"

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return resolve_pairs("all", self.n_phases)

    @property
    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (ry, rx) along the two axes of ``statistics``."""
        return offsets(self.shape, self.periodic, self.crop)

    def pair_map(self, h: int, k: int) -> np.ndarray:
        """f(h, k | r), (H', W')."""
        return self.statistics[h * self.n_phases + k]

    def statistics_of(self, images):
        """Statistics of reconstructions, comparable with ``statistics``: images (N, H, W) of phase
        labels (integers 0..C-1) or of phase-1 probabilities (2 phases), or (N, C, H, W) phase
        probabilities; NumPy arrays or tensors. Returns (N, C*C, H', W') of the same kind."""
        if isinstance(images, np.ndarray) and np.issubdtype(images.dtype, np.integer):
            images = one_hot(images, self.n_phases, np.float64)
        return two_point(images, periodic=self.periodic, pairs="all", crop=self.crop, validate=False)

    def structureless(self) -> np.ndarray:
        """Statistics of an image without structure at these volume fractions: f(h, h'|r) = v_h v_h'
        away from r = 0 and v_h delta(h, h') at r = 0 (the reference that errors are scaled by)."""
        v = np.asarray(self.volume_fractions, dtype=np.float64)
        out = np.broadcast_to(np.outer(v, v).reshape(-1, 1, 1), self.statistics.shape).copy()
        cy, cx = self.centre
        out[:, cy, cx] = np.diag(v).ravel()
        return out

    @property
    def centre(self) -> tuple[int, int]:
        """Index of the zero offset in ``statistics``."""
        ry, rx = self.offsets
        return int(np.flatnonzero(ry == 0)[0]), int(np.flatnonzero(rx == 0)[0])


def as_target(target, periodic=None, size=None, volume_fraction=None, index=0, name=None) -> TargetStatistics:
    """A :class:`TargetStatistics` from whatever ``reconstruct`` is given:

    - a ``TargetStatistics`` (returned as is, ``volume_fraction`` aside);
    - a path: a statistics .npz (keys ``statistics``, ``pairs``, optional ``offsets_y``,
      ``offsets_x``, ``periodic``, ``names``; map ``index`` of its batch), or an image that
      ``microlatent.data.sources.load_images`` reads (image ``index``);
    - a mapping with a ``statistics`` key (and the optional keys above), e.g. ``np.load(file)``;
    - an image array or tensor: see :func:`from_image`.

    ``periodic`` None means: as the statistics file says, else True.
    """
    if isinstance(target, TargetStatistics):
        result = target
    elif isinstance(target, (str, Path)):
        result = load_target(target, periodic=periodic, size=size, index=index)
    elif hasattr(target, "keys") and "statistics" in target.keys():
        result = from_mapping(target, periodic=periodic, size=size, index=index, source="statistics mapping")
    elif hasattr(target, "keys"):
        raise InputError(f"a statistics mapping needs a 'statistics' key, got keys {sorted(target.keys())}")
    else:
        if size is not None:
            raise InputError("size applies to a statistics map; an image target is reconstructed at its own size")
        result = from_image(target, periodic=True if periodic is None else periodic)
    if name is not None:
        result = replace(result, name=str(name))
    if volume_fraction is not None:
        result = replace(result, volume_fractions=_volume_fraction_argument(volume_fraction, result.n_phases))
    return result


def from_image(image, periodic: bool = True, n_phases: int | None = None, name: str = "target") -> TargetStatistics:
    """Target statistics of a microstructure.

    image : (H, W) phase-1 probabilities in [0, 1] (a binary image, bool or 0/1) of 2 phases, or
        integer phase labels 0..C-1 (C = ``n_phases`` or the largest label + 1, at least 2);
        (N, H, W) a batch of one material (2 phases, or labels): the target is the mean of their
        statistics; (N, C, H, W) phase probabilities of C phases. Arrays or tensors.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    try:
        array = np.asarray(image)
    except Exception as err:  # ragged lists
        raise InputError(
            f"target must be an image array, a statistics map or a file, got {type(image).__name__}: {err}"
        ) from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"target must be a numeric image array, got dtype {array.dtype}")
    if array.ndim not in (2, 3, 4) or array.size == 0:
        raise InputError(f"target image must be (H, W), (N, H, W) or (N, C, H, W), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError("target image contains NaN or infinite values")
    labels = array.dtype != bool and np.issubdtype(array.dtype, np.integer) and array.ndim <= 3
    if labels:
        if array.min() < 0:
            raise InputError(f"phase labels must be >= 0, got {array.min()}")
        n = max(2, int(array.max()) + 1) if n_phases is None else int(n_phases)
        if array.max() >= n:
            raise InputError(f"phase label {array.max()} is outside 0..{n - 1} for {n} phases")
        batch = array if array.ndim == 3 else array[None]
        probabilities = one_hot(batch, n) if n > 2 else batch.astype(np.float32)
        shown = batch[0].astype(np.uint8)
    else:
        probabilities = array.astype(np.float32) if array.dtype != np.float64 else array
        if probabilities.min() < 0 or probabilities.max() > 1:
            raise InputError(
                f"target image values must lie in [0, 1] (or be integer phase labels), got "
                f"{probabilities.min():.4g} to {probabilities.max():.4g}"
            )
        if array.ndim == 4:
            n = array.shape[1]
            if n == 1:
                probabilities, n = probabilities[:, 0], 2
            shown = np.argmax(probabilities[0], axis=0).astype(np.uint8) if n > 2 else probabilities[0]
        else:
            n = 2
            shown = probabilities if array.ndim == 2 else probabilities[0]
        if n_phases is not None and n_phases != n:
            raise InputError(f"target image has {n} phases, not {n_phases}")
    statistics = two_point(probabilities.astype(np.float64), periodic=periodic, pairs="all")
    statistics = statistics.mean(0)
    height, width = shown.shape[-2:]
    volume_fractions = np.array(
        [
            statistics[h * n + h][height // 2 if periodic else height - 1, width // 2 if periodic else width - 1]
            for h in range(n)
        ]
    )
    return TargetStatistics(
        statistics, n, bool(periodic), (height, width), None, volume_fractions, np.array(shown), name
    )


def from_map(
    statistics,
    pairs="all",
    periodic: bool = True,
    offsets_y=None,
    offsets_x=None,
    size=None,
    volume_fraction=None,
    name: str = "target",
    source: str = "statistics",
) -> TargetStatistics:
    """Target statistics from a map (K, H', W') (or (1, K, H', W')) of the given phase ``pairs``,
    centred as ``two_point`` returns them. Checked: shape, finite values in [0, 1], offsets, pairs
    summing to 1 at every offset, periodic rows summing to the volume fractions, autocorrelations
    peaking at the zero offset (periodic). A 2-phase periodic map needs only one autocorrelation;
    otherwise every ordered pair must be given.

    size : (H, W) or int, the image size to reconstruct when the map is a central crop of the
        offsets (default: the size whose full map this is).
    """
    where = f"{source}: "
    try:
        values = np.asarray(statistics, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}statistics must be a numeric array") from None
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise InputError(f"{where}statistics must be one map (K, H', W') of K phase pairs, got shape {values.shape}")
    n_pairs, map_h, map_w = values.shape
    if min(values.shape) == 0:
        raise InputError(f"{where}statistics map is empty, shape {values.shape}")
    if not np.isfinite(values).all():
        raise InputError(f"{where}statistics contain NaN or infinite values")
    lo, hi = values.min(), values.max()
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise InputError(
            f"{where}statistics are probabilities and must lie in [0, 1], got values from {lo:.4g} to {hi:.4g}"
        )
    pair_list, n_phases = _pairs_of(pairs, n_pairs, where)

    shape, crop = _image_shape(map_h, map_w, periodic, size, where)
    ry, rx = offsets(shape, periodic, crop)
    for axis, given, expected in (("offsets_y", offsets_y, ry), ("offsets_x", offsets_x, rx)):
        if given is None:
            continue
        given = np.asarray(given).ravel()
        if len(given) != len(expected):
            raise InputError(f"{where}{axis} has {len(given)} offsets but the map has {len(expected)} along that axis")
        if not np.array_equal(given, expected):
            raise InputError(
                f"{where}{axis} runs {given[0]}..{given[-1]}, not the centred "
                f"{'periodic' if periodic else 'non-periodic'} "
                f"offsets {expected[0]}..{expected[-1]} of a {shape[0]} x {shape[1]} image"
            )
    cy, cx = int(np.flatnonzero(ry == 0)[0]), int(np.flatnonzero(rx == 0)[0])

    full = _complete(values, pair_list, n_phases, periodic, (cy, cx), where)
    _check_map(full, n_phases, periodic, (cy, cx), ry, rx, where)
    volume_fractions = np.array([full[h * n_phases + h, cy, cx] for h in range(n_phases)])
    if volume_fraction is not None:
        volume_fractions = _volume_fraction_argument(volume_fraction, n_phases)
    return TargetStatistics(np.clip(full, 0, 1), n_phases, bool(periodic), shape, crop, volume_fractions, None, name)


def from_mapping(mapping, periodic=None, size=None, index=0, source="statistics", name=None) -> TargetStatistics:
    """Target statistics from a mapping with the keys that ``microlatent stats --save`` writes."""
    values = np.asarray(mapping["statistics"])
    keys = set(mapping.keys())
    if values.ndim == 4:
        if not 0 <= index < values.shape[0]:
            raise InputError(f"{source}: holds {values.shape[0]} statistics maps, no index {index}")
        values = values[index]
    pairs = np.asarray(mapping["pairs"]).tolist() if "pairs" in keys else "all"
    saved_periodic = bool(np.asarray(mapping["periodic"])) if "periodic" in keys else None
    if periodic is not None and saved_periodic is not None and bool(periodic) != saved_periodic:
        raise InputError(
            f"{source}: the statistics are {'periodic' if saved_periodic else 'non-periodic'}, "
            f"but {'periodic' if periodic else 'non-periodic'} ones were asked for"
        )
    periodic = saved_periodic if saved_periodic is not None else (True if periodic is None else bool(periodic))
    if name is None and "names" in keys:
        names = np.asarray(mapping["names"]).ravel()
        name = str(names[index]) if index < len(names) else None
    return from_map(
        values,
        pairs=pairs,
        periodic=periodic,
        offsets_y=mapping["offsets_y"] if "offsets_y" in keys else None,
        offsets_x=mapping["offsets_x"] if "offsets_x" in keys else None,
        size=size,
        name=name or "target",
        source=source,
    )


def load_target(path, periodic=None, size=None, index=0) -> TargetStatistics:
    """A target from a file: a statistics .npz, or an image that ``load_images`` reads."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "statistics" not in data.files:
                    raise DataError(f"{path}: not a statistics file (no 'statistics' array; keys {data.files})")
                contents = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{path}: not a readable .npz file ({err})") from None
        return from_mapping(contents, periodic=periodic, size=size, index=index, source=str(path))
    if size is not None:
        raise InputError("size applies to a statistics map; an image target is reconstructed at its own size")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        if np.issubdtype(array.dtype, np.integer) and array.size and array.max() > 1:  # phase labels
            if array.ndim == 3:
                if not 0 <= index < len(array):
                    raise InputError(f"{path}: holds {len(array)} images, no index {index}")
                array = array[index]
            return from_image(array, periodic=True if periodic is None else periodic, name=f"{path.stem}")
    from microlatent.data.sources import load_images, source_phases

    k = source_phases(path)
    images, names = load_images(path, limit=index + 1, n_phases=k)
    if index >= len(images):
        raise InputError(f"{path}: holds {len(images)} images, no index {index}")
    image = images[index].astype(np.int64) if k > 2 else images[index]
    return from_image(image, periodic=True if periodic is None else periodic, n_phases=k, name=names[index])


# --------------------------------------------------------------------------------------------------


def _pairs_of(pairs, n_pairs, where):
    if isinstance(pairs, str):
        if pairs == "all":
            n = int(round(np.sqrt(n_pairs)))
            if n * n != n_pairs or n < 2:
                raise InputError(f"{where}{n_pairs} maps are not all ordered pairs of C >= 2 phases (C*C maps)")
            return resolve_pairs("all", n), n
        if pairs == "auto":
            if n_pairs < 2:
                raise InputError(
                    f"{where}pairs 'auto' means one autocorrelation per phase (at least 2), got {n_pairs} map"
                )
            return resolve_pairs("auto", n_pairs), n_pairs
    try:
        pair_list = (
            [(int(h), int(k)) for h, k in np.asarray(pairs).reshape(-1, 2).tolist()]
            if not isinstance(pairs, str)
            else None
        )
    except (TypeError, ValueError):
        pair_list = None
    if not pair_list:
        raise InputError(f"{where}pairs must be 'all', 'auto' or a list of (h, h') pairs, got {pairs!r}")
    if len(pair_list) != n_pairs:
        raise InputError(
            f"{where}{len(pair_list)} pairs are named but the map has {n_pairs} (shape (K, H', W') with K pairs)"
        )
    if len(set(pair_list)) != len(pair_list):
        raise InputError(f"{where}a phase pair is named twice in {pair_list}")
    if min(min(p) for p in pair_list) < 0:
        raise InputError(f"{where}phase pairs must be >= 0, got {pair_list}")
    n_phases = max(2, max(max(p) for p in pair_list) + 1)
    return pair_list, n_phases


def _image_shape(map_h, map_w, periodic, size, where):
    """(image shape, crop or None) for a map of map_h x map_w offsets."""
    if periodic:
        natural = (map_h, map_w)
    else:
        if map_h % 2 == 0 or map_w % 2 == 0:
            if size is None:
                raise InputError(
                    f"{where}a non-periodic map of every offset is (2H-1) x (2W-1), odd on both sides; "
                    f"got {map_h} x {map_w} (a cropped map needs the image size)"
                )
        natural = ((map_h + 1) // 2, (map_w + 1) // 2)
    if size is None:
        return natural, None
    shape = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"{where}size must be a positive integer or (H, W), got {size!r}")
    full = shape if periodic else (2 * shape[0] - 1, 2 * shape[1] - 1)
    if map_h > full[0] or map_w > full[1]:
        raise InputError(
            f"{where}a {map_h} x {map_w} map has more offsets than the {full[0]} x {full[1]} map of "
            f"{shape[0]} x {shape[1]} images"
        )
    crop = None if (map_h, map_w) == full else (map_h, map_w)
    return shape, crop


def _complete(values, pair_list, n_phases, periodic, centre, where):
    """Every ordered pair, h-major, from the pairs given."""
    full = np.full((n_phases * n_phases,) + values.shape[1:], np.nan)
    for (h, k), m in zip(pair_list, values):
        full[h * n_phases + k] = m
    if not np.isnan(full).any():
        return full
    if n_phases == 2 and periodic and ((1, 1) in pair_list or (0, 0) in pair_list):
        # Periodic 2-phase maps follow from one autocorrelation: f10 = f01 = v1 - f11, f00 = 1 - 2 v1 + f11.
        if (1, 1) in pair_list:
            f11 = values[pair_list.index((1, 1))]
            v1 = f11[centre]
        else:
            f00 = values[pair_list.index((0, 0))]
            v1 = 1 - f00[centre]
            f11 = f00 - 1 + 2 * v1
        derived = np.stack([1 - 2 * v1 + f11, v1 - f11, v1 - f11, f11])
        for index, (h, k) in enumerate(resolve_pairs("all", 2)):
            if (h, k) in pair_list:
                worst = np.abs(full[index] - derived[index]).max()
                if worst > 1e-3:
                    raise InputError(
                        f"{where}pair ({h}, {k}) disagrees with the other pairs by up to {worst:.3g}: "
                        "not the statistics of one 2-phase periodic image"
                    )
        return derived
    missing = [(h, k) for h in range(n_phases) for k in range(n_phases) if np.isnan(full[h * n_phases + k]).all()]
    raise InputError(
        f"{where}needs every ordered phase pair here (missing {missing}); save them with "
        "`microlatent stats --pairs all` (only 2-phase periodic maps can do with one autocorrelation)"
    )


def _check_map(full, n_phases, periodic, centre, ry, rx, where, tol=1e-3):
    total = full.sum(0)
    worst = np.unravel_index(np.argmax(np.abs(total - 1)), total.shape)
    if abs(total[worst] - 1) > tol:
        raise InputError(
            f"{where}the pair maps must sum to 1 at every offset, but sum to {total[worst]:.4g} at offset "
            f"({ry[worst[0]]}, {rx[worst[1]]})"
        )
    cy, cx = centre
    vf = np.array([full[h * n_phases + h, cy, cx] for h in range(n_phases)])
    if abs(vf.sum() - 1) > tol:
        raise InputError(
            f"{where}the autocorrelations at offset 0 (volume fractions {np.round(vf, 4).tolist()}) do not sum to 1: "
            "not a centred map?"
        )
    if periodic:
        for h in range(n_phases):
            rows = full[h * n_phases : (h + 1) * n_phases].sum(0)
            if np.abs(rows - vf[h]).max() > tol:
                raise InputError(
                    f"{where}f({h}, . | r) summed over the second phase must equal the volume fraction {vf[h]:.4g} "
                    f"at every offset of a periodic map (got {rows.min():.4g} to {rows.max():.4g})"
                )
            auto = full[h * n_phases + h]
            if auto.max() > vf[h] + tol:
                peak = np.unravel_index(np.argmax(auto), auto.shape)
                raise InputError(
                    f"{where}f({h}, {h} | r) peaks at offset ({ry[peak[0]]}, {rx[peak[1]]}), not at 0: a periodic "
                    "autocorrelation is largest at the zero offset (is the map centred?)"
                )


def _volume_fraction_argument(volume_fraction, n_phases):
    vf = np.atleast_1d(np.asarray(volume_fraction, dtype=np.float64))
    if n_phases == 2 and vf.size == 1:
        vf = np.array([1 - vf[0], vf[0]])
    if vf.size != n_phases:
        raise InputError(
            f"volume_fraction must give {n_phases} fractions (or, for 2 phases, that of phase 1), got {vf.tolist()}"
        )
    if (vf < 0).any() or (vf > 1).any() or abs(vf.sum() - 1) > 1e-6:
        raise InputError(f"volume fractions must lie in [0, 1] and sum to 1, got {vf.tolist()}")
    return vf
