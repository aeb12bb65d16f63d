"""Fitting property predictors: from a trained run and a labelled file to a predictor folder (Cai et
al. 2025 Sec. 4.3; Sardeshmukh et al. 2021 Sec. 4.4).

Regressors from a model's latent codes to the homogenized elastic constants ``PROPERTY_NAMES`` =
(Ex, Ey, Gxy, nu_xy, nu_yx), with Cai et al.'s control: the same regressors on the images
area-downsampled to the latent's spatial size (14 x 14 for 224 px images and a /16 TAESD encoder),
so the control has the same spatial resolution as the latent grid.

    fit_property_models(checkpoint, data, out_dir, ...) -> dict (metrics rows, out_dir, meta)

One idea per module of the package: ``labels`` (the labelled split and its phase properties),
``regression`` (the estimator and features), ``closed_loop`` (codes decoded, thresholded and
solved), ``scores`` (metric rows, table, figure), ``folder`` (the predictor folder's layout,
:func:`~microlatent.design.folder.load_predictor`); this module runs them in order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microlatent.design.closed_loop import THRESHOLD, closed_loop_codes, decoded_properties
from microlatent.design.folder import META_FILE, META_FORMAT, META_VERSION, PCA_FILE, REGRESSOR_SUFFIX, save_regressor
from microlatent.design.labels import phase_settings, read_labelled_split
from microlatent.design.regression import (
    FEATURE_KINDS,
    PROPERTY_NAMES,
    REGRESSOR_KINDS,
    PropertyRegressor,
    control_shape,
    feature_matrix,
    latent_codes,
    model_latent_shape,
    pca_features,
)
from microlatent.design.scores import plot_predictions, score_rows
from microlatent.errors import InputError
from microlatent.text import write_csv, write_json


def _split_meta(run) -> dict:
    """What a predictor records about the data split of its run (read back by ``predict``)."""
    return {
        "split_seed": run.split.seed,
        "split_fractions": list(run.split.fractions),
        "classes": list(run.split.classes) if run.split.classes else None,
        "size": run.trained_size,
        "trained_on": run.data_path,
    }


def _stats(y) -> dict:
    return {
        name: {
            "mean": float(np.mean(y[:, k])),
            "std": float(np.std(y[:, k])),
            "min": float(np.min(y[:, k])),
            "max": float(np.max(y[:, k])),
        }
        for k, name in enumerate(PROPERTY_NAMES)
    }


def fit_property_models(
    checkpoint,
    data,
    out_dir,
    kinds=REGRESSOR_KINDS,
    features=FEATURE_KINDS,
    closed_loop=True,
    classes=None,
    limit=None,
    device="cpu",
    seed=0,
    n_prior=None,
    n_mix=None,
    regressor_params=None,
    figure=True,
    progress=None,
) -> dict:
    """Fit property regressors on a checkpoint's latent codes (and the downsampled control), report
    held-out R^2 and MAPE, and write a predictor folder.

    Parameters
    ----------
    checkpoint : path
        A trained model (``model.pt``). Its training config gives the split (``data.split_seed``,
        ``data.split_fractions``), so the regressors are fitted on the model's training split and
        scored on its test split, images the model never saw.
    data : path
        MICRO2D-layout HDF5 file with ``homogenized_mechanical`` labels (``microlatent properties homogenize``).
    out_dir : path
        Folder for the predictor (its layout: :mod:`microlatent.design.folder`).
    kinds : subset of ("mlp", "linear", "svr", "gbr")
    features : subset of ("latent", "downsampled", "pca-stats")
    closed_loop : bool, default True
        Also fit ``decoded_{kind}`` regressors: latent code -> solver properties of the thresholded
        decoded image, on the training codes plus ``n_prior`` prior draws and ``n_mix`` mixtures of
        codes (default: half the training set each); scored on the test codes. ``design`` uses these.
    classes, limit : which classes (default: the checkpoint's training classes present in ``data``,
        else all) and at most ``limit`` images per class and split.
    regressor_params : dict, optional
        Extra PropertyRegressor arguments, e.g. ``{"hidden_layer_sizes": (64, 64)}``.
    progress : callable, optional
        ``progress(message)`` at each stage.

    Returns
    -------
    dict
        ``{"metrics": list of row dicts, "out_dir": Path, "meta": dict}``; rows have set, features,
        regressor, property, r2, mape, n_train, n_test.
    """
    from microlatent.models.run import Run

    say = progress or (lambda message: None)
    kinds = _choices(kinds, REGRESSOR_KINDS, "regressor")
    features = _choices(features, FEATURE_KINDS, "features")
    out_dir = Path(out_dir)
    data = os.fspath(data)
    model = Run.load(checkpoint, device)  # read once: model, split, identity
    n_phases = model.model.n_phases
    ident, split = model.identity(), _split_meta(model)
    cut = model.split
    if classes is not None:
        cut = cut.with_classes(classes)
    elif cut.classes:  # the training classes present in data, else all
        from microlatent.data.store import list_classes

        present = set(list_classes(data))
        cut = cut.with_classes([c for c in cut.classes if c in present] or None)
    say(f"reading {data}")
    train_images, y_train, train_names, train_classes = read_labelled_split(data, "train", cut, limit)
    test_images, y_test, test_names, test_classes = read_labelled_split(data, "test", cut, limit)
    phases = phase_settings(data, sorted(set(train_classes) | set(test_classes)), n_phases)
    latent_shape = model_latent_shape(model, train_images.shape[1:])
    say(f"encoding {len(train_images)} train + {len(test_images)} test images (latent {latent_shape})")
    z_train, z_test = latent_codes(model, train_images), latent_codes(model, test_images)
    X = {
        "latent": (
            z_train.reshape(len(z_train), -1).astype(np.float64),
            z_test.reshape(len(z_test), -1).astype(np.float64),
        )
    }
    if "downsampled" in features:
        X["downsampled"] = (
            feature_matrix(train_images, "downsampled", latent_shape=latent_shape, n_phases=n_phases),
            feature_matrix(test_images, "downsampled", latent_shape=latent_shape, n_phases=n_phases),
        )
    pca_meta = None
    if "pca-stats" in features:  # the classical latent, at the VAE latent's size (or as many as the data allow)
        from microlatent.stats import StatisticsPCA

        n_components = min(int(np.prod(latent_shape)), len(train_images) - 1, int(np.prod(train_images.shape[1:])))
        say(f"fitting a {n_components}-component PCA of the training images' autocorrelations")
        pca = StatisticsPCA(n_components, n_phases=n_phases).fit(train_images)
        pca_codes = (pca.transform(train_images), pca.transform(test_images))  # where a PCA-space search starts
        X["pca-stats"] = (pca_features(pca_codes[0], pca), pca_features(pca_codes[1], pca))
        out_dir.mkdir(parents=True, exist_ok=True)
        pca.save(out_dir / PCA_FILE)
        pca_meta = {
            "file": PCA_FILE,
            "n_components": n_components,
            "explained_variance": float(pca.explained_variance_ratio_.sum()),
        }
    params = dict(regressor_params or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, files, predictions = [], {}, {"y_test": y_test, "names": np.array(test_names)}

    for feat in features:
        for kind in kinds:
            say(f"fitting {kind} on {feat} features ({X[feat][0].shape[1]} per image)")
            reg = PropertyRegressor(kind=kind, features=feat, random_state=seed, **params).fit(X[feat][0], y_train)
            pred = reg.predict(X[feat][1])
            rows += score_rows("labels", feat, kind, y_test, pred, len(y_train))
            predictions[f"{feat}_{kind}"] = pred
            files[f"{feat}_{kind}"] = f"{feat}_{kind}{REGRESSOR_SUFFIX}"
            save_regressor(reg, out_dir / files[f"{feat}_{kind}"])

    fit_data = {"z_train": z_train, "y_train": y_train, "z_test": z_test, "y_test": y_test}
    if "pca-stats" in features:
        fit_data.update(pca_train=pca_codes[0], pca_test=pca_codes[1])
    if closed_loop:
        n_prior = len(z_train) // 2 if n_prior is None else int(n_prior)
        n_mix = len(z_train) // 2 if n_mix is None else int(n_mix)
        codes, origin = closed_loop_codes(z_train, n_prior, n_mix, seed)
        say(f"closed loop: decoding, thresholding and solving {len(codes) + len(z_test)} codes")
        y_loop, _ = decoded_properties(model, codes, phases)
        y_loop_test, _ = decoded_properties(model, z_test, phases)
        rows += score_rows("reconstruction", "decoded", "solver", y_test, y_loop_test, 0)  # round-trip fidelity
        predictions["reconstruction"] = y_loop_test
        for kind in kinds:
            say(f"fitting closed-loop {kind} (latent -> decoded properties)")
            reg = PropertyRegressor(kind=kind, features="latent", random_state=seed, **params)
            reg.fit(codes.reshape(len(codes), -1), y_loop)
            pred = reg.predict(X["latent"][1])
            rows += score_rows("decoded", "latent", kind, y_loop_test, pred, len(codes))
            predictions[f"decoded_{kind}"] = pred
            files[f"decoded_{kind}"] = f"decoded_{kind}{REGRESSOR_SUFFIX}"
            save_regressor(reg, out_dir / files[f"decoded_{kind}"])
        fit_data.update(z_loop=codes, y_loop=y_loop, origin=np.array(origin), y_loop_test=y_loop_test)
        predictions["y_loop_test"] = y_loop_test
    np.savez_compressed(out_dir / "fit_data.npz", **fit_data)
    np.savez_compressed(out_dir / "predictions.npz", **predictions)

    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "properties": list(PROPERTY_NAMES),
        "checkpoint": ident,
        "latent_shape": list(latent_shape),
        "control_shape": list(control_shape(latent_shape)),
        "image_shape": list(train_images.shape[1:]),
        "trained_size": model.trained_size,
        "data": os.path.abspath(data),
        "classes": sorted(set(train_classes)),
        "split": split,
        "limit": limit,
        "n_train": len(y_train),
        "n_test": len(y_test),
        "phases": phases,
        "n_phases": n_phases,
        "threshold": THRESHOLD,
        "label_stats": _stats(y_train),
        "regressors": files,
        "features": list(features),
        "kinds": list(kinds),
        "regressor_params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "seed": seed,
        "pca": pca_meta,
    }
    if closed_loop:
        meta["closed_loop"] = {"n_codes": len(codes), "n_prior": n_prior, "n_mix": n_mix, "label_stats": _stats(y_loop)}
    write_json(out_dir / META_FILE, meta)
    write_csv(rows, out_dir / "metrics.csv")
    if figure:
        plot_predictions(predictions, out_dir / "pred_vs_true.png")
    return {"metrics": rows, "out_dir": out_dir, "meta": meta}


def _choices(values, allowed, what):
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise InputError(f"{what} must be among {', '.join(allowed)}, got {bad[0] if bad else 'none'!r}")
    return list(dict.fromkeys(values))
