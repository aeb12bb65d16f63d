"""Read and write image sets in MICRO2D's HDF5 layout.

Layout (Robertson et al. 2024, file ``MICRO2D_homogenized.h5``), one group per class ``C``::

    f[C][C]                         uint8 (n, H, W), values 0/1 (or 0 .. K - 1: attribute f[C].attrs["n_phases"] = K)
    f[C][C + " - labels"]           n variable-length UTF-8 strings
    f[C]["homogenized_mechanical"]  optional float (n, 6, 5), attribute INSTRUCTIONS
    f[C]["homogenized_thermal"]     optional float (n, 6, 2), attribute INSTRUCTIONS

The real MICRO2D file and our generated or imported sets are read by the same functions. Images
are chunked one image per chunk and compressed (gzip by default), so reading one image
decompresses 64 KB and nothing else; writing streams in batches, so sets larger than memory work.
Writing a class into an existing file replaces that group and leaves the others.

Errors about files are :class:`~microlatent.errors.DataError` with one line naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import h5py
import numpy as np

from microlatent.errors import DataError, InputError

LABELS_SUFFIX = " - labels"
PHASES_ATTR = "n_phases"  # on a class group with more than two phases; absent = 2 (MICRO2D's own files)
_READ_BLOCK = 256  # images per streamed read when scanning a whole class


# --------------------------------------------------------------------------------------------
# Opening and locating.
# --------------------------------------------------------------------------------------------


def open_file(path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, turning "missing" and "not HDF5" into one-line DataErrors."""
    path = os.fspath(path)
    if mode == "r" and not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if mode == "r" and os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not an HDF5 file")
    if os.path.exists(path) and not os.path.isdir(path) and not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: cannot open as HDF5 ({reason})") from None


def _classes_in(f: h5py.File) -> list[str]:
    return [
        name
        for name, item in f.items()
        if isinstance(item, h5py.Group) and item.get(name, getclass=True) is h5py.Dataset
    ]


def _images_dataset(f: h5py.File, path, name: str) -> h5py.Dataset:
    classes = _classes_in(f)
    if name not in classes:
        found = ", ".join(classes) if classes else "none"
        raise DataError(f"{os.fspath(path)}: no class {name!r} (classes in file: {found})")
    data = f[name][name]
    if data.ndim != 3:
        raise DataError(f"{os.fspath(path)}: {name}/{name} has shape {data.shape}, expected (n, H, W)")
    return data


def _labels_dataset(f: h5py.File, path, name: str) -> h5py.Dataset:
    _images_dataset(f, path, name)  # the class must exist
    key = name + LABELS_SUFFIX
    if key not in f[name]:
        raise DataError(f"{os.fspath(path)}: class {name!r} has no {key!r} dataset")
    return f[name][key]


def _selection(indices, n: int, path, name: str):
    """(sorted unique indices to read, order to put them back in, squeeze) for an h5py read."""
    if indices is None:
        return slice(None), None, False
    if isinstance(indices, slice):
        return slice(*indices.indices(n)), None, False
    scalar = np.ndim(indices) == 0
    idx = np.atleast_1d(np.asarray(indices))
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"{os.fspath(path)}: indices for {name!r} must be integers, got {idx.dtype}")
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + n, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx[(idx < 0) | (idx >= n)][0])
        raise InputError(f"{os.fspath(path)}: index {bad} out of range for {name!r} with {n} images")
    # h5py reads only increasing, unique indices; read those and reorder afterwards.
    unique, inverse = np.unique(idx, return_inverse=True)
    return unique, inverse, scalar


def _read(data: h5py.Dataset, read) -> np.ndarray:
    if isinstance(read, np.ndarray) and read.size == 0:
        return np.zeros((0,) + data.shape[1:], dtype=data.dtype)
    return data[read]


def _check_binary(images: np.ndarray, path, name: str, first: int = 0, n_phases: int = 2) -> np.ndarray:
    """``images`` as uint8 after checking they hold phase indices 0 .. n_phases - 1 (0/1 for two)."""
    if images.size == 0:
        return images.astype(np.uint8, copy=False)
    if images.dtype == np.bool_:
        return images.astype(np.uint8)
    bad = (
        images > n_phases - 1
        if images.dtype == np.uint8
        else (images < 0) | (images > n_phases - 1) | (images != np.round(images))
    )
    if bad.any():
        where = np.argwhere(bad)[0]
        value = images[tuple(where)]
        what = "2-phase 0/1" if n_phases == 2 else f"{n_phases}-phase (0..{n_phases - 1})"
        raise DataError(
            f"{os.fspath(path)}: {name} is not a {what} image set "
            f"(value {value!r} in image {first + int(where[0]) if images.ndim == 3 else first})"
        )
    return images.astype(np.uint8, copy=False)


def _group_phases(f: h5py.File, path, name: str) -> int:
    value = f[name].attrs.get(PHASES_ATTR, 2)
    try:
        k = int(value)
    except (TypeError, ValueError):
        k = 0
    if k < 2 or k > 255:
        raise DataError(f"{os.fspath(path)}: {name} has attribute {PHASES_ATTR} = {value!r}, not a phase count 2..255")
    return k


# --------------------------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------------------------


def list_classes(path) -> list[str]:
    """Names of the classes in a file: groups ``C`` holding a dataset ``C/C``, in file order."""
    with open_file(path) as f:
        return _classes_in(f)


def class_phases(path, name: str) -> int:
    """Number of phases K of a class (its ``n_phases`` attribute; 2 when absent, as in MICRO2D)."""
    with open_file(path) as f:
        _images_dataset(f, path, name)
        return _group_phases(f, path, name)


def class_size(path, name: str) -> tuple[int, int, int]:
    """Shape ``(n, H, W)`` of the images of class ``name``, without reading them."""
    with open_file(path) as f:
        return tuple(int(v) for v in _images_dataset(f, path, name).shape)


def read_images(path, name: str, indices=None) -> np.ndarray:
    """Read images of one class.

    Parameters
    ----------
    path : str or path-like
        HDF5 file in MICRO2D layout.
    name : str
        Class (group) name.
    indices : None, int, slice or sequence of int, optional
        Which images; None reads all (mind memory: MICRO2D classes hold up to ~10^4 images of
        64 KB). Negative indices count from the end; order and repeats are kept.

    Returns
    -------
    (k, H, W) uint8 of 0/1 (phase indices 0 .. K - 1 for a K-phase class), or (H, W) for an int index.

    Raises
    ------
    DataError
        Missing file, not HDF5, class not in the file, or values outside its phases.
    """
    with open_file(path) as f:
        data = _images_dataset(f, path, name)
        k = _group_phases(f, path, name)
        read, order, scalar = _selection(indices, data.shape[0], path, name)
        images = _read(data, read)
    if order is not None:
        images = images[order]
    images = _check_binary(images, path, name, n_phases=k)
    return images[0] if scalar else images


def read_labels(path, name: str, indices=None) -> list[str]:
    """Read the label strings of one class (same ``indices`` rules as :func:`read_images`).

    Returns a list of str (a single str for an int index).
    """
    with open_file(path) as f:
        data = _labels_dataset(f, path, name)
        read, order, scalar = _selection(indices, data.shape[0], path, name)
        raw = _read(data, read)
    labels = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(raw)]
    if order is not None:
        labels = [labels[k] for k in order]
    return labels[0] if scalar else labels


def read_property(path, name: str, prop: str, indices=None) -> np.ndarray:
    """Read ``homogenized_mechanical`` (n, 6, 5) or ``homogenized_thermal`` (n, 6, 2) of a class."""
    with open_file(path) as f:
        _images_dataset(f, path, name)
        if prop not in f[name]:
            raise DataError(f"{os.fspath(path)}: class {name!r} has no {prop!r} dataset")
        data = f[name][prop]
        read, order, scalar = _selection(indices, data.shape[0], path, name)
        values = _read(data, read)
    if order is not None:
        values = values[order]
    return values[0] if scalar else values


def property_instructions(path, name: str, prop: str) -> str:
    """The ``INSTRUCTIONS`` attribute of a property dataset ('' if absent)."""
    with open_file(path) as f:
        _images_dataset(f, path, name)
        if prop not in f[name]:
            raise DataError(f"{os.fspath(path)}: class {name!r} has no {prop!r} dataset")
        value = f[name][prop].attrs.get("INSTRUCTIONS", "")
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def file_info(path, volume_fractions: bool = True, progress=None) -> dict:
    """Summary of a file: classes, counts, image shape, volume fractions, properties.

    Volume fractions are computed by streaming the images in blocks of 256 (the file is never
    loaded whole); this also checks every image is 0/1.

    Parameters
    ----------
    path : str or path-like
    volume_fractions : bool, default True
        Scan the images for the volume-fraction summary (the slow part: ~1 s per 10^4 images).
    progress : callable, optional
        Called as ``progress(class_name, images_done)`` after each block.

    Returns
    -------
    dict
        ``{"path": str, "classes": {name: {"count": n, "shape": (H, W), "dtype": str,
        "vf_mean": float, "vf_min": float, "vf_max": float, "has_labels": bool,
        "has_mechanical": bool, "has_thermal": bool}}, "problems": [str]}`` (vf_* absent when not
        computed, None for an empty class). Volume fraction = mean of the 0/1 image (share of
        phase 1). ``problems``: label or property datasets whose shape does not fit the images.

    Raises
    ------
    DataError
        The file has no class in the MICRO2D layout.
    """
    out = {"path": os.fspath(path), "classes": {}, "problems": []}
    with open_file(path) as f:
        names = _classes_in(f)
        if not names:
            raise DataError(
                f"{os.fspath(path)}: no MICRO2D-layout class (a group C holding a dataset C/C of "
                f"images); top-level entries: {', '.join(list(f)[:10]) or 'none'}"
            )
        for name in names:
            data = _images_dataset(f, path, name)
            n = int(data.shape[0])
            k = _group_phases(f, path, name)
            entry = {
                "count": n,
                "n_phases": k,
                "shape": tuple(int(v) for v in data.shape[1:]),
                "dtype": str(data.dtype),
                "has_labels": (name + LABELS_SUFFIX) in f[name],
                "has_mechanical": "homogenized_mechanical" in f[name],
                "has_thermal": "homogenized_thermal" in f[name],
            }
            if entry["has_labels"] and f[name][name + LABELS_SUFFIX].shape != (n,):
                out["problems"].append(f"{name}: {f[name][name + LABELS_SUFFIX].shape} labels for {n} images")
            for prop, width in (("homogenized_mechanical", 5), ("homogenized_thermal", 2)):
                if prop in f[name] and (
                    len(f[name][prop].shape) != 3 or f[name][prop].shape[0] != n or f[name][prop].shape[2] != width
                ):
                    out["problems"].append(
                        f"{name}/{prop}: shape {f[name][prop].shape}, expected ({n}, cases, {width})"
                    )
            if volume_fractions:
                total, low, high = 0.0, np.inf, -np.inf
                shares = np.zeros(k)
                for first in range(0, data.shape[0], _READ_BLOCK):
                    block = _check_binary(data[first : first + _READ_BLOCK], path, name, first, k)
                    flat = block.reshape(len(block), -1)
                    vf = (flat == 1).mean(axis=1)
                    shares += [float((flat == p).mean(axis=1).sum()) for p in range(k)]
                    total += float(vf.sum())
                    low, high = min(low, float(vf.min())), max(high, float(vf.max()))
                    if progress is not None:
                        progress(name, first + len(block))
                empty = data.shape[0] == 0
                entry["vf_mean"] = None if empty else total / data.shape[0]
                entry["vf_min"] = None if empty else low
                entry["vf_max"] = None if empty else high
                entry["phase_fractions"] = None if empty else (shares / data.shape[0]).tolist()
            out["classes"][name] = entry
    return out


# --------------------------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------------------------


def _compression(compression):
    if compression in (None, "none"):
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if compression == "lzf":
        return {"compression": "lzf"}
    raise InputError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")


def write_class_batches(
    path,
    name: str,
    batches: Iterable[tuple[np.ndarray, Sequence[str]]],
    n: int,
    image_shape: tuple[int, int],
    compression: str | None = "gzip",
    attrs: dict | None = None,
    n_phases: int = 2,
) -> int:
    """Write one class from an iterable of ``(images, labels)`` batches (streaming).

    Parameters
    ----------
    path : str or path-like
        HDF5 file; created if missing, otherwise opened for appending. A group ``name`` already
        there is replaced.
    name : str
        Class (group) name.
    batches : iterable of ((k, H, W) array of 0/1 (0 .. n_phases - 1), sequence of k str)
    n : int
        Total number of images the batches hold.
    image_shape : (int, int)
        ``(H, W)``.
    compression : {"gzip", "lzf", None}, default "gzip"
    attrs : dict, optional
        Attributes stored on the group (e.g. provenance).
    n_phases : int, default 2
        Phases K; above 2 it is stored as the group's ``n_phases`` attribute.

    Returns
    -------
    int
        Number of images written (checked to equal ``n``).
    """
    if isinstance(n_phases, bool) or not isinstance(n_phases, (int, np.integer)) or not 2 <= n_phases <= 255:
        raise InputError(f"n_phases must be an integer in 2..255, got {n_phases!r}")
    if not isinstance(name, str) or not name or "/" in name:
        raise InputError(f"class name must be a non-empty string without '/', got {name!r}")
    height, width = (int(v) for v in image_shape)
    partial = name + " (partial)"
    created = not os.path.exists(path)
    try:
        with open_file(path, "a") as f:
            # Write under a temporary name and swap at the end, so a failure half-way (a bad image
            # in an import, Ctrl-C) leaves the file as it was.
            if partial in f:
                del f[partial]
            try:
                done = _fill_group(
                    f.create_group(partial), name, batches, n, height, width, compression, attrs, int(n_phases)
                )
            except BaseException:
                del f[partial]
                raise
            if name in f:
                del f[name]
            f.move(partial, name)
    except BaseException:
        if created and os.path.exists(path):  # a failed first class leaves no empty file behind
            os.remove(path)
        raise
    return done


def _fill_group(group, name, batches, n, height, width, compression, attrs, n_phases=2):
    for key, value in (attrs or {}).items():
        group.attrs[key] = value
    if n_phases > 2:
        group.attrs[PHASES_ATTR] = n_phases
    images = group.create_dataset(
        name,
        shape=(n, height, width),
        dtype=np.uint8,
        chunks=(1, height, width) if n else None,
        **(_compression(compression) if n else {}),
    )
    labels = group.create_dataset(
        name + LABELS_SUFFIX,
        shape=(n,),
        dtype=h5py.string_dtype("utf-8"),
        chunks=(min(n, 1024),) if n else None,
        **(_compression(compression) if n else {}),
    )
    done = 0
    for batch_images, batch_labels in batches:
        batch_images = np.asarray(batch_images)
        k = len(batch_images)
        if batch_images.ndim != 3 or batch_images.shape[1:] != (height, width):
            raise InputError(f"{name}: images must have shape (k, {height}, {width}), got {batch_images.shape}")
        if len(batch_labels) != k:
            raise InputError(f"{name}: {k} images but {len(batch_labels)} labels in a batch")
        if done + k > n:
            raise InputError(f"{name}: batches hold more than the {n} images announced")
        if k and ((batch_images < 0) | (batch_images > n_phases - 1) | (batch_images != np.round(batch_images))).any():
            what = "0/1 (2-phase)" if n_phases == 2 else f"phase indices 0..{n_phases - 1} ({n_phases} phases)"
            raise InputError(f"{name}: images must be {what}")
        images[done : done + k] = batch_images.astype(np.uint8, copy=False)
        labels[done : done + k] = [str(v) for v in batch_labels]
        done += k
    if done != n:
        raise InputError(f"{name}: batches held {done} images, {n} announced")
    return done


def write_class(
    path,
    name: str,
    images,
    labels,
    compression: str | None = "gzip",
    attrs: dict | None = None,
    batch_size: int = 512,
    n_phases: int = 2,
) -> int:
    """Write one class (images and labels) into a file in MICRO2D layout.

    Parameters
    ----------
    path : str or path-like
        HDF5 file; created if missing, else appended to (an existing group ``name`` is replaced).
    name : str
        Class name: the group, the image dataset ``name/name`` and labels ``name/name - labels``.
    images : (n, H, W) array of 0/1 (bool or integer), or of 0 .. n_phases - 1
    labels : sequence of n str
    compression : {"gzip", "lzf", None}, default "gzip"
    attrs : dict, optional
        Attributes for the group.
    batch_size : int, default 512
        Images per write call.

    Returns
    -------
    int
        Number of images written.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise InputError(f"{name}: images must be a (n, H, W) array, got shape {images.shape}")
    if len(labels) != len(images):
        raise InputError(f"{name}: {len(images)} images but {len(labels)} labels")
    batches = ((images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size))
    return write_class_batches(path, name, batches, len(images), images.shape[1:], compression, attrs, n_phases)


def write_property(path, name: str, prop: str, values, instructions: str) -> None:
    """Store ``homogenized_mechanical`` (n, 6, 5) or ``homogenized_thermal`` (n, 6, 2) for a class.

    ``instructions`` goes to the dataset's ``INSTRUCTIONS`` attribute, as in MICRO2D: say what
    each index means. The first dimension must match the class's image count.
    """
    values = np.asarray(values, dtype=np.float64)
    expected = {"homogenized_mechanical": (6, 5), "homogenized_thermal": (6, 2)}
    if prop in expected and values.shape[1:] != expected[prop]:
        raise InputError(f"{prop} must have shape (n, {', '.join(map(str, expected[prop]))}), got {values.shape}")
    with open_file(path, "a") as f:
        data = _images_dataset(f, path, name)
        if values.shape[0] != data.shape[0]:
            raise InputError(f"{name}: {values.shape[0]} property rows for {data.shape[0]} images")
        if prop in f[name]:
            del f[name][prop]
        dset = f[name].create_dataset(prop, data=values)
        dset.attrs["INSTRUCTIONS"] = instructions
