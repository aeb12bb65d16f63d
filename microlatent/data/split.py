"""Train/val/test splits of a MICRO2D-layout file, and the one reader of a split's images.

A :class:`Split` says how a file is cut (per class, by seed and fractions); training records it in
its config and every later command rebuilds it from there (:meth:`Split.from_config`), so "test"
always means the images no model saw. :func:`read_split`, :func:`iter_split` and :func:`sample_split`
read a part of it as :class:`Samples`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microlatent.data import store
from microlatent.errors import DataError, InputError

PARTS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def split_indices(
    n: int, class_name: str, split: str = "train", split_fractions=DEFAULT_FRACTIONS, seed: int = 0
) -> np.ndarray:
    """Indices (sorted) of one class's images in a train/val/test split.

    The class's own random permutation, seeded by ``(seed, crc32(class_name))``, is cut at
    ``round(n * f_train)`` and ``round(n * (f_train + f_val))``; the split of a class therefore
    depends only on its name, its size, ``seed`` and the fractions, never on which other classes
    are loaded. ``split="all"`` returns every index.

    Returns
    -------
    (k,) int64
    """
    if split not in PARTS:
        raise InputError(f"split must be one of {', '.join(PARTS)}, got {split!r}")
    fractions = np.asarray(split_fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise InputError(f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions!r}")
    if split == "all":
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([int(seed), zlib.crc32(class_name.encode())])
    order = rng.permutation(n)
    cut1 = int(round(n * fractions[0]))
    cut2 = max(cut1, min(n, int(round(n * (fractions[0] + fractions[1])))))
    part = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}[split]
    return np.sort(part).astype(np.int64)


@dataclass(frozen=True)
class Split:
    """How a file's images are cut into train/val/test: per class, by ``seed`` and ``fractions``
    (:func:`split_indices`), over ``classes`` (None: every class in the file, in file order)."""

    seed: int = 0
    fractions: tuple = DEFAULT_FRACTIONS
    classes: tuple | None = None

    @classmethod
    def from_config(cls, config) -> Split:
        """The split a training config (a whole config or its ``data`` section) used."""
        data = (config or {}).get("data", config) or {}
        fractions = tuple(float(f) for f in (data.get("split_fractions") or DEFAULT_FRACTIONS))
        return cls(seed=int(data.get("split_seed") or 0), fractions=fractions).with_classes(data.get("classes"))

    def with_classes(self, classes) -> Split:
        """The same cut over other classes (one name, several, or None: every class of the file)."""
        return Split(
            self.seed, self.fractions, tuple([classes] if isinstance(classes, str) else classes) if classes else None
        )

    def indices(self, n: int, class_name: str, part: str) -> np.ndarray:
        return split_indices(n, class_name, part, self.fractions, self.seed)

    def members(self, path, part: str) -> list[tuple[str, np.ndarray]]:
        """[(class, (k,) indices)] of each class's images in ``part`` of an HDF5 file."""
        return [
            (name, self.indices(store.class_size(path, name)[0], name, part))
            for name in resolve_classes(path, self.classes)
        ]


@dataclass
class Samples:
    """Images (list of (H, W) arrays in [0, 1]: uint8 0/1 from HDF5 files, a quarter of the memory of
    float32; float32 from other sources) with, per image, its name ("Class[index]"), class, index
    within its class in the file (-1 outside HDF5 files) and label string ('' if none)."""

    images: list
    names: list
    classes: list
    indices: list
    labels: list
    source: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.images)

    def class_names(self):
        """Classes in order of first appearance."""
        return list(dict.fromkeys(self.classes))

    def where(self, class_name):
        """Positions of the samples of one class."""
        return np.array([i for i, c in enumerate(self.classes) if c == class_name], dtype=np.int64)


def is_hdf5(path) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix.lower() not in (".npy", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def resolve_classes(path, classes=None) -> list[str]:
    """``classes`` (one name or several) checked against the file, or all of its classes."""
    names = store.list_classes(path)
    if not classes:
        return names
    classes = [classes] if isinstance(classes, str) else list(classes)
    missing = [c for c in classes if c not in names]
    if missing:
        raise DataError(f"{path}: no class {missing[0]!r} (classes: {', '.join(names)})")
    return classes


def read_split(path, part: str = "test", split: Split = Split(), limit_per_class=None, limit=None) -> Samples:
    """The images of ``part`` of an HDF5 file, class by class in file (or ``split.classes``) order:
    the first ``limit_per_class`` of each class, and at most ``limit`` in all."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    images, names, classes, indices, labels = [], [], [], [], []
    for name, chosen in split.members(path, part):
        if limit_per_class:
            chosen = chosen[:limit_per_class]
        if limit:
            chosen = chosen[: max(0, limit - len(images))]
        if len(chosen) == 0:
            continue
        images.extend(store.read_images(path, name, chosen))
        labels.extend(_labels(path, name, chosen))
        names.extend(f"{name}[{i}]" for i in chosen)
        classes.extend([name] * len(chosen))
        indices.extend(int(i) for i in chosen)
    if not images:
        raise InputError(f"{path}: no images in split {part!r}")
    return Samples(
        images,
        names,
        classes,
        indices,
        labels,
        {"data": str(path), "split": part, "split_seed": split.seed, "split_fractions": list(split.fractions)},
    )


def iter_split(path, part: str, split: Split = Split(), limit_per_class=None, chunk=256):
    """Stream a whole part: yields (class, indices (k,), images (k, H, W) uint8 0/1, labels) chunks."""
    for name, indices in split.members(path, part):
        if limit_per_class:
            indices = indices[:limit_per_class]
        for start in range(0, len(indices), chunk):
            chosen = indices[start : start + chunk]
            yield name, chosen, store.read_images(path, name, chosen), _labels(path, name, chosen)


def sample_split(path, part: str, n: int, split: Split = Split(), seed=0) -> Samples:
    """Up to ``n`` images drawn at random (without replacement, by ``seed``) from a whole part, in file
    order."""
    members = [(name, int(i)) for name, indices in split.members(path, part) for i in indices]
    if not members:
        raise InputError(f"{path}: no images in split {part!r}")
    chosen = sorted(np.random.default_rng(seed).permutation(len(members))[:n])
    picked = [members[k] for k in chosen]
    images, labels = [], []
    for name in dict.fromkeys(c for c, _ in picked):
        idx = [i for c, i in picked if c == name]
        images.extend(store.read_images(path, name, idx))
        labels.extend(_labels(path, name, idx))
    return Samples(
        images,
        [f"{c}[{i}]" for c, i in picked],
        [c for c, _ in picked],
        [i for _, i in picked],
        labels,
        {"data": str(path), "split": part},
    )


def _labels(path, name, indices):
    try:
        return store.read_labels(path, name, indices)
    except DataError:  # a file without label datasets
        return [""] * len(indices)
