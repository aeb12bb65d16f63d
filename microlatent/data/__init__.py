"""Data sets: synthetic generators, MICRO2D-layout HDF5 storage, a lazy PyTorch dataset, import.

Generators (``microlatent.data.generators``)
    :func:`generate` (``"lines"``, ``"circles"``, ``"micro2d-like"`` or one MICRO2D class),
    :func:`iter_batches`, the :data:`GENERATORS` registry (one function per class) and
    :func:`parse_label` for the ``key=value; ...`` label strings.
Storage (``microlatent.data.store``)
    MICRO2D's HDF5 layout, ``f[C][C]`` images and ``f[C][C + " - labels"]``:
    :func:`write_class`, :func:`list_classes`, :func:`read_images`, :func:`read_labels`,
    :func:`file_info`; :func:`write_generated` streams generated classes into a file and
    :func:`ensure_dataset` does so only for classes not already there with the same arguments.
Splits (``microlatent.data.split``)
    :class:`Split` (seed, fractions, classes; :meth:`Split.from_config` rebuilds a training run's),
    :func:`read_split` / :func:`iter_split` / :func:`sample_split`, the one reader of a split's
    images, as :class:`Samples`; :func:`load_samples` also takes image files, folders and .npy.
Training
    :class:`MicrostructureDataset`, lazy, split per class, optional resize;
    ``microlatent.data.loading``: the datasets a training config names, the image cache
    (:class:`~microlatent.data.loading.CachedImages`) and the DataLoader the training loop drives;
    ``microlatent.data.augment``: random circular shifts and square symmetries of training batches.
Import
    :func:`import_images` thresholds a folder of PNG/TIFF images into the same layout.
"""

from microlatent.data.dataset import MicrostructureDataset
from microlatent.data.generators import (
    GENERATORS,
    KINDS,
    MICRO2D_CLASSES,
    generate,
    iter_batches,
    parse_label,
    resolve_kind,
)
from microlatent.data.importing import import_images
from microlatent.data.make import ensure_dataset, write_generated
from microlatent.data.sources import load_images, load_samples
from microlatent.data.split import Samples, Split, iter_split, read_split, sample_split, split_indices
from microlatent.data.store import (
    file_info,
    list_classes,
    read_images,
    read_labels,
    read_property,
    write_class,
    write_class_batches,
    write_property,
)

__all__ = [
    "GENERATORS",
    "KINDS",
    "MICRO2D_CLASSES",
    "MicrostructureDataset",
    "Samples",
    "Split",
    "ensure_dataset",
    "file_info",
    "generate",
    "import_images",
    "iter_batches",
    "iter_split",
    "load_images",
    "load_samples",
    "list_classes",
    "parse_label",
    "read_images",
    "read_labels",
    "read_property",
    "read_split",
    "resolve_kind",
    "sample_split",
    "split_indices",
    "write_class",
    "write_class_batches",
    "write_generated",
    "write_property",
]
