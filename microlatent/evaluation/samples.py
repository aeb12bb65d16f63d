"""The images an evaluation runs on: one split of a data set, with each image's class, index and label.

The split is the one training used (:func:`microlatent.data.dataset.split_indices` with the
checkpoint's ``data.split_seed`` and ``data.split_fractions``), so "test" means images no model saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microlatent.data import store
from microlatent.data.dataset import split_indices
from microlatent.data.sources import load_images
from microlatent.errors import DataError, InputError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


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


def resolve_classes(path, classes=None):
    names = store.list_classes(path)
    if not classes:
        return names
    classes = [classes] if isinstance(classes, str) else list(classes)
    missing = [c for c in classes if c not in names]
    if missing:
        raise DataError(f"{path}: no class {missing[0]!r} (classes: {', '.join(names)})")
    return classes


def _labels(path, name, indices):
    try:
        return store.read_labels(path, name, indices)
    except DataError:  # a file without label datasets
        return [""] * len(indices)


def load_split(data, split="test", limit_per_class=None, classes=None, split_seed=0, split_fractions=DEFAULT_FRACTIONS):
    """The first ``limit_per_class`` images of each class in ``split`` of ``data`` (an HDF5 file in the
    MICRO2D layout; an image, folder or .npy is read whole by :func:`load_images`, as one class
    "all", and ``split`` does not apply)."""
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not is_hdf5(path):
        images, names = load_images(path, limit=limit_per_class)
        return Samples(images, names, ["all"] * len(images), [-1] * len(images), [""] * len(images),
                       {"data": str(path), "split": "all (not an HDF5 file)"})
    images, names, class_list, indices, labels = [], [], [], [], []
    for name in resolve_classes(path, classes):
        chosen = split_indices(store.class_size(path, name)[0], name, split, split_fractions, split_seed)
        if limit_per_class:
            chosen = chosen[:limit_per_class]
        if len(chosen) == 0:
            continue
        images.extend(store.read_images(path, name, chosen))
        labels.extend(_labels(path, name, chosen))
        names.extend(f"{name}[{i}]" for i in chosen)
        class_list.extend([name] * len(chosen))
        indices.extend(int(i) for i in chosen)
    if not images:
        raise InputError(f"{path}: no images in split {split!r}")
    return Samples(images, names, class_list, indices, labels,
                   {"data": str(path), "split": split, "split_seed": split_seed, "split_fractions": list(split_fractions)})


def split_members(data, split, classes=None, split_seed=0, split_fractions=DEFAULT_FRACTIONS):
    """[(class, (k,) indices)] of every class's images in ``split`` of an HDF5 file."""
    return [(name, split_indices(store.class_size(data, name)[0], name, split, split_fractions, split_seed))
            for name in resolve_classes(data, classes)]


def iter_split(data, split, classes=None, split_seed=0, split_fractions=DEFAULT_FRACTIONS, limit_per_class=None, chunk=256):
    """Stream a whole split: yields (class, indices (k,), images (k, H, W) uint8 0/1, labels) chunks."""
    for name, indices in split_members(data, split, classes, split_seed, split_fractions):
        if limit_per_class:
            indices = indices[:limit_per_class]
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            yield name, part, store.read_images(data, name, part), _labels(data, name, part)


def sample_split(data, split, n, classes=None, split_seed=0, split_fractions=DEFAULT_FRACTIONS, seed=0):
    """Up to ``n`` images drawn at random (without replacement, by ``seed``) from a whole split, in file
    order: a :class:`Samples`."""
    members = [(name, int(i)) for name, indices in split_members(data, split, classes, split_seed, split_fractions)
               for i in indices]
    if not members:
        raise InputError(f"{data}: no images in split {split!r}")
    chosen = sorted(np.random.default_rng(seed).permutation(len(members))[:n])
    picked = [members[k] for k in chosen]
    images, labels = [], []
    for name in dict.fromkeys(c for c, _ in picked):
        idx = [i for c, i in picked if c == name]
        images.extend(store.read_images(data, name, idx))
        labels.extend(_labels(data, name, idx))
    return Samples(images, [f"{c}[{i}]" for c, i in picked], [c for c, _ in picked], [i for _, i in picked], labels,
                   {"data": str(data), "split": split})
