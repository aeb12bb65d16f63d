"""Fill MICRO2D-layout HDF5 files with homogenized properties, in resumable chunks.

For each class ``C`` the datasets ``f[C]["homogenized_mechanical"]`` (n, 6, 5) and
``f[C]["homogenized_thermal"]`` (n, 6, 2) are written in MICRO2D's shape. MICRO2D's second axis holds
6 constituent-contrast cases; we compute one (the phase properties given), store it at index 0 and
leave indices 1-5 NaN. The ``INSTRUCTIONS`` attribute says exactly what every index means and which
phase properties were used; a ``microlatent_settings`` attribute holds the same settings as JSON.

Resuming: a dataset is created filled with NaN, each chunk of rows is written and flushed as soon as
it is computed, and a row counts as done when its index-0 values are all finite. Running the same
command again skips the finished rows, so an interrupted run loses nothing (at most the chunk being
computed). A dataset written with other settings, or not by microlatent (e.g. MICRO2D's own labels),
is never touched unless ``overwrite=True`` (which recomputes everything).
"""

from __future__ import annotations

import json
import os

import numpy as np

from microlatent.errors import DataError, InputError
from microlatent.properties.homogenize import (
    DEFAULT_E,
    DEFAULT_K,
    DEFAULT_NU,
    check_conductivities,
    check_elastic_phases,
    homogenize_elastic,
    homogenize_thermal,
)

MECHANICAL = "homogenized_mechanical"
THERMAL = "homogenized_thermal"
N_CASES = 6  # MICRO2D's constituent-contrast cases; we fill index 0
MECHANICAL_VALUES = ("Ex", "nu_xy", "Ey", "nu_yx", "Gxy")
THERMAL_VALUES = ("kx", "ky")
SETTINGS_ATTR = "microlatent_settings"


def mechanical_instructions(E, nu, plane: str) -> str:
    """INSTRUCTIONS text of ``homogenized_mechanical`` for the given phase properties."""
    return (
        "homogenized_mechanical[n, c, v]: effective elastic constants of image n of this class, "
        "computed by microlatent (periodic pixel FEM: one bilinear 4-node element per pixel, full 2x2 "
        f"integration, plane {plane}, periodic boundary conditions, 3 macroscopic load cases). "
        f"c = constituent contrast case: only c = 0 is computed, with phase 0 (pixel value 0): "
        f"E = {E[0]:g}, nu = {nu[0]:g}; phase 1 (pixel value 1): E = {E[1]:g}, nu = {nu[1]:g} "
        "(moduli in the unit of E, GPa for MICRO2D's values); c = 1..5 are NaN (MICRO2D's other "
        "contrast cases, not computed). v = value index: 0 Ex = 1/S11, 1 nu_xy = -S12/S11, "
        "2 Ey = 1/S22, 3 nu_yx = -S12/S22, 4 Gxy = 1/S33, from the effective compliance S (Voigt "
        "[xx, yy, xy], engineering shear); this [Ex, nu_xy, Ey, nu_yx, Gxy] order is MICRO2D's likely "
        "order. x = image array axis 0, y = axis 1 (MICRO2D's convention). NaN at c = 0 means not yet "
        "computed."
    )


def thermal_instructions(k) -> str:
    """INSTRUCTIONS text of ``homogenized_thermal`` for the given phase conductivities."""
    return (
        "homogenized_thermal[n, c, v]: effective conductivity of image n of this class, computed by "
        "microlatent (periodic pixel FEM, one bilinear 4-node element per pixel, steady heat "
        "conduction, periodic boundary conditions, unit temperature gradients along x and y). "
        f"c = constituent contrast case: only c = 0 is computed, with phase 0 (pixel value 0): "
        f"k = {k[0]:g}; phase 1 (pixel value 1): k = {k[1]:g} (results in the unit of k); c = 1..5 are "
        "NaN (not computed). v = value index: 0 kx = K11, 1 ky = K22 of the effective conductivity "
        "tensor K (mean flux = -K mean gradient). x = image array axis 0, y = axis 1. NaN at c = 0 "
        "means not yet computed."
    )


def _open(path, mode):
    from microlatent.data.store import open_file

    return open_file(path, mode)


def _conflict(f, path, name, prop, n, nvalues, settings):
    """None if ``f[name][prop]`` is absent or resumable with ``settings``, else a one-line reason."""
    group = f[name]
    if prop not in group:
        return None
    dset = group[prop]
    old = dset.attrs.get(SETTINGS_ATTR)
    old = old.decode() if isinstance(old, bytes) else old
    if dset.shape == (n, N_CASES, nvalues) and old == json.dumps(settings, sort_keys=True):
        return None
    if old is None:
        why = "not by microlatent (e.g. MICRO2D's own labels)"
    elif dset.shape != (n, N_CASES, nvalues):
        why = f"with shape {dset.shape} instead of {(n, N_CASES, nvalues)}"
    else:
        why = f"with other settings ({old})"
    return f"{os.fspath(path)}: {name}/{prop} already exists, written {why}; pass --overwrite to replace it"


def _prepare(f, path, name, prop, n, nvalues, settings, instructions, overwrite, chunk):
    """Create (or open, for resuming) one property dataset; return it."""
    group = f[name]
    if prop in group:
        if overwrite:
            del group[prop]
        else:
            reason = _conflict(f, path, name, prop, n, nvalues, settings)
            if reason:
                raise DataError(reason)
            return group[prop]
    text = json.dumps(settings, sort_keys=True)
    dset = group.create_dataset(
        prop,
        shape=(n, N_CASES, nvalues),
        dtype=np.float64,
        fillvalue=np.nan,
        chunks=(max(1, min(n, chunk)), N_CASES, nvalues) if n else None,
    )
    dset.attrs["INSTRUCTIONS"] = instructions
    dset.attrs[SETTINGS_ATTR] = text
    return dset


def homogenize_file(
    path,
    classes=None,
    chunk: int = 64,
    E=DEFAULT_E,
    nu=DEFAULT_NU,
    plane: str = "stress",
    k=DEFAULT_K,
    mechanical: bool = True,
    thermal: bool = True,
    dtype=np.float32,
    tol: float = 1e-6,
    max_iter: int = 200,
    overwrite: bool = False,
    progress=None,
) -> dict:
    """Compute and store homogenized properties for the classes of an HDF5 file (resumable).

    Parameters
    ----------
    path : str or path-like
        HDF5 file in MICRO2D layout (``f[C][C]`` (n, H, W) 0/1 images).
    classes : sequence of str, optional
        Classes to process (default all, in file order).
    chunk : int, default 64
        Images per chunk: computed, written and flushed together.
    E, nu, plane, k
        Phase properties, as in :func:`~microlatent.properties.homogenize_elastic` /
        :func:`~microlatent.properties.homogenize_thermal`.
    mechanical, thermal : bool
        Which datasets to fill.
    dtype, tol, max_iter
        Solver settings.
    overwrite : bool, default False
        Discard existing property datasets of the selected classes and recompute every row. Without
        it, datasets written with the same settings are resumed, and any other existing dataset
        (other settings, or not written by microlatent) raises DataError before anything is computed.
    progress : callable, optional
        ``progress(class_name, rows_done_now, rows_to_do)`` after every chunk (and once at the start
        of each class with 0).

    Returns
    -------
    dict
        ``{class: {"rows": n, "computed": m, "skipped": n - m}}``.
    """
    from microlatent.data.store import class_size, list_classes, read_images

    E, nu = check_elastic_phases(E, nu, plane)
    k = check_conductivities(k)
    if int(chunk) != chunk or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    chunk = int(chunk)
    if not (mechanical or thermal):
        raise InputError("nothing to compute: enable mechanical and/or thermal")
    available = list_classes(path)
    if classes:
        missing = [c for c in classes if c not in available]
        if missing:
            found = ", ".join(available) if available else "none"
            raise DataError(f"{os.fspath(path)}: no class {missing[0]!r} (classes in file: {found})")
        names = list(dict.fromkeys(classes))
    else:
        names = available
    jobs = []
    if mechanical:
        settings = {
            "E": list(E),
            "nu": list(nu),
            "plane": plane,
            "values": list(MECHANICAL_VALUES),
            "case": 0,
            "method": "pixel Q4 FEM, periodic",
        }
        jobs.append((MECHANICAL, len(MECHANICAL_VALUES), settings, mechanical_instructions(E, nu, plane)))
    if thermal:
        settings = {"k": list(k), "values": list(THERMAL_VALUES), "case": 0, "method": "pixel Q4 FEM, periodic"}
        jobs.append((THERMAL, len(THERMAL_VALUES), settings, thermal_instructions(k)))

    from microlatent.data.store import class_phases

    for name in names:  # one material per phase, checked before any dataset is created
        k_phases = class_phases(path, name)
        for wanted, given, option in ((mechanical, len(E), "E and nu"), (thermal, len(k), "k")):
            if wanted and given != k_phases:
                raise InputError(
                    f"{os.fspath(path)}: class {name!r} has {k_phases} phases but {option} give {given} materials"
                    + (" (--E, --nu, --k take one value per phase)" if k_phases > 2 else "")
                )
    if not overwrite:  # refuse before computing anything
        with _open(path, "r") as f:
            for name in names:
                n = f[name][name].shape[0]
                for prop, nvalues, settings, _ in jobs:
                    reason = _conflict(f, path, name, prop, n, nvalues, settings)
                    if reason:
                        raise DataError(reason)

    summary = {}
    for name in names:
        n = class_size(path, name)[0]
        with _open(path, "a") as f:
            needed = {}
            for prop, nvalues, settings, text in jobs:
                dset = _prepare(f, path, name, prop, n, nvalues, settings, text, overwrite, chunk)
                needed[prop] = ~np.isfinite(dset[:, 0, :]).all(axis=1) if n else np.zeros(0, bool)
            f.flush()
        rows = np.flatnonzero(np.logical_or.reduce(list(needed.values())))
        total = len(rows)
        if progress is not None:
            progress(name, 0, total)
        done = 0
        for start in range(0, total, chunk):
            idx = rows[start : start + chunk]
            images = read_images(path, name, idx)
            results = {}
            for prop in needed:
                sub = needed[prop][idx]
                if not sub.any():
                    continue
                if prop == MECHANICAL:
                    r = homogenize_elastic(
                        images[sub], E=E, nu=nu, plane=plane, dtype=dtype, tol=tol, max_iter=max_iter
                    )
                    values = np.stack([r[key] for key in MECHANICAL_VALUES], axis=-1)
                else:
                    r = homogenize_thermal(images[sub], k=k, dtype=dtype, tol=tol, max_iter=max_iter)
                    values = np.stack([r[key] for key in THERMAL_VALUES], axis=-1)
                results[prop] = (idx[sub], values)
            with _open(path, "a") as f:
                for prop, (where, values) in results.items():
                    block = np.full((len(where), N_CASES, values.shape[1]), np.nan)
                    block[:, 0, :] = values
                    contiguous = where[-1] - where[0] + 1 == len(where)
                    sel = slice(int(where[0]), int(where[-1]) + 1) if contiguous else where
                    f[name][prop][sel] = block
                f.flush()
            done += len(idx)
            if progress is not None:
                progress(name, done, total)
        summary[name] = {"rows": n, "computed": total, "skipped": n - total}
    return summary
