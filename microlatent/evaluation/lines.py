"""The lines set of Hashemi et al. (2024): orientation and line count of an image, and the truth from
its label (``orientation=horizontal|vertical; n_lines=k; ...``, see
:mod:`microlatent.data.generators.lines`).

Orientation: all lines of an image are parallel and long (length >= half the side) but thin, so the
image's squared finite differences across the lines (along axis 0 for horizontal lines) far outweigh
those along them. ``line_orientation`` compares the two sums; it works on grey (blurred)
reconstructions as well as on binary images.

Line count: threshold, project along the orientation (the fraction of phase-1 pixels in each row for
horizontal lines, each column for vertical ones), call a row "on" when that fraction is at least
``min_fill``, and count runs of "on" rows, merging runs separated by at most ``merge_gap`` "off" rows.
Projection makes the count blind to gaps and ragged ends along a line; ``min_fill`` ignores stray
pixels; ``merge_gap`` closes thin cracks across a blurred line. The generator keeps at least
``min_gap`` (3 at 64 px, 10 at 224 px) background rows between lines, so ``merge_gap`` must stay
below that.
"""

from __future__ import annotations

import numpy as np

from microlatent.data.generators import parse_label
from microlatent.errors import InputError

ORIENTATIONS = ("horizontal", "vertical")


def _image(image):
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"expected one image (H, W), got shape {array.shape}")
    return array


def line_orientation(image):
    """ "horizontal" or "vertical" (the direction of the lines), or None for an image without edges."""
    image = _image(image)
    across_rows = float((np.diff(image, axis=0) ** 2).sum())  # edges of horizontal lines
    across_cols = float((np.diff(image, axis=1) ** 2).sum())  # edges of vertical lines
    if across_rows == across_cols:
        return None
    return "horizontal" if across_rows > across_cols else "vertical"


def count_lines(image, threshold=0.5, orientation=None, min_fill=0.1, merge_gap=1):
    """Number of parallel lines in an image (see the module docstring).

    image : (H, W) in [0, 1]; threshold : phase 1 where value >= threshold; orientation : "horizontal",
    "vertical" or None (detect with :func:`line_orientation` on the image before thresholding);
    min_fill : least fraction of a row (column) that must be phase 1 for it to belong to a line;
    merge_gap : runs separated by at most this many empty rows count as one line.
    """
    image = _image(image)
    orientation = orientation or line_orientation(image)
    if orientation is None:
        return 0
    if orientation not in ORIENTATIONS:
        raise InputError(f"orientation must be 'horizontal' or 'vertical', got {orientation!r}")
    binary = image >= threshold
    profile = binary.mean(axis=1) if orientation == "horizontal" else binary.mean(axis=0)
    on = np.concatenate([[False], profile >= min_fill, [False]])
    starts = np.flatnonzero(~on[:-1] & on[1:])  # first on row of each run
    ends = np.flatnonzero(on[:-1] & ~on[1:])  # one past its last on row
    if len(starts) == 0:
        return 0
    gaps = starts[1:] - ends[:-1]
    return int(1 + np.sum(gaps > merge_gap))


def line_truth(label):
    """(orientation, n_lines) from a lines label string, or (None, None) for any other label."""
    fields = parse_label(label or "")
    orientation, count = fields.get("orientation"), fields.get("n_lines")
    if orientation not in ORIENTATIONS or not isinstance(count, int):
        return None, None
    return orientation, count


def line_measurements(images, threshold=0.5, **options):
    """Orientation and line count of each image: (list of str or None, (N,) int64)."""
    orientations = [line_orientation(image) for image in images]
    counts = np.array(
        [count_lines(image, threshold, o, **options) for image, o in zip(images, orientations)], dtype=np.int64
    )
    return orientations, counts
