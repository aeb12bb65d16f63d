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
    """Generate, inspect and import 2-phase image sets (MICRO2D HDF5 layout)."""


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
    VoronoiMediumSpaced, VoronoiSmall (case-insensitive).
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

    rows = [["class", "images", "shape", "vf mean", "vf min", "vf max", "labels", "mechanical", "thermal"]]
    for name, entry in info["classes"].items():
        rows.append(
            [
                name,
                str(entry["count"]),
                "x".join(map(str, entry["shape"])),
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
@click.argument("folder", type=click.Path(file_okay=False))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="HDF5 file to write (created, or the class replaced in an existing file).",
)
@click.option("--name", default=None, help="Class (group) name.  [default: the folder's name]")
@click.option(
    "--threshold",
    default="otsu",
    show_default=True,
    callback=_threshold,
    help="'otsu' (per image) or a fixed grey level in [0, 1); brighter pixels become phase 1.",
)
@click.option("--invert", is_flag=True, help="Make dark pixels phase 1 instead.")
def import_cmd(folder, out, name, threshold, invert):
    """Threshold every image in FOLDER (PNG, TIFF, ...; same size) into one class of an HDF5 file."""
    from microlatent.data.importing import import_images
    from microlatent.data.store import class_size

    written = import_images(folder, out, name=name, threshold=threshold, invert=invert)
    n, height, width = class_size(out, written)
    click.echo(f"wrote class {written} ({n} images, {height}x{width}) to {out}")
