"""``microlatent data``: generate, inspect and import MICRO2D-layout HDF5 data sets."""

from __future__ import annotations

import os

import click

from microlatent.errors import DataError, InputError


def _parse_param(text: str) -> tuple[str, object]:
    from microlatent.data.generators._common import parse_value

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--param expects KEY=VALUE, got {text!r}")
    value = value.strip()
    if value.lower() in ("true", "false"):
        return key.strip(), value.lower() == "true"
    if "," in value and not value.startswith("["):
        return key.strip(), [parse_value(part) for part in value.split(",")]
    return key.strip(), parse_value(value)


@click.group()
def data():
    """Generate, inspect and import image sets of 2 or K phases (MICRO2D HDF5 layout)."""


@data.command("generate")
@click.argument("kind")
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Images per class (micro2d-like writes N images for each of its ten classes).",
)
@click.option(
    "--size",
    type=click.IntRange(min=8),
    default=None,
    help="Image side in pixels.  [default: 224 for lines and circles, 256 for MICRO2D-like]",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Random seed; the same seed gives byte-identical images.",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="HDF5 file to write; created if missing, otherwise classes of the same name are replaced and the others kept.",
)
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Generator parameter, repeatable; ranges as MIN,MAX (e.g. -p n_lines=3,7 "
    "-p volume_fraction=0.2,0.4). See the generator's docstring for names.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Images generated and written at a time (memory: batch x size^2 bytes).",
)
@click.option(
    "--compression",
    type=click.Choice(["gzip", "lzf", "none"]),
    default="gzip",
    show_default=True,
    help="HDF5 compression of the images and labels.",
)
def generate_cmd(kind, n, size, seed, out, params, batch_size, compression):
    """Generate KIND and write it to an HDF5 file.

    KIND is lines, circles, micro2d-like (all ten MICRO2D classes) or one MICRO2D class:
    GRF, NBSA, AngEllipse, RandomEllipse, VoidSmall, VoidSmallBig, VoronoiLarge, VoronoiMedium,
    VoronoiMediumSpaced, VoronoiSmall (case-insensitive); or a 3-phase class: GRF3 (a Gaussian random
    field cut at two levels), Voronoi3 (grains of three phases).
    """
    from tqdm import tqdm

    from microlatent.data.make import write_generated

    bars = {}

    def progress(name, done, total):
        if name not in bars:
            bars[name] = tqdm(total=total, desc=f"{name:<20}", unit="img")
        bars[name].update(done - bars[name].n)

    extra = dict(_parse_param(p) for p in params)
    try:
        names = write_generated(
            out, kind, n, size, seed, batch_size, None if compression == "none" else compression, progress, **extra
        )
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(f"wrote {', '.join(names)} ({n} images each) to {out}")


def _table(rows: list[list[str]]) -> str:
    from microlatent.text import text_table

    return text_table(rows, rule=True)


@data.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--no-vf", is_flag=True, help="Skip the volume-fraction scan (which reads every image).")
def info_cmd(file, no_vf):
    """Print the classes, counts, image shape and volume fractions of FILE."""
    from tqdm import tqdm

    from microlatent.data.store import file_info, list_classes

    bar = None
    if not no_vf:
        from microlatent.data.store import class_size

        total = sum(class_size(file, name)[0] for name in list_classes(file))
        bar = tqdm(total=total, desc="scanning", unit="img", leave=False)
        done = {}

        def progress(name, count):
            bar.update(count - done.get(name, 0))
            done[name] = count

    try:
        info = file_info(file, volume_fractions=not no_vf, progress=None if no_vf else progress)
    finally:
        if bar is not None:
            bar.close()

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    rows = [["class", "images", "shape", "phases", "vf mean", "vf min", "vf max", "labels", "mechanical", "thermal"]]
    multi = []
    for name, entry in info["classes"].items():
        if entry["n_phases"] > 2 and entry.get("phase_fractions"):
            multi.append(f"{name}: " + ", ".join(f"{p}: {v:.3f}" for p, v in enumerate(entry["phase_fractions"])))
        rows.append(
            [
                name,
                str(entry["count"]),
                "x".join(map(str, entry["shape"])),
                str(entry["n_phases"]),
                fmt(entry.get("vf_mean")),
                fmt(entry.get("vf_min")),
                fmt(entry.get("vf_max")),
                "yes" if entry["has_labels"] else "no",
                "yes" if entry["has_mechanical"] else "no",
                "yes" if entry["has_thermal"] else "no",
            ]
        )
    total = sum(entry["count"] for entry in info["classes"].values())
    click.echo(f"{os.fspath(file)}: {len(info['classes'])} classes, {total} images")
    if len(rows) > 1:
        click.echo(_table(rows))
    click.echo("vf = volume fraction of phase 1 (pixels equal to 1), per image")
    for line in multi:
        click.echo(f"mean phase fractions of {line}")
    if info["problems"]:
        raise DataError(
            f"{os.fspath(file)}: {len(info['problems'])} malformed dataset(s): {'; '.join(info['problems'])}"
        )


def _threshold(ctx, param, value):
    if value.lower() == "otsu":
        return "otsu"
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected 'otsu' or a number in [0, 1), got {value!r}") from None


@data.command("import")
@click.argument("source", metavar="FOLDER_OR_FILE", type=click.Path())
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="HDF5 file to write (created, or the class replaced in an existing file).",
)
@click.option("--name", default=None, help="Class (group) name.  [default: the folder's or file's name]")
@click.option(
    "--threshold",
    default="otsu",
    show_default=True,
    callback=_threshold,
    help="'otsu' (per image) or a fixed grey level in [0, 1); brighter pixels become phase 1 (2 phases).",
)
@click.option("--invert", is_flag=True, help="Make dark pixels phase 1 instead (2 phases).")
@click.option(
    "--phases",
    type=click.IntRange(min=2, max=255),
    default=None,
    help="Number of phases K. Images: label images with K grey levels (or a palette) map their levels in "
    "increasing order to phases 0..K-1; other greyscale images are split by multi-level Otsu. A .npy of "
    "integer labels: default its largest label + 1. [default: 2 for images]",
)
@click.option(
    "--tile",
    type=click.IntRange(min=8),
    default=None,
    help="Store each image's TILE x TILE windows instead of the whole image (a large micrograph becomes a "
    "training set).",
)
@click.option(
    "--stride", type=click.IntRange(min=1), default=None, help="Pixels between windows of --tile [default: TILE]."
)
def import_cmd(source, out, name, threshold, invert, phases, tile, stride):
    """Import FOLDER_OR_FILE into one class of an HDF5 file (MICRO2D layout).

    A folder of images (PNG, TIFF, ...; same size) or one image file: thresholded into 2 phases,
    or split into --phases K. A .npy (H, W) or (N, H, W) of integer phase labels 0..K-1: stored as
    they are. K > 2 is recorded as the class's n_phases attribute; the level-to-phase mapping is
    printed and stored.
    """
    from microlatent.data.importing import import_images, import_labels
    from microlatent.data.store import class_phases, class_size, open_file
    from microlatent.errors import InputError

    if stride is not None and tile is None:
        raise InputError("--stride needs --tile")
    if source.lower().endswith(".npy"):
        written, k = import_labels(source, out, name=name, n_phases=phases, tile=tile, stride=stride)
    else:
        written = import_images(
            source, out, name=name, threshold=threshold, invert=invert, n_phases=phases or 2, tile=tile, stride=stride
        )
        k = class_phases(out, written)
    n, height, width = class_size(out, written)
    click.echo(f"wrote class {written} ({n} images, {height}x{width}, {k} phases) to {out}")
    with open_file(out) as f:
        mapping = f[written].attrs.get("phase_mapping")
    if mapping is not None:
        click.echo(f"phase mapping (first image): {mapping}")
