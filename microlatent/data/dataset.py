"""A lazy PyTorch ``Dataset`` over one MICRO2D-layout HDF5 file."""

from __future__ import annotations

import os
from collections.abc import Sequence

import h5py
import numpy as np
import torch

from microlatent.data import store
from microlatent.data.resize import resize_images
from microlatent.data.split import DEFAULT_FRACTIONS, split_indices
from microlatent.errors import DataError, InputError


class MicrostructureDataset(torch.utils.data.Dataset):
    """Images of one HDF5 file (MICRO2D layout), any subset of its classes, one split.

    Nothing but indices is held in memory: each item is read from the file when asked for. The
    h5py file is opened on first access in each process (so every ``DataLoader`` worker gets its
    own handle) and is never pickled.

    Parameters
    ----------
    path : str or path-like
        HDF5 file in MICRO2D layout (e.g. ``MICRO2D_homogenized.h5`` or a generated set).
    classes : str or sequence of str, optional
        Classes to use, in this order (``class_index`` follows it); default all, in file order.
    split : {"train", "val", "test", "all"}, default "train"
    split_fractions : (float, float, float), default (0.8, 0.1, 0.1)
        Train/val/test shares, applied per class.
    seed : int, default 0
        Seed of the per-class permutations.
    size : int, optional
        Resize images to ``size x size`` (Cai et al. resize MICRO2D's 256 to 224): bilinear with
        antialiasing, then re-binarised keeping each image's volume fraction, so training targets
        stay 0/1 (:func:`microlatent.data.resize.resize_images`). Default: keep the stored size.

    Items are dicts: ``"image"`` float32 tensor (1, H, W) in [0, 1] (two phases: phase 1's
    indicator), or (K, H, W) one-hot phase indicators for a K-phase file (``n_phases``); ``"class"`` str;
    ``"class_index"`` int (position in :attr:`classes`); ``"label"`` str; ``"index"`` int (image
    index within its class in the file).

    Attributes
    ----------
    classes : list of str
    counts : dict of str to int
        Items per class in this split.
    """

    def __init__(
        self,
        path,
        classes: str | Sequence[str] | None = None,
        split: str = "train",
        split_fractions=DEFAULT_FRACTIONS,
        seed: int = 0,
        size: int | None = None,
    ):
        self.path = os.fspath(path)
        available = store.list_classes(self.path)
        if classes is None:
            classes = available
        elif isinstance(classes, str):
            classes = [classes]
        classes = list(classes)
        missing = [c for c in classes if c not in available]
        if missing:
            raise DataError(f"{self.path}: no class {missing[0]!r} (classes in file: {', '.join(available) or 'none'})")
        if len(set(classes)) != len(classes):
            raise InputError(f"classes must be distinct, got {classes}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InputError(f"size must be a positive integer or None, got {size!r}")
        self.classes = classes
        self.split = split
        self.size = size
        phases = {name: store.class_phases(self.path, name) for name in classes}
        if len(set(phases.values())) > 1:
            listed = ", ".join(f"{name}: {k}" for name, k in phases.items())
            raise InputError(
                f"{self.path}: the classes have different numbers of phases ({listed}); choose classes of one"
            )
        self.n_phases = next(iter(phases.values()), 2)
        class_ids, indices, self.counts = [], [], {}
        shapes = {name: store.class_size(self.path, name)[1:] for name in classes}
        if size is None and len(set(shapes.values())) > 1:  # a batch needs one size
            listed = ", ".join(f"{name}: {h}x{w}" for name, (h, w) in shapes.items())
            raise InputError(
                f"{self.path}: the classes have different image sizes ({listed}); resize them "
                "to one (config data.size) or choose classes of one size (data.classes)"
            )
        for k, name in enumerate(classes):
            n = store.class_size(self.path, name)[0]
            part = split_indices(n, name, split, split_fractions, seed)
            class_ids.append(np.full(len(part), k, dtype=np.int32))
            indices.append(part)
            self.counts[name] = len(part)
        self._class_ids = np.concatenate(class_ids) if classes else np.zeros(0, np.int32)
        self._indices = np.concatenate(indices) if classes else np.zeros(0, np.int64)
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self._indices)

    def _handle(self) -> h5py.File:
        # A handle opened before fork() must not be shared by workers: reopen per process.
        if self._file is None or self._pid != os.getpid():
            self._file = store.open_file(self.path)
            self._pid = os.getpid()
        return self._file

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self):
        file = getattr(self, "_file", None)
        if file is not None and getattr(self, "_pid", None) == os.getpid():
            try:
                file.close()
            except Exception:  # interpreter shutdown: h5py may already be gone
                pass

    def __getitem__(self, item: int) -> dict:
        if not -len(self) <= item < len(self):
            raise IndexError(f"index {item} out of range for a dataset of {len(self)} items")
        class_id = int(self._class_ids[item])
        index = int(self._indices[item])
        name = self.classes[class_id]
        group = self._handle()[name]
        array = group[name][index]
        if (array > self.n_phases - 1).any():
            what = "2-phase 0/1" if self.n_phases == 2 else f"{self.n_phases}-phase (0..{self.n_phases - 1})"
            raise DataError(f"{self.path}: {name} image {index} is not {what}")
        label = group[name + store.LABELS_SUFFIX][index] if name + store.LABELS_SUFFIX in group else ""
        label = label.decode("utf-8") if isinstance(label, bytes) else str(label)
        if self.n_phases > 2:  # phase probabilities (K, H, W): one-hot, resized as labels (nearest)
            labels = torch.from_numpy(array.astype(np.int64))
            if self.size is not None and tuple(labels.shape) != (self.size, self.size):
                labels = torch.nn.functional.interpolate(
                    labels[None, None].float(), size=(self.size, self.size), mode="nearest"
                )[0, 0].long()
            image = torch.nn.functional.one_hot(labels, self.n_phases).permute(2, 0, 1).float()
            return {"image": image, "class": name, "class_index": class_id, "label": label, "index": index}
        image = torch.from_numpy(array.astype(np.float32))[None]
        if self.size is not None:
            image = resize_images(image[None], self.size)[0]  # stays 0/1 (see microlatent.data.resize)
        return {"image": image, "class": name, "class_index": class_id, "label": label, "index": index}

    def __repr__(self) -> str:
        return (
            f"MicrostructureDataset({self.path!r}, classes={self.classes}, split={self.split!r}, "
            f"items={len(self)}, size={self.size})"
        )
