"""``microlatent design`` (``microlatent.design``, latent space): ``fit`` regressors from a run's latent
codes to the properties, ``predict`` with them, ``curves`` of their error against training-set and
latent size, ``search`` the latent space for target properties."""

from __future__ import annotations

import click

from microlatent.cli.properties import split_classes
from microlatent.text import text_table

_labelled_data = click.option(
    "--data",
    "data",
    type=click.Path(dir_okay=False),
    required=True,
    help="MICRO2D-layout HDF5 file with homogenized_mechanical labels (`microlatent properties homogenize`).",
)


@click.group("design")
def design():
    """Latent space to properties and back: fit property regressors on a run's latent codes, predict
    with them, search the latent space for target properties (verified by the FE solver)."""


_KINDS = ("mlp", "linear", "svr", "gbr")
PROPERTY_CHOICES = ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")


def _hidden(text):
    try:
        sizes = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"expected comma-separated positive layer sizes, got {text!r}")
    return sizes


@design.command("fit")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@_labelled_data
@click.option(
    "--regressor",
    "regressors",
    multiple=True,
    type=click.Choice(_KINDS + ("all",)),
    default=("all",),
    show_default=True,
    help="Regressor(s): Cai's MLP, linear regression, RBF SVR, gradient boosting (repeatable).",
)
@click.option(
    "--features",
    "features",
    multiple=True,
    type=click.Choice(("latent", "downsampled", "pca-stats", "all")),
    default=("all",),
    show_default=True,
    help="Latent codes; the control (images area-downsampled to the latent's spatial size); pca-stats: a "
    "PCA of the 2-point statistics (the phase-1 autocorrelation; K phases: the pairs among phases 1..K-1) "
    "with as many components as the latent has (Paulson et al.).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Predictor folder (default: 'properties' beside CHECKPOINT).",
)
@click.option(
    "--class",
    "classes",
    multiple=True,
    metavar="NAMES",
    help="Classes (repeatable or comma-separated). Default: the checkpoint's training classes, else all.",
)
@click.option(
    "--n",
    "limit",
    type=click.IntRange(min=1),
    default=None,
    help="At most N images per class and split (the first of each split).",
)
@click.option(
    "--closed-loop/--no-closed-loop",
    default=True,
    show_default=True,
    help="Also fit latent -> solver properties of the thresholded decoded image (used by `design`).",
)
@click.option("--hidden", default="1000,1000,100", show_default=True, help="MLP hidden layer sizes (Cai et al.).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the MLP and of the closed-loop codes.")
@click.option("--device", default="cpu", show_default=True, help="Device that encodes/decodes (auto, cpu, cuda).")
def fit(checkpoint, data, regressors, features, out, classes, limit, closed_loop, hidden, seed, device):
    """Fit property regressors on CHECKPOINT's latent codes of the images in --data.

    Fitted on the checkpoint's training split, scored (R^2 and MAPE per property) on its test split
    (the split function and settings of training). Writes the predictor folder: predictor.json,
    fitted regressors (skops files, which cannot execute code), metrics.csv, predictions.npz
    and pred_vs_true.png. The control regressors see the images area-downsampled to the latent's
    spatial size (Cai et al.'s 14 x 14).
    """
    from pathlib import Path

    from microlatent.design.predictor import fit_property_models
    from microlatent.design.scores import metrics_table

    kinds = _KINDS if "all" in regressors else regressors
    feats = ("latent", "downsampled", "pca-stats") if "all" in features else features
    out = Path(out) if out else Path(checkpoint).resolve().parent / "properties"
    result = fit_property_models(
        checkpoint,
        data,
        out,
        kinds=kinds,
        features=feats,
        closed_loop=closed_loop,
        classes=split_classes(classes) or None,
        limit=limit,
        device=device,
        seed=seed,
        regressor_params={"hidden_layer_sizes": _hidden(hidden)},
        progress=lambda m: click.echo(m, err=True),
    )
    meta = result["meta"]
    click.echo(
        f"{meta['n_train']} train / {meta['n_test']} test images; latent {tuple(meta['latent_shape'])}, "
        f"control {tuple(meta['control_shape'])} downsampled; MAPE in %"
    )
    click.echo(metrics_table(result["metrics"]))
    click.echo(f"wrote {out} (metrics.csv, pred_vs_true.png, predictor.json)")


@design.command("predict")
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.argument("source", metavar="IMAGES_OR_FILE", type=click.Path())
@click.option("--regressor", type=click.Choice(_KINDS), default="mlp", show_default=True)
@click.option(
    "--features", type=click.Choice(("latent", "downsampled", "pca-stats")), default="latent", show_default=True
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="The model to encode with (default: the one named in MODEL_DIR/predictor.json; must hold the same weights).",
)
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) (default all).")
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test", "all"]),
    default="all",
    show_default=True,
    help="HDF5 input: split (the predictor's split seed and fractions, those of the model's training).",
)
@click.option("--n", "limit", type=click.IntRange(min=1), default=None, help="At most N images (per class for HDF5).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the predictions as CSV.")
@click.option("--device", default="cpu", show_default=True)
def predict(model_dir, source, regressor, features, checkpoint, classes, split, limit, out, device):
    """Predict Ex, Ey, Gxy, nu_xy, nu_yx of the images in IMAGES_OR_FILE with a fitted predictor.

    IMAGES_OR_FILE: PNG/TIFF image, folder, .npy (H, W) or (N, H, W), or MICRO2D-layout HDF5 file.
    MODEL_DIR's regressors are skops files: only scikit-learn and NumPy types are loaded, pickles refused.
    """
    import csv

    import numpy as np

    from microlatent.data import Split
    from microlatent.data.sources import load_images
    from microlatent.design.folder import load_predictor
    from microlatent.design.regression import PROPERTY_NAMES
    from microlatent.models.run import Run

    predictor = load_predictor(model_dir)
    cut = Split.from_config(predictor.meta.get("split") or {})  # the split the predictor was fitted with
    images, names = load_images(
        source,
        classes=split_classes(classes) or None,
        split=split,
        limit=limit,
        seed=cut.seed,
        split_fractions=cut.fractions,
        n_phases=predictor.n_phases,
    )
    if len({np.shape(image) for image in images}) > 1:
        from microlatent.errors import InputError

        raise InputError(f"{source}: images of different sizes; predict them separately")
    model = None
    if features == "latent":
        model = Run.load(checkpoint or predictor.meta["checkpoint"]["path"], device)
        predictor.check_run(model)
    values = predictor.predict_images(np.stack(images), model, kind=regressor, features=features)
    rows = [["image"] + list(PROPERTY_NAMES)] + [[n] + [f"{v:.6g}" for v in row] for n, row in zip(names, values)]
    click.echo(text_table(rows))
    if out:
        with open(out, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        click.echo(f"wrote {out}")


@design.command("curves")
@_labelled_data
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Trained model(s): needed for latent and downsampled features; their split is used. Repeat it "
    "with models of different latent sizes for the latent's curve against size.",
)
@click.option(
    "--features",
    "features",
    multiple=True,
    type=click.Choice(("latent", "downsampled", "pca-stats")),
    default=("pca-stats",),
    show_default=True,
    help="Feature sets (repeatable).",
)
@click.option(
    "--regressor",
    "regressors",
    multiple=True,
    type=click.Choice(_KINDS),
    default=("gbr",),
    show_default=True,
    help="Regressor(s) (repeatable).",
)
@click.option(
    "--sizes",
    default="all",
    show_default=True,
    help="Training-set sizes, comma-separated ('all': the whole training split), e.g. 100,400,all.",
)
@click.option(
    "--components",
    default="4,16,50,100",
    show_default=True,
    help="PCA sizes for pca-stats, comma-separated.",
)
@click.option("--class", "classes", multiple=True, metavar="NAMES", help="Classes (default all, or the checkpoint's).")
@click.option("--n", "limit", type=click.IntRange(min=1), default=None, help="At most N images per class and split.")
@click.option("--property", "prop", type=click.Choice(PROPERTY_CHOICES), default="Ex", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--device", default="cpu", show_default=True, help="Device that encodes (auto, cpu, cuda).")
def curves(data, checkpoints, features, regressors, sizes, components, classes, limit, prop, seed, out, device):
    """Learning curves: property error against training-set size and latent size.

    The VAE latent, the classical latent (PCA of the phase-1 autocorrelation, K phases: of the pairs
    among phases 1..K-1, with each number of --components) and the downsampled control, fitted with
    the same regressors on nested subsets of one training split and scored on its whole test split.
    Writes curves.csv, curves.json and curves.png to --out.
    """
    from microlatent.design.curves import curves_table, learning_curves, write_curves

    result = learning_curves(
        data,
        list(checkpoints) or None,
        features=features,
        kinds=regressors,
        sizes=_int_list(sizes, "--sizes", allow_all=True),
        components=_int_list(components, "--components"),
        classes=split_classes(classes) or None,
        limit=limit,
        seed=seed,
        device=device,
        progress=lambda m: click.echo(m, err=True),
    )
    settings = result["settings"]
    click.echo(
        f"{settings['n_train']} train / {settings['n_test']} test images of {settings['classes']}; "
        f"test-split R2 and MAPE of {prop} (lower MAPE is better)"
    )
    click.echo(curves_table(result["rows"], prop))
    write_curves(result, out, prop)
    click.echo(f"wrote {out} (curves.csv, curves.json, curves.png)")


def _int_list(text, option, allow_all=False):
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if allow_all and part == "all":
            values.append(None)
            continue
        try:
            values.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a whole number", param_hint=option) from None
    return values


@design.command("search")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--predictor",
    "predictor_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Predictor folder from `microlatent design fit` on this CHECKPOINT (trusted folders only).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME=VALUE",
    help="Target property value, e.g. --target Ex=5 (repeatable; Ex, Ey, Gxy, nu_xy, nu_yx).",
)
@click.option(
    "--n-designs",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Designs kept: the best by solver-verified error.",
)
@click.option(
    "--candidates",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Codes searched (and verified with the solver) per target.",
)
@click.option(
    "--span",
    type=click.IntRange(min=1),
    default=None,
    help="Instead of --target: N targets of --property spanning the data's range; writes nRMSE (span.json/csv/png).",
)
@click.option(
    "--property",
    "prop",
    type=click.Choice(PROPERTY_CHOICES),
    default="Ex",
    show_default=True,
    help="Property of the --span.",
)
@click.option(
    "--regressor",
    type=click.Choice(_KINDS),
    default="mlp",
    show_default=True,
    help="Which fitted regressor guides the search (differentiable in torch).",
)
@click.option(
    "--open-loop",
    is_flag=True,
    help="Guide the search by the regressor of the original images' labels instead of the closed-loop one "
    "(decoded, thresholded images' solver properties).",
)
@click.option(
    "--lambda",
    "lam",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="Weight of the prior term lambda ||z||^2 / dim.",
)
@click.option(
    "--latent",
    type=click.Choice(("vae", "pca")),
    default="vae",
    show_default=True,
    help="Search CHECKPOINT's latent, or the predictor's PCA of statistics (Paulson et al.; fitted by "
    "`design fit --features pca-stats`, decoded by reconstruction from statistics, guided by the "
    "labels' regressor).",
)
@click.option(
    "--decode-steps",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="--latent pca: reconstruction iterations per decoded code.",
)
@click.option("--steps", type=click.IntRange(min=0), default=200, show_default=True, help="Adam steps.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
@click.option(
    "--init",
    type=click.Choice(("mixed", "data", "prior")),
    default="mixed",
    show_default=True,
    help="Starting codes: training codes, prior draws, or half of each.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--device", default="cpu", show_default=True, help="Device that decodes (auto, cpu, cuda).")
def search(
    checkpoint,
    predictor_dir,
    targets,
    n_designs,
    candidates,
    span,
    prop,
    regressor,
    open_loop,
    lam,
    latent,
    decode_steps,
    steps,
    lr,
    init,
    seed,
    out,
    device,
):
    """Search CHECKPOINT's latent space for microstructures with target properties.

    Gradient search on the predictor (squared normalised error + lambda ||z||^2 / dim) from
    --candidates starts, then every candidate is decoded, thresholded at 0.5 (K phases: the most
    probable phase per pixel) and verified with the solver (the labels' phase properties); the best
    --n-designs are kept. Reports target vs achieved (solver) for each design. With --span N: N
    targets spanning the data's range of --property, and the normalised RMSE (by the property's std
    over the training labels; also by its range) between targets and solver-verified values.
    """
    from microlatent.design.folder import load_predictor
    from microlatent.design.search import (
        design as run_design,
    )
    from microlatent.design.search import (
        design_span,
        parse_targets,
        summary_lines,
        write_design,
        write_span,
    )
    from microlatent.errors import InputError
    from microlatent.models.run import Run

    predictor = load_predictor(predictor_dir)
    if span is None and not targets:
        raise InputError("give --target NAME=VALUE (repeatable) or --span N")
    if span is not None and targets:
        raise InputError("--span chooses its own targets (of --property); drop --target")
    model = Run.load(checkpoint, device)
    predictor.check_run(model)
    if latent == "pca" and open_loop:
        raise InputError(
            "--open-loop is for --latent vae: a PCA-space search is always guided by the labels' regressor"
        )
    open_loop = open_loop or latent == "pca"
    report = lambda m: click.echo(m, err=True)  # noqa: E731
    common = dict(
        candidates=candidates,
        regressor=regressor,
        closed_loop=not open_loop,
        lam=lam,
        steps=steps,
        lr=lr,
        init=init,
        seed=seed,
        progress=report,
        latent=latent,
        decode_steps=decode_steps,
    )
    if span is not None:
        result = design_span(predictor, model, prop, span, **common)
        files = write_span(result, out)
    else:
        result = run_design(predictor, model, parse_targets(targets), n_designs=n_designs, **common)
        files = write_design(result, out)
    for line in summary_lines(result):
        click.echo(line)
    click.echo("wrote " + ", ".join(str(f) for f in files))
