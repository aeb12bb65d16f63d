"""Feeding images to training: the datasets a training config names, an optional resized image cache,
and the DataLoader whose batches the training loop chooses.

    training_datasets(config["data"]) -> (train, val)   generated if asked for, split, cached
    CachedImages.in_memory / .on_disk                   a resized uint8 copy of a dataset's images
    make_loader(dataset, workers, device) -> (loader, BatchList)
                                                        the loop sets ``batches`` each epoch
    mean_volume_fraction(dataset)                       where the decoder's output starts
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from microlatent.errors import DataError, InputError


def mean_volume_fraction(dataset, limit=2000):
    """Mean phase-1 share of a dataset's images (of ``limit`` of them, evenly spaced, when larger); for
    K-phase images (K, H, W), the list of every phase's mean share."""
    n = len(dataset)
    if n == 0:
        return 0.5
    picks = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))
    shares = np.mean([dataset[int(i)]["image"].mean(dim=(-2, -1)).numpy() for i in picks], axis=0)
    return float(shares[0]) if len(shares) == 1 else [float(v) for v in shares]


def training_datasets(data_cfg, ddp=None):
    """(train, val) datasets of a training config's ``data`` section: generated first if it asks for
    it (rank 0 only, the other ranks wait), split as it says, optionally cached (``data.cache``).
    ``ddp``: a ``microlatent.training.distributed.Distributed`` (None: one process)."""
    from microlatent.data import MicrostructureDataset
    from microlatent.data.make import ensure_dataset

    if data_cfg["path"] is None:
        raise InputError("config data.path is not set: name an HDF5 file in the MICRO2D layout")
    path = Path(data_cfg["path"])
    cache = "disk" if data_cfg.get("cache") is True else data_cfg.get("cache") or None  # .get: older runs' configs
    if cache not in (None, "memory", "disk"):
        raise InputError(f"config data.cache = {cache!r} is not one of null, memory, disk (true = disk)")
    if data_cfg["generate"] and (ddp is None or ddp.is_main):
        spec = dict(data_cfg["generate"])
        if "kind" not in spec or "n" not in spec:
            raise InputError(f"config data.generate needs kind and n; it has {sorted(spec)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        ensure_dataset(path, spec.pop("kind"), spec.pop("n"), **spec)  # generates only what is missing
    if ddp is not None:
        ddp.barrier()  # under torchrun the other ranks wait while rank 0 generates the data
    kwargs = dict(
        classes=data_cfg["classes"],
        seed=data_cfg["split_seed"],
        split_fractions=tuple(data_cfg["split_fractions"]),
        size=data_cfg["size"],
    )
    sets = [MicrostructureDataset(path, split=split, **kwargs) for split in ("train", "val")]
    if cache == "memory":
        sets = [CachedImages.in_memory(dataset, data_cfg["num_workers"]) for dataset in sets]
    elif cache == "disk":
        sets = [CachedImages.on_disk(dataset, data_cfg["num_workers"]) for dataset in sets]
    return sets


class CachedImages(torch.utils.data.Dataset):
    """A resized copy of a MicrostructureDataset's images: items ``{"image": (1, H, W) float32}``.

    Stored as uint8 (the images are 0/1, resized ones too: exact).
    ``in_memory`` holds an array (DataLoader workers share it through fork);
    ``on_disk`` writes ``<data file>.cache/<split>-<key>.npy`` once, keyed by the data file's size and
    mtime and by the split, and memory-maps it in each process, so workers, ranks and sweep trials
    share one copy through the page cache. Delete the .cache folder to reclaim the space.
    """

    def __init__(self, images=None, path=None, n_phases=2):
        self.images, self.path, self.n_phases = images, path, n_phases

    @classmethod
    def in_memory(cls, dataset, num_workers=0):
        shape, dtype = _cache_layout(dataset)
        return cls(images=_read_all(dataset, num_workers, np.empty(shape, dtype)), n_phases=dataset.n_phases)

    @classmethod
    def on_disk(cls, dataset, num_workers=0):
        source = Path(dataset.path)
        info = source.stat()
        indices = hashlib.sha1(np.ascontiguousarray(dataset._indices).tobytes()).hexdigest()
        key = json.dumps(
            ["binary-v2", str(source.resolve()), info.st_size, info.st_mtime_ns, dataset.classes, indices, dataset.size]
        )
        path = source.with_suffix(".cache") / f"{dataset.split}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
        try:
            path.parent.mkdir(exist_ok=True)
            with _file_lock(path.with_suffix(".lock")):  # one process (rank, sweep worker) writes; the rest wait
                if not path.exists():
                    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial")
                    shape, dtype = _cache_layout(dataset)
                    _read_all(dataset, num_workers, np.lib.format.open_memmap(tmp, "w+", dtype, shape)).flush()
                    os.replace(tmp, path)  # atomic: a reader sees the whole cache or none
        except OSError as err:
            raise DataError(f"{path}: cannot write the image cache ({err}); use data.cache: memory") from None
        return cls(path=path, n_phases=dataset.n_phases)

    def __len__(self):
        return len(self._array())

    def __getitem__(self, item):
        image = torch.from_numpy(np.array(self._array()[item]))
        return {"image": image.float() / 255 if image.dtype == torch.uint8 else image.float()}

    def _array(self):
        if self.images is None:  # opened lazily in each process: a memmap must not be pickled whole
            self.images = np.load(self.path, mmap_mode="r")
        return self.images

    def __getstate__(self):
        return {"images": None if self.path else self.images, "path": self.path, "n_phases": self.n_phases}


@contextmanager
def _file_lock(path):
    """An exclusive lock on ``path`` (flock) while the block runs; no lock where fcntl is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_layout(dataset):
    shape = (len(dataset), *dataset[0]["image"].shape) if len(dataset) else (0, 1, 1, 1)
    return shape, np.uint8


def _read_all(dataset, num_workers, out):
    """Fill the array ``out`` with every image of ``dataset`` (scaled to 0..255 for uint8); returns it.

    Under torchrun the copy is read in-process: forking loader workers while holding the cache's file
    lock, next to the process group's threads, deadlocked (seen with gloo on CPU).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        num_workers = 0
    loader, sampler = make_loader(dataset, num_workers, torch.device("cpu"), persistent=False)
    sampler.batches = list(torch.arange(len(dataset)).split(64))
    done = 0
    for images in tqdm(loader, desc=f"caching {dataset.split} images", leave=False, unit="batch"):
        out[done : done + len(images)] = (images * 255 if out.dtype == np.uint8 else images).numpy()
        done += len(images)
    return out


class BatchList(torch.utils.data.Sampler):
    """The DataLoader's batch sampler: the lists of indices the loop sets for each epoch."""

    def __init__(self):
        self.batches = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def make_loader(dataset, num_workers, device, persistent=True):
    """(DataLoader, its BatchList): the loop sets ``sampler.batches`` and iterates the loader. The loader
    has a generator of its own: by default each iteration would draw its workers' seed from the global
    RNG, which draws the VAE's noise, and resume would no longer be exact."""
    sampler = BatchList()
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_stack_images,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    return loader, sampler


def _stack_images(items):
    return torch.stack([item["image"] for item in items])
