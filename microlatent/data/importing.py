"""Import images (a folder, one file, or a .npy of labels) as a 2-phase or K-phase class."""

from __future__ import annotations

import os
import warnings
from numbers import Real
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError
from skimage.filters import threshold_otsu

from microlatent.data import store
from microlatent.data.generators._common import format_label
from microlatent.errors import DataError, InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
_TIFF = (".tif", ".tiff")
# ITU-R 601 luma, as PIL's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])


def read_image(path: str) -> np.ndarray:
    """One image file as a float64 greyscale array (H, W) scaled to [0, 1].

    TIFF files are read with tifffile, others with PIL. RGB(A) becomes grey with ITU-R 601 luma
    (alpha ignored); integer images are divided by their dtype's maximum (255, 65535, ...); float
    images are kept as they are. A file that cannot be read raises DataError naming it.
    """
    path = str(path)
    try:
        if path.lower().endswith(_TIFF):
            array = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "1"):
                    img = img.convert("RGB")
                array = np.asarray(img)
    except (UnidentifiedImageError, tifffile.TiffFileError, OSError, ValueError, SyntaxError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        kind = array.dtype
        array = array[..., :3].astype(np.float64) @ _LUMA
        array = array / np.iinfo(kind).max if np.issubdtype(kind, np.integer) else array
    elif array.ndim == 2:
        kind = array.dtype
        if kind == np.bool_:
            array = array.astype(np.float64)
        elif np.issubdtype(kind, np.integer):
            array = array.astype(np.float64) / np.iinfo(kind).max
        else:
            array = array.astype(np.float64)
    else:
        raise DataError(f"{path}: image of shape {array.shape} is neither greyscale nor RGB(A)")
    return array


def binarise(grey: np.ndarray, threshold="otsu", invert: bool = False) -> tuple[np.ndarray, float]:
    """Threshold a grey image: phase 1 where ``grey > t`` (or ``<=`` with ``invert``).

    ``threshold`` is ``"otsu"`` (``skimage.filters.threshold_otsu`` of this image; a flat image is
    all 1 if its value is >= 0.5, else all 0) or a number. Returns (binary uint8 (H, W), t).
    """
    if threshold == "otsu":
        low, high = float(grey.min()), float(grey.max())
        # Otsu is undefined on a flat image: call it all phase 1 if bright, all 0 if dark, and say so.
        cut = threshold_otsu(grey) if high > low else (low - 1.0 if low >= 0.5 else high)
        if high == low:
            warnings.warn(
                f"a flat image (every pixel {low:g}) has no Otsu threshold: imported as all phase "
                f"{int(low >= 0.5) ^ int(invert)}",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        try:
            cut = float(threshold)
        except (TypeError, ValueError):
            raise InputError(f"threshold must be 'otsu' or a number in [0, 1), got {threshold!r}") from None
        if not 0 <= cut < 1:  # NaN included: every comparison false, an all-0 (or all-1) image
            raise InputError(f"threshold must be 'otsu' or a number in [0, 1), got {threshold!r}")
    binary = grey > cut
    return (~binary if invert else binary).astype(np.uint8), float(cut)


def to_phases(grey: np.ndarray, n_phases: int) -> tuple[np.ndarray, str]:
    """Phase indices 0 .. n_phases - 1 of a grey image, and how they were found.

    A label image (at most ``n_phases`` distinct grey levels, e.g. a segmentation saved as PNG with
    K levels or a palette) maps its levels in increasing order to phases 0, 1, ...; any other image
    is split by multi-level Otsu thresholds (``skimage.filters.threshold_multiotsu``), darkest phase 0.
    Returns (uint8 (H, W), "levels 0=0, 1=0.501961, 2=1" or "multi-otsu cuts 0.31, 0.64").
    """
    levels = np.unique(grey)
    if len(levels) <= n_phases:
        labels = np.searchsorted(levels, grey).astype(np.uint8)
        return labels, "levels " + ", ".join(f"{k}={v:.6g}" for k, v in enumerate(levels))
    from skimage.filters import threshold_multiotsu

    cuts = threshold_multiotsu(grey, classes=n_phases)
    return np.digitize(grey, cuts).astype(np.uint8), "multi-otsu cuts " + ", ".join(f"{c:.6g}" for c in cuts)


def tile_origins(shape, size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners (row, column) of the ``size`` x ``size`` windows of an image of ``shape`` (H, W),
    row by row, ``stride`` apart (default ``size``: not overlapping); windows crossing the edge are left
    out. InputError if no window fits."""
    stride = size if stride is None else stride
    for what, value in (("tile size", size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{what} must be a positive integer, got {value!r}")
    height, width = shape[-2:]
    if size > min(height, width):
        raise InputError(f"tile size {size} is larger than the images ({height}x{width})")
    return [(r, c) for r in range(0, height - size + 1, stride) for c in range(0, width - size + 1, stride)]


def tiles(image: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    """(n, size, size) windows of ``image`` (H, W) at :func:`tile_origins`: a large micrograph becomes
    a set of training images."""
    return np.stack([image[r : r + size, c : c + size] for r, c in tile_origins(image.shape, size, stride)])


def import_labels(
    path,
    out,
    name: str | None = None,
    n_phases: int | None = None,
    compression="gzip",
    tile: int | None = None,
    stride: int | None = None,
) -> tuple[str, int]:
    """A .npy of integer phase labels (H, W) or (N, H, W), values 0 .. K - 1, into one K-phase class
    (K = ``n_phases``, or the largest label + 1, at least 2). ``tile``: store each image's ``tile`` x
    ``tile`` windows, ``stride`` apart (:func:`tiles`), instead of the whole images. Returns (class name, K)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    array = array[None] if array.ndim == 2 else array
    if array.ndim != 3 or 0 in array.shape:
        raise DataError(f"{path}: expected label images (H, W) or (N, H, W), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_) and not np.array_equal(
        array, np.round(array)
    ):
        raise DataError(f"{path}: phase labels must be whole numbers 0, 1, ..., got dtype {array.dtype}")
    if array.min() < 0:
        raise DataError(f"{path}: phase labels must be >= 0, found {array.min()}")
    k = max(2, int(array.max()) + 1) if n_phases is None else int(n_phases)
    if array.max() > k - 1:
        raise DataError(f"{path}: label {int(array.max())} found, but {k} phases (0..{k - 1}) asked for")
    name = name or Path(path).stem
    labels = [format_label(**{"class": name}, file=Path(path).name, index=i) for i in range(len(array))]
    if tile is not None:
        origins = tile_origins(array.shape, tile, stride)
        labels = [f"{label}; tile=[{r},{c}]" for label in labels for r, c in origins]
        array = np.concatenate([tiles(image, tile, stride) for image in array])
    store.write_class(
        out,
        name,
        array.astype(np.uint8),
        labels,
        compression,
        attrs={"source": f"imported from {os.path.abspath(path)}"},
        n_phases=k,
    )
    return name, k


def import_images(
    folder,
    out,
    name: str | None = None,
    threshold="otsu",
    invert: bool = False,
    compression: str | None = "gzip",
    batch_size: int = 256,
    n_phases: int = 2,
    tile: int | None = None,
    stride: int | None = None,
) -> str:
    """Threshold a folder of images (or one image file) into a class of an HDF5 file (MICRO2D layout).

    Every regular, non-hidden file in ``folder`` (not its subfolders) is read, in name order:
    TIFF with tifffile, anything else with PIL. Colour images become greyscale (ITU-R 601 luma),
    values are scaled to [0, 1] (integer images by their dtype's maximum: 255, 65535, ...), and
    pixels brighter than the threshold become phase 1.

    Parameters
    ----------
    folder : str or path-like
        Folder of images, all of the same size.
    out : str or path-like
        HDF5 file to write (created, or appended to: a group ``name`` already there is replaced).
    name : str, optional
        Class (group) name; default: the folder's name.
    threshold : "otsu" or float, default "otsu"
        Otsu's threshold per image (``skimage.filters.threshold_otsu``), or a fixed value in
        [0, 1] on the scaled grey levels. Phase 1 = grey > threshold.
    invert : bool, default False
        Make dark pixels phase 1 instead.
    compression : {"gzip", "lzf", None}, default "gzip"
    batch_size : int, default 256
        Images held in memory at once.
    n_phases : int, default 2
        Above 2, each image becomes K phases by :func:`to_phases` (label levels in increasing order,
        or multi-level Otsu); ``threshold`` and ``invert`` do not apply. The mapping goes into each
        image's label and the group's ``phase_mapping`` attribute (that of the first image).
    tile, stride : int, optional
        Store each image's ``tile`` x ``tile`` windows, ``stride`` apart (default ``tile``), instead of
        the whole image (:func:`tiles`); each window's label adds ``tile=[row,column]``.

    Returns
    -------
    str
        The class name written. Each image's label is
        ``class=<name>; file=<file name>; threshold=<otsu|fixed>; threshold_value=<t>``.

    Raises
    ------
    DataError
        Folder missing or without files, a file that is not a readable image, or images of
        different sizes (naming the file and both sizes).
    """
    folder = os.fspath(folder)
    single = os.path.isfile(folder)
    if not single and not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder or file")
    if isinstance(n_phases, bool) or not isinstance(n_phases, int) or not 2 <= n_phases <= 255:
        raise InputError(f"n_phases must be an integer in 2..255, got {n_phases!r}")
    if not (
        threshold == "otsu" or (isinstance(threshold, Real) and not isinstance(threshold, bool) and 0 <= threshold < 1)
    ):
        raise InputError(f"threshold must be 'otsu' or a number in [0, 1), got {threshold!r}")
    if single:
        folder, files = os.path.dirname(os.path.abspath(folder)), [os.path.basename(folder)]
        name = name or Path(files[0]).stem
    else:
        files = sorted(
            entry
            for entry in os.listdir(folder)
            if not entry.startswith(".") and os.path.isfile(os.path.join(folder, entry))
        )
    if not files:
        raise DataError(f"{folder}: no image files")
    name = name or os.path.basename(os.path.normpath(os.path.abspath(folder)))
    mappings = []

    first_path = os.path.join(folder, files[0])
    shape = read_image(first_path).shape
    origins = tile_origins(shape, tile, stride) if tile is not None else None
    mode = "otsu" if threshold == "otsu" else "fixed"

    def batches():
        for start in range(0, len(files), batch_size):
            images, labels = [], []
            for entry in files[start : start + batch_size]:
                path = os.path.join(folder, entry)
                grey = read_image(path)
                if grey.shape != shape:
                    raise DataError(
                        f"{path}: size {grey.shape[0]}x{grey.shape[1]} differs from {first_path}: {shape[0]}x{shape[1]}"
                    )
                safe = entry.replace(";", "_").replace("=", "_").replace("[", "(").replace("]", ")")
                if n_phases > 2:
                    phases, how = to_phases(grey, n_phases)
                    mappings.append(how)
                    images.append(phases)
                    labels.append(format_label(**{"class": name}, file=safe, phases=how.replace("=", ":")))
                    continue
                binary, cut = binarise(grey, threshold, invert)
                images.append(binary)
                labels.append(
                    format_label(**{"class": name}, file=safe, threshold=mode, threshold_value=cut, invert=invert)
                )
            if origins is not None:
                labels = [f"{label}; tile=[{r},{c}]" for label in labels for r, c in origins]
                images = [window for image in images for window in tiles(image, tile, stride)]
            yield np.stack(images), labels

    store.write_class_batches(
        out,
        name,
        batches(),
        len(files) * (len(origins) if origins is not None else 1),
        (tile, tile) if tile is not None else shape,
        compression,
        attrs={"source": f"imported from {os.path.abspath(folder)}"},
        n_phases=n_phases,
    )
    if mappings:
        with store.open_file(out, "a") as f:
            f[name].attrs["phase_mapping"] = mappings[0]
    return name
