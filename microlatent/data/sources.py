"""Images from wherever a command line names them: an HDF5 file, an image file, a folder, a .npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microlatent.data.importing import IMAGE_SUFFIXES, binarise, read_image
from microlatent.data.split import Samples, Split, is_hdf5, read_split
from microlatent.errors import DataError


def load_images(
    source,
    classes=None,
    split="all",
    limit=None,
    per_class=True,
    seed=0,
    threshold="otsu",
    split_fractions=None,
    n_phases=2,
):
    """Microstructures and a name for each, from ``source``:

    - an HDF5 file in the MICRO2D layout: images of ``classes`` (default all) in ``split`` (split by
      ``seed`` as ``MicrostructureDataset`` does), the first ``limit`` of each class (or of all, with
      ``per_class=False``); names are "Class[index]";
    - a PNG/TIFF image, thresholded (Otsu by default) unless already 0/1; a folder of them;
    - a .npy array (H, W) or (N, H, W) of values in [0, 1].

    Returns (list of (H, W) float32 arrays in [0, 1], list of str). Sizes may differ between image
    files of a folder.

    ``n_phases`` K > 2: the arrays hold phase indices 0 .. K - 1 instead: an HDF5 class must have K
    phases, a .npy whole numbers 0 .. K - 1, an image K grey levels or it is split by multi-level
    Otsu (:func:`~microlatent.data.importing.to_phases`). ``n_phases=None``: whatever the source
    holds (an HDF5 class's K, a .npy's largest label + 1; images: 2).
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no PNG/TIFF images in this folder")
        files = files[:limit] if limit else files
        return [_image_file(p, threshold, n_phases) for p in files], [p.name for p in files]
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [_image_file(path, threshold, n_phases)], [path.name]
    if path.suffix.lower() == ".npy":
        return _npy(path, limit, n_phases)
    images, names = _hdf5(path, classes, split, limit, per_class, seed, split_fractions)
    from microlatent.data.store import class_phases, list_classes

    found = {class_phases(path, c) for c in (classes or list_classes(path))}
    if n_phases is not None and found != {n_phases}:
        raise DataError(
            f"{path}: classes with {', '.join(map(str, sorted(found)))} phases, {n_phases} asked for"
            + (" (say K: --phases K, or --E with K moduli)" if n_phases == 2 else "")
        )
    return images, names


def source_phases(source, classes=None) -> int:
    """Number of phases a source holds: an HDF5 file's classes' (one number, else DataError), a .npy's
    largest label + 1 when it holds whole numbers above 1, else 2."""
    path = Path(source)
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        top = float(np.max(array)) if array.size else 0.0
        whole = np.issubdtype(array.dtype, np.integer) or (np.isfinite(top) and np.array_equal(array, np.round(array)))
        return int(top) + 1 if whole and top > 1 else 2
    if is_hdf5(path):
        from microlatent.data.store import class_phases, list_classes

        found = {class_phases(path, c) for c in (classes or list_classes(path))}
        if len(found) > 1:
            raise DataError(
                f"{path}: classes with different numbers of phases {sorted(found)}; choose classes (--class)"
            )
        return found.pop()
    return 2


def _image_file(path, threshold, n_phases=2):
    grey = read_image(str(path))
    if n_phases and n_phases > 2:
        from microlatent.data.importing import to_phases

        return to_phases(grey, n_phases)[0].astype(np.float32)
    if np.isin(grey, (0.0, 1.0)).all():
        return grey.astype(np.float32)
    return binarise(grey, threshold, invert=False)[0].astype(np.float32)


def _npy(path, limit, n_phases=2):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"{path}: expected an array (H, W) or (N, H, W), got shape {array.shape}")
    if len(array) == 0 or 0 in array.shape[1:]:
        raise DataError(f"{path}: no images (array shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise DataError(f"{path}: values must be real numbers in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {int((~np.isfinite(array)).sum())} values are NaN or infinite")
    if n_phases is None:
        n_phases = source_phases(path)
    if n_phases > 2:
        if (array != np.round(array)).any() or array.min() < 0 or array.max() > n_phases - 1:
            raise DataError(
                f"{path}: values must be phase labels 0..{n_phases - 1}, got {array.min():g} to {array.max():g}"
            )
    elif array.min() < 0 or array.max() > 1:
        hint = (
            " (integer phase labels of K phases? say K: --phases K, or --E with K moduli)"
            if array.max() > 1 and np.array_equal(array, np.round(array))
            else ""
        )
        raise DataError(f"{path}: values must be numbers in [0, 1], got {array.min():g} to {array.max():g}{hint}")
    array = array[:limit] if limit else array
    return [a.astype(np.float32) for a in array], [f"{path.name}[{i}]" for i in range(len(array))]


def _hdf5(path, classes, part, limit, per_class, seed, split_fractions):
    split = Split(seed, tuple(split_fractions) if split_fractions else Split().fractions).with_classes(classes)
    samples = read_split(
        path, part, split, limit_per_class=limit if per_class else None, limit=None if per_class else limit
    )
    return [image.astype(np.float32) for image in samples.images], samples.names


def load_samples(source, part="test", split=Split(), limit_per_class=None) -> Samples:
    """The images an evaluation runs on: ``part`` of an HDF5 file cut by ``split``, the first
    ``limit_per_class`` of each class; an image, folder or .npy is read whole by :func:`load_images`,
    as one class "all", and the split does not apply."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not is_hdf5(path):
        images, names = load_images(path, limit=limit_per_class)
        return Samples(
            images,
            names,
            ["all"] * len(images),
            [-1] * len(images),
            [""] * len(images),
            {"data": str(path), "split": "all (not an HDF5 file)"},
        )
    return read_split(path, part, split, limit_per_class=limit_per_class)
