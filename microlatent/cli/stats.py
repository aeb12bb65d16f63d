"""``microlatent stats``: a microstructure beside its centred 2-point statistics."""

from pathlib import Path

import click
import numpy as np

from microlatent.data.sources import load_images
from microlatent.errors import InputError
from microlatent.plotting import check_figure_path, plot_images_with_statistics
from microlatent.stats import offsets, resolve_pairs, two_point


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("statistics.png"),
    show_default=True,
    help="PNG figure: each image above the centred autocorrelation of phase 1.",
)
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) to show (repeatable). Default: all.")
@click.option(
    "--n",
    "limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="HDF5 input: images per class; folder: images in all.",
)
@click.option(
    "--periodic/--non-periodic",
    default=True,
    show_default=True,
    help="Wrap offsets around the image (MICRO2D images are periodic) or not.",
)
@click.option(
    "--pairs",
    type=click.Choice(["auto", "all"]),
    default="all",
    show_default=True,
    help="Phase pairs saved with --save: autocorrelations only, or every ordered pair.",
)
@click.option(
    "--save",
    type=click.Path(path_type=Path),
    default=None,
    help="Also save the statistics (N, K, H', W'), their pairs and offsets to this .npz.",
)
def stats(source, out, classes, limit, periodic, pairs, save):
    """Compute 2-point statistics of SOURCE and draw them.

    SOURCE is an HDF5 file in the MICRO2D layout, a PNG/TIFF image (thresholded by Otsu unless
    already binary), a folder of images, or a .npy array of phase-1 probabilities.
    """
    check_figure_path(out)
    if save is not None and save.suffix != ".npz":
        raise InputError(f"--save must be an .npz file name, got {save}")
    images, names = load_images(source, classes=classes or None, limit=limit)
    plot_images_with_statistics(images, names, out, periodic=periodic)
    click.echo(f"wrote {out} ({len(images)} image{'s' * (len(images) != 1)})")
    if save is not None:
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise click.UsageError(f"--save needs images of one size, got {sorted(shapes)}")
        values = two_point(np.stack(images), periodic=periodic, pairs=pairs)
        ry, rx = offsets(images[0].shape, periodic)
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            save,
            statistics=values,
            pairs=np.array(resolve_pairs(pairs, 2)),
            offsets_y=ry,
            offsets_x=rx,
            periodic=periodic,
            names=np.array(names),
        )
        click.echo(f"wrote {save} (statistics {values.shape})")
