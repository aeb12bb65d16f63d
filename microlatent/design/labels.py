"""Labelled data: the homogenized elastic constants of a MICRO2D-layout file as regression targets.

    read_labelled_split(path, part, split, limit) -> images, y (N, 5) in PROPERTY_NAMES order, names, class_of
    phase_settings(path, classes) -> {"E", "nu", "plane", "source"} the labels were computed with
    label_matrix(raw) -> (N, 5) from stored ``homogenized_mechanical`` rows

The labels are written by ``microlatent properties homogenize`` (``microlatent.properties.storage``).
"""

from __future__ import annotations

import json
import os

import numpy as np

from microlatent.design.regression import PROPERTY_NAMES
from microlatent.errors import DataError
from microlatent.properties.storage import MECHANICAL, MECHANICAL_VALUES, SETTINGS_ATTR

DEFAULT_PHASES = {"E": [10.0, 1.0], "nu": [0.3, 0.3], "plane": "stress"}  # Cai et al.'s


def label_matrix(raw) -> np.ndarray:
    """(N, 5) in PROPERTY_NAMES order from stored ``homogenized_mechanical`` rows (N, 6, 5) =
    [Ex, nu_xy, Ey, nu_yx, Gxy] at contrast index 0."""
    raw = np.asarray(raw, dtype=np.float64)
    order = [MECHANICAL_VALUES.index(name) for name in PROPERTY_NAMES]
    return raw[:, 0, :][:, order]


def phase_settings(path, classes, n_phases=None) -> dict:
    """Phase properties the labels were computed with: ``{"E", "nu", "plane", "source"}`` from the
    ``microlatent_settings`` attribute (the same in every class, else DataError); files without it
    (e.g. MICRO2D's own labels) are taken to use Cai et al.'s 10 / 1 GPa, nu 0.3, plane stress.
    ``n_phases``: DataError unless they give that many moduli (what solving decoded images needs)."""
    from microlatent.data.store import open_file

    found = {}
    with open_file(path) as f:
        for name in classes:
            raw = f[name][MECHANICAL].attrs.get(SETTINGS_ATTR) if MECHANICAL in f[name] else None
            if raw is None:
                found[name] = dict(DEFAULT_PHASES, source="assumed (no microlatent_settings attribute)")
                continue
            s = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            found[name] = {
                "E": list(s["E"]),
                "nu": list(s["nu"]),
                "plane": s.get("plane", "stress"),
                "source": f"{MECHANICAL} attribute {SETTINGS_ATTR}",
            }
    keyed = {json.dumps({k: v for k, v in s.items() if k != "source"}, sort_keys=True) for s in found.values()}
    if len(keyed) > 1:
        raise DataError(
            f"{os.fspath(path)}: classes were homogenized with different phase properties; "
            "fit a predictor per setting (--class)"
        )
    settings = next(iter(found.values())) if found else dict(DEFAULT_PHASES, source="assumed")
    if n_phases is not None and len(settings["E"]) != n_phases:
        raise DataError(
            f"{os.fspath(path)}: {n_phases} phases, but the labels' phase properties ({settings['source']}) "
            f"give {len(settings['E'])} moduli; run `microlatent properties homogenize {os.fspath(path)} "
            f"--E ... --nu ...` with {n_phases} values each"
        )
    return settings


def read_labelled_split(path, part="train", split=None, limit=None):
    """Images, labels and names of one part ("train", "val", "test") of a MICRO2D-layout file, cut by
    ``split`` (a :class:`~microlatent.data.Split`; pass the checkpoint run's, so the regressors see its
    training images and are scored on its test images). ``limit``: at most that many images per class
    (the first of the part). Returns ``(images (N, H, W) float32, y (N, 5) float64 in PROPERTY_NAMES
    order, names list of "Class[index]", class_of list of str)``. The images are those of
    :func:`~microlatent.data.split.read_split`; this adds their labels.

    Raises DataError when a class has no ``homogenized_mechanical`` labels or unfinished (NaN) rows.
    """
    from microlatent.data.split import Split, read_split, resolve_classes
    from microlatent.data.store import open_file, read_property

    path = os.fspath(path)
    split = split or Split()
    with open_file(path) as f:
        unlabelled = [c for c in resolve_classes(path, split.classes) if MECHANICAL not in f[c]]
    if unlabelled:
        raise DataError(
            f"{path}: class {unlabelled[0]!r} has no {MECHANICAL} labels; run "
            f"`microlatent properties homogenize {path}` first"
        )
    samples = read_split(path, part, split, limit_per_class=limit)
    labels = []
    for name in samples.class_names():
        idx = np.asarray(samples.indices)[samples.where(name)]
        y = label_matrix(read_property(path, name, MECHANICAL, idx))
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise DataError(
                f"{path}: class {name!r} has {int(bad.sum())} unfinished {MECHANICAL} rows "
                f"(NaN, e.g. image {int(idx[bad][0])}); run `microlatent properties homogenize {path}` to finish"
            )
        labels.append(y)
    shapes = {image.shape for image in samples.images}
    if len(shapes) > 1:
        raise DataError(f"{path}: classes have different image sizes {sorted(shapes)}; choose classes of one size")
    return np.stack(samples.images).astype(np.float32), np.concatenate(labels), samples.names, samples.classes
