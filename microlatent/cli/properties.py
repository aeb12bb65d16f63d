"""``microlatent properties`` (``microlatent.properties``, physics): ``homogenize FILE.h5`` fills
``homogenized_mechanical`` / ``homogenized_thermal`` of a MICRO2D-layout file in resumable chunks;
``homogenize-image IMAGE_OR_NPY`` prints the effective constants of one or a few images."""

from __future__ import annotations

import os

import click

from microlatent.text import text_table

_AXES = "Axes: x = image array axis 0 (rows), y = axis 1 (MICRO2D's convention)."


def _phase_options(fn):
    options = [
        click.option(
            "--E0",
            "e0",
            type=float,
            default=10.0,
            show_default=True,
            help="Young's modulus of phase 0 (pixel value 0), GPa.",
        ),
        click.option(
            "--E1",
            "e1",
            type=float,
            default=1.0,
            show_default=True,
            help="Young's modulus of phase 1 (pixel value 1), GPa.",
        ),
        click.option("--nu0", type=float, default=0.3, show_default=True, help="Poisson ratio of phase 0."),
        click.option("--nu1", type=float, default=0.3, show_default=True, help="Poisson ratio of phase 1."),
        click.option("--k0", type=float, default=10.0, show_default=True, help="Conductivity of phase 0."),
        click.option("--k1", type=float, default=1.0, show_default=True, help="Conductivity of phase 1."),
        click.option(
            "--E",
            "e_all",
            default=None,
            metavar="E0,E1,...",
            help="Young's moduli of every phase, comma-separated (K-phase images; replaces --E0/--E1).",
        ),
        click.option("--nu", "nu_all", default=None, metavar="NU0,NU1,...", help="Poisson ratios of every phase."),
        click.option("--k", "k_all", default=None, metavar="K0,K1,...", help="Conductivities of every phase."),
        click.option("--plane-strain", is_flag=True, help="Plane strain instead of plane stress (MICRO2D: stress)."),
        click.option(
            "--float64",
            "double",
            is_flag=True,
            help="Solve in float64 instead of float32 (float32 refines until its residual, recomputed in "
            "float64, meets --tol; an image that still misses it is solved again in float64).",
        ),
        click.option(
            "--tol",
            type=click.FloatRange(min=0, max=1e-3, min_open=True),
            default=1e-6,
            show_default=True,
            help="CG relative residual per load case (property error ~tol^2).",
        ),
        click.option(
            "--max-iter",
            type=click.IntRange(min=1),
            default=200,
            show_default=True,
            help="CG iterations per load case before an image counts as not converged (then solved "
            "again in float64; still not converged = stored as NaN and reported).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _materials(e0, e1, nu0, nu1, k0, k1, e_all, nu_all, k_all):
    """(E, nu, k) tuples per phase: the comma lists when given (K phases), else the 2-phase options."""

    def listed(text, option, default):
        if text is None:
            return default
        try:
            return tuple(float(v) for v in text.split(","))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None

    E = listed(e_all, "--E", (e0, e1))
    nu = listed(nu_all, "--nu", (nu0, nu1) if e_all is None else (nu0,) * len(E))
    k = listed(k_all, "--k", (k0, k1) if e_all is None else None)
    if k is None:
        k = E  # conductivities not given for K phases: thermal runs only with --k
    return E, nu, k


def split_classes(classes):
    out = []
    for item in classes:
        out.extend(part.strip() for part in item.split(",") if part.strip())
    return out


@click.group("properties")
def properties():
    """Effective (homogenized) properties of 2- or K-phase images: FE solver, files and single images."""


@properties.command("homogenize")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--classes",
    "--class",
    "classes",
    multiple=True,
    metavar="NAMES",
    help="Classes to process (repeatable or comma-separated). Default: all.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Images computed, written and flushed together (what an interruption can lose).",
)
@click.option("--mechanical/--no-mechanical", default=True, show_default=True, help="Fill homogenized_mechanical.")
@click.option("--thermal/--no-thermal", default=True, show_default=True, help="Fill homogenized_thermal.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Discard the selected classes' property datasets and recompute them all. Without "
    "it finished rows are kept (resume), and datasets written with other settings or "
    "by another program (e.g. MICRO2D's own labels) stop the command untouched.",
)
@_phase_options
def homogenize(
    file,
    classes,
    chunk,
    mechanical,
    thermal,
    overwrite,
    e0,
    e1,
    nu0,
    nu1,
    k0,
    k1,
    e_all,
    nu_all,
    k_all,
    plane_strain,
    double,
    tol,
    max_iter,
):
    """Compute homogenized properties of the images in FILE (MICRO2D HDF5 layout), in place.

    Fills f[C]["homogenized_mechanical"] (n, 6, 5) = [Ex, nu_xy, Ey, nu_yx, Gxy] and
    f[C]["homogenized_thermal"] (n, 6, 2) = [kx, ky] at contrast index 0 (indices 1-5 NaN; the
    INSTRUCTIONS attribute says what each index means and which phase properties were used).
    Chunks are written and flushed as they finish: run the same command again after an
    interruption and the finished rows are skipped.
    """
    import numpy as np
    from tqdm import tqdm

    from microlatent.errors import InputError
    from microlatent.properties.storage import homogenize_file

    E, nu, k = _materials(e0, e1, nu0, nu1, k0, k1, e_all, nu_all, k_all)
    if thermal and e_all is not None and k_all is None:
        raise InputError("--E gives K phases: give their conductivities with --k too, or pass --no-thermal")
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
            file,
            classes=split_classes(classes) or None,
            chunk=chunk,
            E=E,
            nu=nu,
            plane="strain" if plane_strain else "stress",
            k=k,
            mechanical=mechanical,
            thermal=thermal,
            dtype=np.float64 if double else np.float32,
            tol=tol,
            max_iter=max_iter,
            overwrite=overwrite,
            progress=progress,
        )
    finally:
        for bar in bars.values():
            bar.close()
    computed = sum(v["computed"] for v in summary.values())
    skipped = sum(v["skipped"] for v in summary.values())
    what = " and ".join(w for w, on in (("mechanical", mechanical), ("thermal", thermal)) if on)
    click.echo(
        f"{os.fspath(file)}: {what} properties for {len(summary)} classes: "
        f"{computed} images computed, {skipped} already done"
    )


@properties.command("homogenize-image")
@click.argument("source", metavar="IMAGE_OR_NPY", type=click.Path())
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) (default all).")
@click.option(
    "--n",
    "limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most N images (per class for HDF5 input). Default: all.",
)
@_phase_options
def homogenize_image(
    source, classes, limit, e0, e1, nu0, nu1, k0, k1, e_all, nu_all, k_all, plane_strain, double, tol, max_iter
):
    """Print Ex, Ey, Gxy, nu_xy, nu_yx, kx, ky of the images in IMAGE_OR_NPY.

    IMAGE_OR_NPY: a PNG/TIFF image (thresholded unless already 0/1), a folder of them, a .npy array
    (H, W) or (N, H, W) of 0/1, or a MICRO2D-layout HDF5 file. Moduli in the unit of --E0/--E1,
    conductivities in the unit of --k0/--k1; pixel value 0 = phase 0.
    """
    import numpy as np

    from microlatent.data.sources import load_images
    from microlatent.properties import homogenize_elastic, homogenize_thermal

    E, nu, k = _materials(e0, e1, nu0, nu1, k0, k1, e_all, nu_all, k_all)
    images, names = load_images(source, classes=list(classes) or None, limit=limit, n_phases=len(E))
    dtype = np.float64 if double else np.float32
    plane = "strain" if plane_strain else "stress"
    rows = [["image", "vf1", "Ex", "Ey", "Gxy", "nu_xy", "nu_yx", "kx", "ky", "iters"]]
    for image, name in zip(images, names):
        mech = homogenize_elastic(image, E=E, nu=nu, plane=plane, dtype=dtype, tol=tol, max_iter=max_iter)
        therm = homogenize_thermal(image, k=k, dtype=dtype, tol=tol, max_iter=max_iter)
        values = [float(np.mean(image == 1))] + [mech[key] for key in ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")]
        values += [therm["kx"], therm["ky"]]
        rows.append([name] + [f"{v:.6g}" for v in values] + [f"{mech['iterations']}/{therm['iterations']}"])
    click.echo(text_table(rows))
    phases = "; ".join(f"phase {p}: E={e:g} nu={v:g} k={c:g}" for p, (e, v, c) in enumerate(zip(E, nu, k)))
    click.echo(f"plane {plane}; {phases}. {_AXES}")


# --------------------------------------------------------------------------------------------
# Property prediction from latent codes, and design in latent space.
# --------------------------------------------------------------------------------------------
