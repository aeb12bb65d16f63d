"""``microlatent synthesize``: new microstructures whose 2-point statistics match a target
(statistical reconstruction; not the round trip through a model, which is ``model roundtrip``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import numpy as np

from microlatent.errors import DataError, InputError


@click.command("synthesize")
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the reconstructions (.npy phase labels, .png), one figure per target and summary.json.",
)
@click.option(
    "--method",
    type=click.Choice(["gradient", "annealing"]),
    default="gradient",
    show_default=True,
    help="Gradient descent on a pixel field (with the clamp loss), or Yeong-Torquato simulated annealing.",
)
@click.option(
    "--optimizer",
    type=click.Choice(["lbfgs", "adam"]),
    default=None,
    help="Gradient method: L-BFGS-B on pixel values with restarts (default for 2 phases on a CPU), or "
    "Adam on a sigmoid/softmax field with the clamp loss (default for more phases or on a GPU).",
)
@click.option(
    "--loss",
    type=click.Choice(["cess", "msess"]),
    default="cess",
    show_default=True,
    help="Statistics loss of --optimizer adam (lbfgs fits the phase-1 autocorrelation by squared error).",
)
@click.option(
    "--n", "n_samples", type=click.IntRange(min=1), default=1, show_default=True, help="Reconstructions per target."
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Gradient steps or L-BFGS-B evaluations (default 1000), or annealing candidate swaps "
    "(default 20 per pixel, at most 200,000).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds per run instead of (or as well as) --steps.",
)
@click.option(
    "--polish",
    type=click.IntRange(min=0),
    default=None,
    help="Gradient: greedy swap candidates on the binary image afterwards (default 2 per pixel; 0 = none).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="L-BFGS-B: independent searches run at once, one process (core) each; the best is kept.",
)
@click.option(
    "--periodic/--non-periodic",
    default=None,
    help="Periodic statistics. Default: as a statistics file says, else periodic.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--device", default="auto", show_default=True, help="auto (a GPU if there is one), cpu, cuda, cuda:1, ..."
)
@click.option(
    "--volume-fraction",
    type=click.FloatRange(0, 1),
    default=None,
    help="Volume fraction of phase 1 (2 phases). Default: read off the statistics at r = 0.",
)
@click.option(
    "--size",
    type=click.IntRange(min=2),
    default=None,
    help="Image side when a statistics file holds only the central offsets (a crop).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Targets to reconstruct: the first LIMIT images (of each --class) or statistics maps in TARGET.",
)
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) to take targets from (repeatable).")
def synthesize(
    target,
    out,
    method,
    optimizer,
    loss,
    n_samples,
    steps,
    time_limit,
    polish,
    workers,
    periodic,
    seed,
    device,
    volume_fraction,
    size,
    limit,
    classes,
):
    """Reconstruct microstructures from the 2-point statistics of TARGET.

    TARGET is a statistics file from `microlatent stats --save` (.npz), or a microstructure: an HDF5
    file in the MICRO2D layout, a PNG/TIFF image, a folder of them, or a .npy array (phase-1
    probabilities, or integer phase labels for more than 2 phases). Prints each reconstruction's
    statistics error: MSESS over every ordered phase pair and offset (Cai et al. eq. 7).
    """
    from microlatent.reconstruction import plot_reconstructions, reconstruct

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; reconstructions are written into a folder")
    targets = _targets(target, periodic, size, limit, classes)
    if not targets:
        raise DataError(f"{target}: no statistics maps or images to reconstruct")
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for t in targets:
        options = {"optimizer": optimizer} if method == "gradient" and optimizer else {}
        if optimizer and method != "gradient":
            raise InputError("--optimizer applies to --method gradient")
        results = reconstruct(
            t,
            method=method,
            loss=loss,
            n_samples=n_samples,
            steps=steps,
            seed=seed,
            device=device,
            volume_fraction=volume_fraction,
            time_limit=time_limit,
            polish=polish,
            workers=workers,
            progress=True,
            **options,
        )
        stem = _stem(t.name)
        for j, r in enumerate(results):
            array_path, png_path = out / f"{stem}_{method}_{j}.npy", out / f"{stem}_{method}_{j}.png"
            np.save(array_path, r.image)
            _save_png(png_path, r.image, t.n_phases)
            vf = r.volume_fractions[1] if t.n_phases == 2 else np.round(r.volume_fractions, 4).tolist()
            click.echo(
                f"{t.name} [{j}] {method}: statistics error (MSESS) {r.error:.4g}, CESS excess {r.cess:.4g}"
                + (f", soft {r.soft_error:.4g}" if r.soft_error is not None else "")
                + f", volume fraction {vf if np.ndim(vf) else f'{vf:.4f}'} (target "
                + (f"{t.volume_fractions[1]:.4f}" if t.n_phases == 2 else str(np.round(t.volume_fractions, 4).tolist()))
                + f"), {r.seconds:.1f} s -> {array_path}"
            )
            summary.append(
                {
                    "target": t.name,
                    "sample": j,
                    "method": method,
                    "optimizer": r.optimizer,
                    "loss": r.loss,
                    "error": r.error,
                    "cess": r.cess,
                    "soft_error": r.soft_error,
                    "seconds": r.seconds,
                    "steps": r.steps,
                    "seed": r.seed,
                    "volume_fractions": r.volume_fractions.tolist(),
                    "target_volume_fractions": np.asarray(t.volume_fractions).tolist(),
                    "image": array_path.name,
                }
            )
        figure = plot_reconstructions(
            t,
            results,
            out / f"{stem}_{method}_figure.png",
            title=f"{t.name}: {method}" + (f" ({loss})" if method == "gradient" else ""),
        )
        click.echo(f"wrote {figure}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    click.echo(f"wrote {out / 'summary.json'}")


def _targets(source, periodic, size, limit, classes):
    from microlatent.reconstruction.target import from_image, from_mapping

    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if source.suffix.lower() == ".npz":
        try:
            with np.load(source, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{source}: not a readable .npz file ({err})") from None
        if "statistics" not in contents:
            raise DataError(f"{source}: not a statistics file (no 'statistics' array; keys {sorted(contents)})")
        count = contents["statistics"].shape[0] if contents["statistics"].ndim == 4 else 1
        return [
            from_mapping(contents, periodic=periodic, size=size, index=i, source=str(source))
            for i in range(min(limit, count))
        ]
    if size is not None:
        raise click.UsageError("--size applies to a statistics file (.npz) only")
    periodic = True if periodic is None else periodic
    if source.suffix.lower() == ".npy":
        try:
            array = np.load(source, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{source}: not a readable .npy array ({err})") from None
        if np.issubdtype(array.dtype, np.integer) and array.size and array.max() > 1:
            if array.ndim not in (2, 3):
                raise DataError(f"{source}: phase labels must be (H, W) or (N, H, W), got shape {array.shape}")
            batch = np.asarray(array if array.ndim == 3 else array[None])[:limit]
            n_phases = int(array.max()) + 1
            return [
                from_image(np.asarray(a), periodic=periodic, n_phases=n_phases, name=f"{source.stem}[{i}]")
                for i, a in enumerate(batch)
            ]
    from microlatent.data.sources import load_images, source_phases

    k = source_phases(source, classes or None)
    images, names = load_images(source, classes=classes or None, limit=limit, n_phases=k)
    if k > 2:  # phase labels
        images = [image.astype(np.int64) for image in images]
    return [from_image(image, periodic=periodic, n_phases=k, name=name) for image, name in zip(images, names)]


def _stem(name):
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_") or "target"


def _save_png(path, labels, n_phases):
    from PIL import Image

    grey = (labels.astype(np.uint16) * 255 // max(1, n_phases - 1)).astype(np.uint8)
    partial = path.with_name(f".{path.name}.partial")
    Image.fromarray(grey).save(partial, format="PNG")
    partial.replace(path)


__all__ = ["synthesize"]
