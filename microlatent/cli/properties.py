"""Homogenized properties on the command line.

- ``homogenize``: a command for the ``data`` group (``microlatent data homogenize FILE.h5``), filling
  ``homogenized_mechanical`` / ``homogenized_thermal`` of a MICRO2D-layout file in resumable chunks.
- ``properties``: a group with ``homogenize-image IMAGE_OR_NPY``, printing the effective constants
  of one or a few images.
"""

from __future__ import annotations

import os

import click

_AXES = "Axes: x = image array axis 0 (rows), y = axis 1 (MICRO2D's convention)."


def _phase_options(fn):
    options = [
        click.option("--E0", "e0", type=float, default=10.0, show_default=True,
                     help="Young's modulus of phase 0 (pixel value 0), GPa."),
        click.option("--E1", "e1", type=float, default=1.0, show_default=True,
                     help="Young's modulus of phase 1 (pixel value 1), GPa."),
        click.option("--nu0", type=float, default=0.3, show_default=True, help="Poisson ratio of phase 0."),
        click.option("--nu1", type=float, default=0.3, show_default=True, help="Poisson ratio of phase 1."),
        click.option("--k0", type=float, default=10.0, show_default=True, help="Conductivity of phase 0."),
        click.option("--k1", type=float, default=1.0, show_default=True, help="Conductivity of phase 1."),
        click.option("--plane-strain", is_flag=True, help="Plane strain instead of plane stress (MICRO2D: stress)."),
        click.option("--float64", "double", is_flag=True,
                     help="Solve in float64 (reference accuracy, ~2x slower) instead of float32 (~1e-5 relative or better)."),
        click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
                     help="CG relative residual per load case (property error ~tol^2)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _split_classes(classes):
    out = []
    for item in classes:
        out.extend(part.strip() for part in item.split(",") if part.strip())
    return out


@click.command("homogenize")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--classes", "--class", "classes", multiple=True, metavar="NAMES",
              help="Classes to process (repeatable or comma-separated). Default: all.")
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True,
              help="Images computed, written and flushed together (what an interruption can lose).")
@click.option("--mechanical/--no-mechanical", default=True, show_default=True,
              help="Fill homogenized_mechanical.")
@click.option("--thermal/--no-thermal", default=True, show_default=True, help="Fill homogenized_thermal.")
@click.option("--overwrite", is_flag=True,
              help="Discard the selected classes' property datasets and recompute them all. Without "
                   "it finished rows are kept (resume), and datasets written with other settings or "
                   "by another program (e.g. MICRO2D's own labels) stop the command untouched.")
@_phase_options
def homogenize(file, classes, chunk, mechanical, thermal, overwrite, e0, e1, nu0, nu1, k0, k1,
               plane_strain, double, tol):
    """Compute homogenized properties of the images in FILE (MICRO2D HDF5 layout), in place.

    Fills f[C]["homogenized_mechanical"] (n, 6, 5) = [Ex, nu_xy, Ey, nu_yx, Gxy] and
    f[C]["homogenized_thermal"] (n, 6, 2) = [kx, ky] at contrast index 0 (indices 1-5 NaN; the
    INSTRUCTIONS attribute says what each index means and which phase properties were used).
    Chunks are written and flushed as they finish: run the same command again after an
    interruption and the finished rows are skipped.
    """
    import numpy as np
    from tqdm import tqdm

    from microlatent.properties.storage import homogenize_file

    bars = {}

    def progress(name, done, total):
        if total == 0:
            return
        if name not in bars:
            bars[name] = tqdm(total=total, desc=f"{name:<20}", unit="img")
        bars[name].update(done - bars[name].n)
        if done >= total:
            bars[name].close()

    try:
        summary = homogenize_file(
            file, classes=_split_classes(classes) or None, chunk=chunk, E=(e0, e1), nu=(nu0, nu1),
            plane="strain" if plane_strain else "stress", k=(k0, k1), mechanical=mechanical,
            thermal=thermal, dtype=np.float64 if double else np.float32, tol=tol, overwrite=overwrite,
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
    computed = sum(v["computed"] for v in summary.values())
    skipped = sum(v["skipped"] for v in summary.values())
    what = " and ".join(w for w, on in (("mechanical", mechanical), ("thermal", thermal)) if on)
    click.echo(f"{os.fspath(file)}: {what} properties for {len(summary)} classes: "
               f"{computed} images computed, {skipped} already done")


@click.group("properties")
def properties():
    """Effective (homogenized) properties of 2-phase images."""


@properties.command("homogenize-image")
@click.argument("source", metavar="IMAGE_OR_NPY", type=click.Path())
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) (default all).")
@click.option("--n", "limit", type=click.IntRange(min=1), default=None,
              help="At most N images (per class for HDF5 input). Default: all.")
@_phase_options
def homogenize_image(source, classes, limit, e0, e1, nu0, nu1, k0, k1, plane_strain, double, tol):
    """Print Ex, Ey, Gxy, nu_xy, nu_yx, kx, ky of the images in IMAGE_OR_NPY.

    IMAGE_OR_NPY: a PNG/TIFF image (thresholded unless already 0/1), a folder of them, a .npy array
    (H, W) or (N, H, W) of 0/1, or a MICRO2D-layout HDF5 file. Moduli in the unit of --E0/--E1,
    conductivities in the unit of --k0/--k1; pixel value 0 = phase 0.
    """
    import numpy as np

    from microlatent.data.sources import load_images
    from microlatent.properties import homogenize_elastic, homogenize_thermal

    images, names = load_images(source, classes=list(classes) or None, limit=limit)
    dtype = np.float64 if double else np.float32
    plane = "strain" if plane_strain else "stress"
    rows = [["image", "vf1", "Ex", "Ey", "Gxy", "nu_xy", "nu_yx", "kx", "ky", "iters"]]
    for image, name in zip(images, names):
        mech = homogenize_elastic(image, E=(e0, e1), nu=(nu0, nu1), plane=plane, dtype=dtype, tol=tol)
        therm = homogenize_thermal(image, k=(k0, k1), dtype=dtype, tol=tol)
        values = [float(np.mean(image))] + [mech[key] for key in ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")]
        values += [therm["kx"], therm["ky"]]
        rows.append([name] + [f"{v:.6g}" for v in values] + [f"{mech['iterations']}/{therm['iterations']}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    click.echo(f"plane {plane}; phase 0: E={e0:g} nu={nu0:g} k={k0:g}; phase 1: E={e1:g} nu={nu1:g} "
               f"k={k1:g}. {_AXES}")
