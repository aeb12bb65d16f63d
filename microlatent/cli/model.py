"""``microlatent model encode | decode | roundtrip``: a trained model on images and latent codes."""

from pathlib import Path

import click
import numpy as np

from microlatent.cli.train import _DEVICE
from microlatent.data.sources import load_images
from microlatent.errors import DataError, InputError


@click.group("model")
def model():
    """Use a trained model: encode images to latent codes, decode codes to images, or draw the round trip
    (encode then decode) of inputs through one or more models."""


@model.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".npz with mu, logvar and names.")
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) to encode (default all).")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True)
@click.option("--n", "limit", type=click.IntRange(min=1), default=None, help="At most this many images per class.")
@_DEVICE
def encode(checkpoint, source, out, classes, split, limit, device):
    """Encode the microstructures in SOURCE (HDF5, image, folder or .npy) to latent means and log-variances
    (a K-phase model: SOURCE holds K-phase labels)."""
    from microlatent.evaluation import encode as encode_images
    from microlatent.models.run import Run

    _check_npz_out(out)
    run = Run.load(checkpoint, device)
    images, names = load_images(source, classes=classes or None, split=split, limit=limit, n_phases=run.model.n_phases)
    mu, logvar = encode_images(run, images)
    _save_npz(out, mu=mu, logvar=logvar, names=np.array(names))
    click.echo(f"wrote {out}: {len(names)} latent codes of shape {mu.shape[1:]}")


@model.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("latents", type=click.Path(path_type=Path))
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help=".npz of decoded images (N, H, W); a PNG beside it."
)
@click.option("--threshold", type=float, default=None, help="Also threshold the decoded probabilities at this value.")
@_DEVICE
def decode(checkpoint, latents, out, threshold, device):
    """Decode latent codes (the 'mu' array of an `encode` .npz) back to microstructures. A K-phase model's:
    phase probabilities (N, K, H, W) as 'images' and the most probable phase per pixel as 'labels'."""
    from microlatent.evaluation import decode as decode_latents
    from microlatent.evaluation.inference import phase_labels
    from microlatent.models.run import Run
    from microlatent.plotting import plot_images_with_statistics, plot_phase_statistics

    if threshold is not None and not 0 < threshold < 1:  # NaN included: it gave all-zero images
        raise InputError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    _check_npz_out(out)
    try:
        with np.load(latents, allow_pickle=False) as archive:
            z = archive["mu"]
    except (OSError, KeyError, ValueError, EOFError, AttributeError, TypeError) as err:
        # AttributeError/TypeError: a .npy (an array, not an archive); EOFError: an empty file
        raise DataError(
            f"{latents}: not an .npz with a 'mu' array, as `microlatent model encode` writes "
            f"({type(err).__name__}: {str(err)[:120] or 'empty file'})"
        ) from None
    if z.ndim < 2 or len(z) == 0 or not np.issubdtype(z.dtype, np.floating) or not np.isfinite(z).all():
        raise DataError(
            f"{latents}: 'mu' must be a non-empty array (N, ...) of finite floats, got shape {z.shape}, dtype {z.dtype}"
        )
    images = decode_latents(Run.load(checkpoint, device), z)
    if images.ndim == 4:  # K phases
        if threshold is not None:
            raise InputError("--threshold is for 2-phase models; a K-phase model's most probable phases are 'labels'")
        labels = phase_labels(images)
        k = images.shape[1]
        _save_npz(out, images=images, labels=labels)
        figure = plot_phase_statistics(
            labels[:6], k, [(h, h) for h in range(k)], [f"decoded {i}" for i in range(min(6, len(labels)))],
            path=Path(out).with_suffix(".png"),
        )  # fmt: skip
        click.echo(f"wrote {out} {images.shape} (and labels) and {figure}")
        return
    if threshold is not None:
        images = (images > threshold).astype(np.float32)
    _save_npz(out, images=images)
    figure = plot_images_with_statistics(
        images[:12], [f"decoded {i}" for i in range(min(12, len(images)))], Path(out).with_suffix(".png")
    )
    click.echo(f"wrote {out} {images.shape} and {figure}")


@model.command("roundtrip")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    "source",
    type=click.Path(path_type=Path),
    required=True,
    help="HDF5 file, image, folder or .npy of inputs.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="PNG figure; an .npz of reconstructions beside it."
)
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) (default all).")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--n", "limit", type=click.IntRange(min=1), default=1, show_default=True, help="Images per class.")
@_DEVICE
def roundtrip(checkpoints, source, out, classes, split, limit, device):
    """The round trip (encode, then decode) of inputs through one or more models (CHECKPOINTS), drawn with
    the statistics of input and output."""
    from microlatent.cli.evaluate import checkpoint_labels
    from microlatent.evaluation import reconstruction_figure
    from microlatent.plotting import check_figure_path

    check_figure_path(out)
    labels = checkpoint_labels(checkpoints)  # run folder names, made unique
    figure = reconstruction_figure(
        labels, source, out, classes=classes or None, split=split, limit=limit, device=device
    )
    click.echo(f"wrote {figure}")


def _check_npz_out(path):
    # NumPy appends ".npz" to any other name: the file written would not be the one reported
    if Path(path).suffix != ".npz" or Path(path).is_dir():
        raise InputError(f"--out must be an .npz file name, got {path}")


def _save_npz(path, **arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
