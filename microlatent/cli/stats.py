"""``microlatent stats``: a microstructure beside its centred 2-point statistics."""

from pathlib import Path

import click
import numpy as np

from microlatent.data.sources import load_images, source_phases
from microlatent.errors import InputError
from microlatent.plotting import check_figure_path, plot_images_with_statistics, plot_phase_statistics
from microlatent.stats import offsets, one_hot, resolve_pairs, two_point


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
    "--phases",
    type=click.IntRange(min=2, max=255),
    default=None,
    help="Number of phases K. Default: what SOURCE holds (an HDF5 class's n_phases, a .npy's largest "
    "integer label + 1; images: 2). Images with K > 2: K grey levels, or multi-level Otsu.",
)
@click.option(
    "--pair",
    "named_pairs",
    multiple=True,
    metavar="H,H'",
    help="A cross-correlation to draw and save besides the autocorrelations, e.g. --pair 0,2 (repeatable).",
)
@click.option(
    "--save",
    type=click.Path(path_type=Path),
    default=None,
    help="Also save the statistics (N, K, H', W'), their pairs and offsets to this .npz.",
)
def stats(source, out, classes, limit, periodic, pairs, phases, named_pairs, save):
    """Compute 2-point statistics of SOURCE and draw them.

    SOURCE is an HDF5 file in the MICRO2D layout, a PNG/TIFF image (thresholded by Otsu unless
    already binary), a folder of images, or a .npy array of phase-1 probabilities or of integer phase
    labels 0..K-1. With K > 2 phases the figure shows every autocorrelation and each --pair.
    """
    check_figure_path(out)
    if save is not None and save.suffix != ".npz":
        raise InputError(f"--save must be an .npz file name, got {save}")
    k = phases or source_phases(source, classes or None)
    extra = []
    for text in named_pairs:
        try:
            h, h2 = (int(v) for v in text.split(","))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not two phase indices H,H'", param_hint="--pair") from None
        extra.append((h, h2))
    extra = resolve_pairs(extra, k) if extra else []
    images, names = load_images(source, classes=classes or None, limit=limit, n_phases=k)
    if k == 2 and not extra:
        plot_images_with_statistics(images, names, out, periodic=periodic)
    else:
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise click.UsageError(f"{k}-phase figures need images of one size, got {sorted(shapes)}")
        shown = resolve_pairs("auto", k) + [p for p in extra if p[0] != p[1]]
        plot_phase_statistics(np.stack(images).astype(np.uint8), k, shown, names, out, periodic=periodic)
    click.echo(f"wrote {out} ({len(images)} image{'s' * (len(images) != 1)}, {k} phases)")
    if save is not None:
        shapes = {image.shape for image in images}
        if len(shapes) > 1:
            raise click.UsageError(f"--save needs images of one size, got {sorted(shapes)}")
        chosen = resolve_pairs(pairs, k)
        chosen += [p for p in extra if p not in chosen]
        stack = np.stack(images)
        values = two_point(
            one_hot(stack.astype(np.uint8), k, np.float64) if k > 2 else stack, periodic=periodic, pairs=chosen
        )
        ry, rx = offsets(images[0].shape, periodic)
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            save,
            statistics=values,
            pairs=np.array(chosen),
            offsets_y=ry,
            offsets_x=rx,
            periodic=periodic,
            names=np.array(names),
        )
        click.echo(f"wrote {save} (statistics {values.shape})")
