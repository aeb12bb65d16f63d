"""Learning curves of property prediction: error against training-set size and latent size, for the
VAE latent, the classical latent (PCA of 2-point statistics, Paulson et al. 2017) and the
downsampled-image control, on one split with the same regressors.

    result = learning_curves("grf64.h5", features=("pca-stats",), kinds=("gbr",),
                             sizes=(100, 400, None), components=(5, 25, 50, 100))
    result["rows"]   # dicts: features, dimensions, regressor, n_train, property, r2, mape, n_test
    write_curves(result, "curves/")   # curves.csv, curves.png, curves.json

The training subsets are nested (the first n of one seeded permutation of the training split), every
model is scored on the whole test split. The PCA is fitted on the training subset only (no test image,
no image outside the subset) with the most components asked for; fewer components are its leading ones
(a PCA's components are nested). The VAE latent and the control each have one size per model: for a
curve against latent size, give several checkpoints trained alike on the same split with different
latent sizes (e.g. ``--set model.latent_channels=1``, 2, 4).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from microlatent.design.regression import FEATURE_KINDS, PROPERTY_NAMES, REGRESSOR_KINDS, PropertyRegressor
from microlatent.errors import InputError
from microlatent.evaluation.metrics import mape, r2_per_property
from microlatent.text import text_table

DEFAULT_COMPONENTS = (4, 16, 50, 100)


def _subset_sizes(sizes, n_train) -> list[int]:
    """Training sizes to fit, ``None`` meaning all; too-large sizes are refused, not capped silently."""
    out = []
    for size in sizes or (None,):
        n = n_train if size is None else int(size)
        if n < 2:
            raise InputError(f"a training size must be at least 2, got {size!r}")
        if n > n_train:
            raise InputError(f"training size {n} is more than the {n_train} training images of the split")
        out.append(n)
    return sorted(set(out))


def learning_curves(
    data,
    checkpoint=None,
    features=("pca-stats",),
    kinds=("gbr",),
    sizes=(None,),
    components=DEFAULT_COMPONENTS,
    classes=None,
    limit=None,
    seed=0,
    device="cpu",
    progress=None,
) -> dict:
    """Fit every (features, dimensions, regressor, training size) and score it on the test split.

    Parameters
    ----------
    data : MICRO2D-layout HDF5 file with ``homogenized_mechanical`` labels.
    checkpoint : trained model (``model.pt``) or a list of them, needed for "latent" and "downsampled"
        features; their split is used (they must share it). Without one, the default split (seed 0,
        80/10/10) of ``classes``.
    features : subset of ("latent", "downsampled", "pca-stats").
    kinds : subset of ("mlp", "linear", "svr", "gbr").
    sizes : training-set sizes (None: the whole training split).
    components : PCA sizes for "pca-stats" (each at most the smallest training size - 1).
    classes, limit : classes of the file (default all, or the checkpoint's) and at most ``limit``
        images per class and split.

    Returns ``{"rows": [...], "settings": {...}}``; a row has features, dimensions, regressor,
    n_train, n_test, property, r2, mape, explained_variance (PCA rows; else None).
    """
    from microlatent.data.split import Split
    from microlatent.design.labels import read_labelled_split
    from microlatent.design.regression import (
        control_shape,
        feature_matrix,
        latent_codes,
        model_latent_shape,
        pca_features,
    )
    from microlatent.stats import StatisticsPCA

    say = progress or (lambda message: None)
    features = [features] if isinstance(features, str) else list(features)
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for value, allowed, what in ((features, FEATURE_KINDS, "features"), (kinds, REGRESSOR_KINDS, "regressor")):
        bad = [v for v in value if v not in allowed]
        if bad or not value:
            raise InputError(f"unknown {what} {', '.join(bad) or '(none given)'}: choose from {', '.join(allowed)}")
    needs_model = [f for f in features if f != "pca-stats"]
    if needs_model and checkpoint is None:
        raise InputError(f"{needs_model[0]} features need a trained model (--checkpoint)")
    checkpoints = (
        [] if checkpoint is None else [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    )
    runs = []
    cut = Split()
    if checkpoints:
        from microlatent.models.run import Run

        runs = [Run.load(path, device) for path in checkpoints]
        cut = runs[0].split
        for path, other in zip(checkpoints[1:], runs[1:]):
            if (other.split.seed, other.split.fractions, other.split.classes) != (cut.seed, cut.fractions, cut.classes):
                raise InputError(f"{path} was trained on another split than {checkpoints[0]}: its test images differ")
            if other.model.n_phases != runs[0].model.n_phases:
                raise InputError(f"{path} has another number of phases than {checkpoints[0]}")
    if classes:
        cut = cut.with_classes(classes)
    train_images, y_train, _, train_classes = read_labelled_split(data, "train", cut, limit)
    test_images, y_test, _, _ = read_labelled_split(data, "test", cut, limit)
    if runs:
        n_phases = runs[0].model.n_phases
    else:
        from microlatent.data.sources import source_phases

        n_phases = source_phases(data, sorted(set(train_classes)))
    n_sizes = _subset_sizes(sizes, len(train_images))
    order = np.random.default_rng(seed).permutation(len(train_images))
    comps = sorted({int(c) for c in components})
    if "pca-stats" in features and (not comps or comps[0] < 1):
        raise InputError(f"PCA components must be positive integers, got {components!r}")
    say(f"{len(train_images)} training, {len(test_images)} test images; training sizes {n_sizes}")

    # Feature matrices on the whole split, cut to subsets below (latent codes and the control do not
    # depend on which images are used for fitting).
    # (features, (X_train, X_test)) per model and feature set; the control depends only on the latent's
    # grid, so models that share a grid share one control row
    fixed: list[tuple[str, tuple]] = []
    control_grids = set()
    for run in runs if needs_model else []:
        latent_shape = model_latent_shape(run, train_images.shape[1:])
        z_train, z_test = latent_codes(run, train_images), latent_codes(run, test_images)
        for feat in needs_model:
            if feat == "downsampled":
                if control_shape(latent_shape) in control_grids:
                    continue
                control_grids.add(control_shape(latent_shape))
            pair = tuple(
                feature_matrix(images, feat, latent_shape=latent_shape, codes=codes, n_phases=n_phases)
                for images, codes in ((train_images, z_train), (test_images, z_test))
            )
            fixed.append((feat, pair))
            say(f"{feat} features ({pair[0].shape[1]} numbers per image)")

    rows = []

    def score(feat, dims, kind, n, X_tr, X_te, explained=None):
        reg = PropertyRegressor(kind=kind, features=feat, random_state=seed).fit(X_tr, y_train[order[:n]])
        pred = reg.predict(X_te)
        r2, err = r2_per_property(y_test, pred), mape(y_test, pred)
        for k, name in enumerate(PROPERTY_NAMES):
            rows.append(
                {
                    "features": feat,
                    "dimensions": int(dims),
                    "regressor": kind,
                    "n_train": int(n),
                    "n_test": len(y_test),
                    "property": name,
                    "r2": float(r2[k]),
                    "mape": float(err[k]),
                    "explained_variance": explained,
                }
            )

    for n in n_sizes:
        subset = order[:n]
        for feat, (X_tr, X_te) in fixed:
            for kind in kinds:
                say(f"n_train {n}: {kind} on {feat}")
                score(feat, X_tr.shape[1], kind, n, X_tr[subset], X_te)
        if "pca-stats" in features:
            usable = [c for c in comps if c <= min(n - 1, train_images[0].size)]
            if not usable:
                say(f"n_train {n}: too few images for {comps[0]} PCA components, skipped")
                continue
            pca = StatisticsPCA(usable[-1], n_phases=n_phases).fit(train_images[subset])
            codes_tr, codes_te = pca.transform(train_images[subset]), pca.transform(test_images)
            for c in usable:
                explained = float(pca.explained_variance_ratio_[:c].sum())
                for kind in kinds:
                    say(f"n_train {n}: {kind} on {c} PCA components ({100 * explained:.1f} % of the variance)")
                    X_tr, X_te = pca_features(codes_tr[:, :c], pca), pca_features(codes_te[:, :c], pca)
                    score("pca-stats", c, kind, n, X_tr, X_te, explained)
    settings = {
        "data": str(data),
        "checkpoints": [str(path) for path in checkpoints],
        "classes": list(cut.classes) if cut.classes else "all",
        "split": {"seed": cut.seed, "fractions": list(cut.fractions)},
        "n_train": len(train_images),
        "n_test": len(test_images),
        "image_shape": list(train_images.shape[1:]),
        "n_phases": n_phases,
        "limit": limit,
        "seed": seed,
    }
    return {"rows": rows, "settings": settings}


def curves_table(rows, prop="Ex") -> str:
    """Text table of one property's R^2 and MAPE per (features, dimensions, regressor, n_train)."""
    picked = [r for r in rows if r["property"] == prop]
    header = ["features", "dims", "regressor", "n_train", f"R2 {prop}", f"MAPE {prop} %"]
    cells = [
        [r["features"], str(r["dimensions"]), r["regressor"], str(r["n_train"]), f"{r['r2']:.3f}", f"{r['mape']:.2f}"]
        for r in picked
    ]
    return text_table([header] + cells, left=1, rule=True)


def write_curves(result, out_dir, prop="Ex") -> list[Path]:
    """curves.csv (every row), curves.json (rows and settings) and curves.png (MAPE of ``prop``
    against training size, and against dimensions at the largest training size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result["rows"]
    with open(out_dir / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "curves.json").write_text(json.dumps(result, indent=1))

    picked = [r for r in rows if r["property"] == prop]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    lines = sorted({(r["features"], r["dimensions"], r["regressor"]) for r in picked})
    for feat, dims, kind in lines:
        pts = sorted(
            (r["n_train"], r["mape"])
            for r in picked
            if (r["features"], r["dimensions"], r["regressor"]) == (feat, dims, kind)
        )
        axes[0].plot(*zip(*pts), marker="o", label=f"{feat} {dims}-d, {kind}")
    axes[0].set(xscale="log", xlabel="training images", ylabel=f"MAPE {prop} (%)", title="against training-set size")
    axes[0].legend(fontsize=7)
    largest = max(r["n_train"] for r in picked)
    for feat, kind in sorted({(r["features"], r["regressor"]) for r in picked}):
        pts = sorted(
            (r["dimensions"], r["mape"])
            for r in picked
            if (r["features"], r["regressor"], r["n_train"]) == (feat, kind, largest)
        )
        axes[1].plot(*zip(*pts), marker="o", label=f"{feat}, {kind}")
    axes[1].set(
        xscale="log",
        xlabel="dimensions (latent size)",
        ylabel=f"MAPE {prop} (%)",
        title=f"against size, {largest} training images",
    )
    axes[1].legend(fontsize=7)
    fig.suptitle(f"Test-split error of {prop} (lower is better)")
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=120)
    plt.close(fig)
    return [out_dir / "curves.csv", out_dir / "curves.json", out_dir / "curves.png"]
