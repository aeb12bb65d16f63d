"""Import a folder of PNG/TIFF (or other PIL-readable) images as a 2-phase class."""

from __future__ import annotations

import os
import warnings
from numbers import Real

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


def import_images(
    folder,
    out,
    name: str | None = None,
    threshold="otsu",
    invert: bool = False,
    compression: str | None = "gzip",
    batch_size: int = 256,
) -> str:
    """Threshold a folder of images into a 2-phase class of an HDF5 file (MICRO2D layout).

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
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    if not (
        threshold == "otsu" or (isinstance(threshold, Real) and not isinstance(threshold, bool) and 0 <= threshold < 1)
    ):
        raise InputError(f"threshold must be 'otsu' or a number in [0, 1), got {threshold!r}")
    files = sorted(
        entry
        for entry in os.listdir(folder)
        if not entry.startswith(".") and os.path.isfile(os.path.join(folder, entry))
    )
    if not files:
        raise DataError(f"{folder}: no image files")
    name = name or os.path.basename(os.path.normpath(os.path.abspath(folder)))

    first_path = os.path.join(folder, files[0])
    shape = read_image(first_path).shape
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
                binary, cut = binarise(grey, threshold, invert)
                images.append(binary)
                safe = entry.replace(";", "_").replace("=", "_").replace("[", "(").replace("]", ")")
                labels.append(
                    format_label(**{"class": name}, file=safe, threshold=mode, threshold_value=cut, invert=invert)
                )
            yield np.stack(images), labels

    store.write_class_batches(
        out,
        name,
        batches(),
        len(files),
        shape,
        compression,
        attrs={"source": f"imported from {os.path.abspath(folder)}"},
    )
    return name
