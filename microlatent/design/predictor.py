"""Property predictors: fitted from a trained run and a labelled file, saved as a folder, loaded
safely (Cai et al. 2025 Sec. 4.3; Sardeshmukh et al. 2021 Sec. 4.4).

Regressors from a model's latent codes to the homogenized elastic constants ``PROPERTY_NAMES`` =
(Ex, Ey, Gxy, nu_xy, nu_yx), with Cai et al.'s control: the same regressors on the images
area-downsampled to the latent's spatial size (14 x 14 for 224 px images and a /16 TAESD encoder),
so the control has the same spatial resolution as the latent grid.

Public API::

    PropertyRegressor(kind="mlp"|"linear"|"svr", features="latent"|"downsampled", ...)
        scikit-learn estimator: fit(X, y) / predict(X) / score(X, y) (mean R^2); X (N, ...) is
        flattened; inputs and targets are standardised (StandardScaler in a Pipeline, inside a
        TransformedTargetRegressor). mlp: MLPRegressor(hidden_layer_sizes=(1000, 1000, 100), ReLU,
        Adam, early stopping) as Cai et al.; linear: LinearRegression; svr: one RBF SVR per
        property (MultiOutputRegressor) as Sardeshmukh et al. ``to_torch()`` gives the same fitted
        function as a differentiable torch module (used by latent-space design).
    r2_per_property(y_true, y_pred) -> (k,);  mape(y_true, y_pred) -> (k,) in percent
    downsample(images, shape) -> (N, h, w) area (block) means
    feature_matrix(images, features, model) -> (N, D)
    read_labelled_split(path, split, ...) -> images, y (N, 5), names, phase settings
    fit_property_models(checkpoint, data, out_dir, ...) -> dict (metrics rows, paths)
    load_predictor(directory) -> PropertyPredictor (regressors + metadata)

A predictor folder (written by :func:`fit_property_models`, ``microlatent design fit``) holds::

    predictor.json                  metadata (read first, no code executed): property names, feature
                                    kinds, checkpoint path and its state_dict SHA-256, latent shape,
                                    image size, data file, split, phase properties, label statistics
                                    of the training split, files of the regressors
    {latent,downsampled}_{kind}.skops   fitted PropertyRegressors (labels of the original images)
    decoded_{kind}.skops            "closed-loop" regressors: latent code z -> solver-computed
                                    properties of threshold(decode(z)) (used by ``design``)
    fit_data.npz                    latents, labels and closed-loop properties used to fit them
    metrics.csv, predictions.npz, pred_vs_true.png

Regressors are stored with skops (``skops.io``), a format that cannot execute code: loading builds
only the types it lists, and :func:`load_regressor` refuses any type outside scikit-learn, NumPy and
:class:`PropertyRegressor`. Pickles (.joblib, .pkl) are refused, and every file ``predictor.json``
names must be a plain file name inside the folder.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from microlatent.design.regression import (
    FEATURE_KINDS,
    PROPERTY_NAMES,
    REGRESSOR_KINDS,
    PropertyRegressor,
    _model_latent_shape,
    control_shape,
    feature_matrix,
    latent_codes,
    pca_features,
)
from microlatent.errors import DataError, InputError
from microlatent.evaluation.metrics import mape, r2_per_property
from microlatent.text import text_table

PCA_FILE = "pca_stats.npz"
TARGET_SETS = ("labels", "decoded")  # regress the stored labels, or the decoded-thresholded images' properties
META_FILE = "predictor.json"
META_FORMAT = "microlatent-property-predictor"
META_VERSION = 2  # 2: regressors in skops files (1: joblib pickles, refused)
REGRESSOR_SUFFIX = ".skops"
THRESHOLD = 0.5  # decoded probability -> phase 1
# --------------------------------------------------------------------------------------------
# Metrics and features.
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Labelled data.
# --------------------------------------------------------------------------------------------

MECHANICAL = "homogenized_mechanical"
DEFAULT_PHASES = {"E": [10.0, 1.0], "nu": [0.3, 0.3], "plane": "stress"}


def label_matrix(raw) -> np.ndarray:
    """(N, 5) in PROPERTY_NAMES order from stored ``homogenized_mechanical`` rows (N, 6, 5) =
    [Ex, nu_xy, Ey, nu_yx, Gxy] at contrast index 0."""
    from microlatent.properties.storage import MECHANICAL_VALUES

    raw = np.asarray(raw, dtype=np.float64)
    order = [MECHANICAL_VALUES.index(name) for name in PROPERTY_NAMES]
    return raw[:, 0, :][:, order]


def phase_settings(path, classes) -> dict:
    """Phase properties the labels were computed with: ``{"E", "nu", "plane", "source"}`` from the
    ``microlatent_settings`` attribute (the same in every class, else DataError); files without it
    (e.g. MICRO2D's own labels) are taken to use Cai et al.'s 10 / 1 GPa, nu 0.3, plane stress."""
    from microlatent.data.store import open_file
    from microlatent.properties.storage import SETTINGS_ATTR

    found = {}
    with open_file(path) as f:
        for name in classes:
            raw = f[name][MECHANICAL].attrs.get(SETTINGS_ATTR) if MECHANICAL in f[name] else None
            if raw is None:
                found[name] = dict(DEFAULT_PHASES, source="assumed (no microlatent_settings attribute)")
                continue
            s = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            found[name] = {
                "E": list(s["E"]),
                "nu": list(s["nu"]),
                "plane": s.get("plane", "stress"),
                "source": f"{MECHANICAL} attribute {SETTINGS_ATTR}",
            }
    keyed = {json.dumps({k: v for k, v in s.items() if k != "source"}, sort_keys=True) for s in found.values()}
    if len(keyed) > 1:
        raise DataError(
            f"{os.fspath(path)}: classes were homogenized with different phase properties; "
            "fit a predictor per setting (--class)"
        )
    return next(iter(found.values())) if found else dict(DEFAULT_PHASES, source="assumed")


def read_labelled_split(path, part="train", split=None, limit=None):
    """Images, labels and names of one part ("train", "val", "test") of a MICRO2D-layout file, cut by
    ``split`` (a :class:`~microlatent.data.Split`; pass the checkpoint run's, so the regressors see its
    training images and are scored on its test images). ``limit``: at most that many images per class
    (the first of the part). Returns ``(images (N, H, W) float32, y (N, 5) float64 in PROPERTY_NAMES
    order, names list of "Class[index]", class_of list of str)``.

    Raises DataError when a class has no ``homogenized_mechanical`` labels or unfinished (NaN) rows.
    """
    from microlatent.data.split import Split
    from microlatent.data.store import open_file, read_images, read_property

    path = os.fspath(path)
    members = (split or Split()).members(path, part)
    classes = [name for name, _ in members]
    with open_file(path) as f:
        unlabelled = [c for c in classes if MECHANICAL not in f[c]]
    if unlabelled:
        raise DataError(
            f"{path}: class {unlabelled[0]!r} has no {MECHANICAL} labels; run "
            f"`microlatent properties homogenize {path}` first"
        )
    images, labels, names, class_of = [], [], [], []
    for name, idx in members:
        if limit:
            idx = idx[:limit]
        if not len(idx):
            continue
        y = label_matrix(read_property(path, name, MECHANICAL, idx))
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise DataError(
                f"{path}: class {name!r} has {int(bad.sum())} unfinished {MECHANICAL} rows "
                f"(NaN, e.g. image {int(idx[bad][0])}); run `microlatent properties homogenize {path}` to finish"
            )
        images.append(read_images(path, name, idx).astype(np.float32))
        labels.append(y)
        names.extend(f"{name}[{i}]" for i in idx)
        class_of.extend([name] * len(idx))
    if not images:
        raise DataError(f"{path}: split {part!r} of {', '.join(classes)} holds no images")
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise DataError(f"{path}: classes have different image sizes {sorted(shapes)}; choose classes of one size")
    return np.concatenate(images), np.concatenate(labels), names, class_of


# --------------------------------------------------------------------------------------------
# Closed loop: decoded, thresholded images through the solver.
# --------------------------------------------------------------------------------------------


def decoded_properties(model, codes, phases=None, threshold=THRESHOLD, batch_size=64):
    """Properties of the decoded latent codes after thresholding: ``(y (N, 5), images uint8 (N, H, W))``.

    Each code is decoded, thresholded at ``threshold`` (probability of phase 1) and homogenized with
    ``phases`` (``{"E", "nu", "plane"}``; default 10 / 1, 0.3, plane stress)."""
    from microlatent.evaluation.inference import decode
    from microlatent.properties.homogenize import homogenize_elastic

    phases = phases or DEFAULT_PHASES
    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) == 0:
        return np.zeros((0, len(PROPERTY_NAMES))), np.zeros((0, 0, 0), np.uint8)
    binary = (decode(model, codes, batch_size) > threshold).astype(np.uint8)
    r = homogenize_elastic(binary, E=tuple(phases["E"]), nu=tuple(phases["nu"]), plane=phases.get("plane", "stress"))
    return np.stack([np.atleast_1d(r[k]) for k in PROPERTY_NAMES], axis=1), binary


def closed_loop_codes(codes, n_prior, n_mix, seed=0):
    """Latent codes for the closed-loop regressor: the data codes, ``n_prior`` draws from the standard
    normal prior and ``n_mix`` random convex mixtures of two data codes (points between data, where a
    design search travels). Returns (codes (M, ...), origin list of "data"/"prior"/"mix")."""
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes, dtype=np.float32)
    prior = rng.standard_normal((n_prior,) + codes.shape[1:]).astype(np.float32)
    a, b = rng.integers(0, len(codes), (2, n_mix))
    w = rng.uniform(0, 1, (n_mix,) + (1,) * (codes.ndim - 1)).astype(np.float32)
    mix = w * codes[a] + (1 - w) * codes[b]
    origin = ["data"] * len(codes) + ["prior"] * n_prior + ["mix"] * n_mix
    return np.concatenate([codes, prior, mix]), origin


# --------------------------------------------------------------------------------------------
# Fitting from a checkpoint and a labelled file.
# --------------------------------------------------------------------------------------------


def _split_meta(run) -> dict:
    """What a predictor records about the data split of its run (read back by ``predict``)."""
    data = run.config.get("data") or {}
    return {
        "split_seed": run.split.seed,
        "split_fractions": list(run.split.fractions),
        "classes": list(run.split.classes) if run.split.classes else None,
        "size": run.trained_size,
        "trained_on": data.get("path"),
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
        Folder for the predictor (see the module docstring).
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
    if model.model.n_phases > 2:
        raise InputError("property prediction and design work on 2-phase models yet; this one has more phases")
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
    phases = phase_settings(data, sorted(set(train_classes) | set(test_classes)))
    latent_shape = _model_latent_shape(model, train_images.shape[1:])
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
            feature_matrix(train_images, "downsampled", latent_shape=latent_shape),
            feature_matrix(test_images, "downsampled", latent_shape=latent_shape),
        )
    pca_meta = None
    if "pca-stats" in features:  # the classical latent, at the VAE latent's size (or as many as the data allow)
        from microlatent.stats import StatisticsPCA

        n_components = min(int(np.prod(latent_shape)), len(train_images) - 1, int(np.prod(train_images.shape[1:])))
        say(f"fitting a {n_components}-component PCA of the training images' autocorrelations")
        pca = StatisticsPCA(n_components).fit(train_images)
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

    def score(set_name, feat, kind, truth, pred, n_train):
        r2, err = r2_per_property(truth, pred), mape(truth, pred)
        for k, name in enumerate(PROPERTY_NAMES):
            rows.append(
                {
                    "set": set_name,
                    "features": feat,
                    "regressor": kind,
                    "property": name,
                    "r2": float(r2[k]),
                    "mape": float(err[k]),
                    "n_train": int(n_train),
                    "n_test": len(truth),
                }
            )

    for feat in features:
        for kind in kinds:
            say(f"fitting {kind} on {feat} features ({X[feat][0].shape[1]} per image)")
            reg = PropertyRegressor(kind=kind, features=feat, random_state=seed, **params).fit(X[feat][0], y_train)
            pred = reg.predict(X[feat][1])
            score("labels", feat, kind, y_test, pred, len(y_train))
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
        score("reconstruction", "decoded", "solver", y_test, y_loop_test, 0)  # encode-decode-threshold fidelity
        predictions["reconstruction"] = y_loop_test
        for kind in kinds:
            say(f"fitting closed-loop {kind} (latent -> decoded properties)")
            reg = PropertyRegressor(kind=kind, features="latent", random_state=seed, **params)
            reg.fit(codes.reshape(len(codes), -1), y_loop)
            pred = reg.predict(X["latent"][1])
            score("decoded", "latent", kind, y_loop_test, pred, len(codes))
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
    _write_json(out_dir / META_FILE, meta)
    write_metrics_csv(rows, out_dir / "metrics.csv")
    if figure:
        plot_predictions(predictions, out_dir / "pred_vs_true.png")
    return {"metrics": rows, "out_dir": out_dir, "meta": meta}


def _choices(values, allowed, what):
    values = [values] if isinstance(values, str) else list(values)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise InputError(f"{what} must be among {', '.join(allowed)}, got {bad[0] if bad else 'none'!r}")
    return list(dict.fromkeys(values))


def _write_json(path, obj):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_metrics_csv(rows, path):
    """Write metric rows (dicts with the same keys) as CSV."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def metrics_table(rows) -> str:
    """Text table: one line per (set, features, regressor), R^2 and MAPE (%) per property."""
    groups: dict[tuple, dict] = {}
    for row in rows:
        groups.setdefault((row["set"], row["features"], row["regressor"]), {})[row["property"]] = row
    header = (
        ["set", "features", "regressor"] + [f"R2 {p}" for p in PROPERTY_NAMES] + [f"MAPE% {p}" for p in PROPERTY_NAMES]
    )
    lines = [header]
    for (set_name, feat, kind), by_prop in groups.items():
        lines.append(
            [set_name, feat, kind]
            + [f"{by_prop[p]['r2']:.3f}" for p in PROPERTY_NAMES]
            + [f"{by_prop[p]['mape']:.2f}" for p in PROPERTY_NAMES]
        )
    return text_table(lines, left=3)


def plot_predictions(predictions, path):
    """Predicted vs true scatter: one column per property, one row per regressor (latent and
    downsampled features in different colours), plus a closed-loop row when present."""
    import matplotlib.pyplot as plt

    from microlatent.plotting import save_figure

    y_test = predictions["y_test"]
    kinds = [k for k in REGRESSOR_KINDS if any(f"{f}_{k}" in predictions for f in FEATURE_KINDS)]
    rows = [("labels", k) for k in kinds] + ([("decoded", k) for k in kinds if f"decoded_{k}" in predictions])
    fig, axes = plt.subplots(
        len(rows), len(PROPERTY_NAMES), figsize=(3.0 * len(PROPERTY_NAMES), 2.9 * len(rows)), squeeze=False
    )
    colours = {"latent": "tab:blue", "downsampled": "tab:orange", "pca-stats": "tab:purple", "decoded": "tab:green"}
    for i, (set_name, kind) in enumerate(rows):
        for j, prop in enumerate(PROPERTY_NAMES):
            ax = axes[i, j]
            if set_name == "labels":
                series = [
                    (f, y_test[:, j], predictions[f"{f}_{kind}"][:, j])
                    for f in FEATURE_KINDS
                    if f"{f}_{kind}" in predictions
                ]
            else:
                truth = predictions["y_loop_test"]
                series = [("decoded", truth[:, j], predictions[f"decoded_{kind}"][:, j])]
            lo = min(min(t.min(), p.min()) for _, t, p in series)
            hi = max(max(t.max(), p.max()) for _, t, p in series)
            ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
            for feat, truth, pred in series:
                r2 = r2_per_property(truth, pred)
                ax.scatter(truth, pred, s=6, alpha=0.6, color=colours[feat], label=f"{feat} R2={r2:.2f}")
            ax.set_title(f"{prop} - {kind}" + (" (closed loop)" if set_name == "decoded" else ""), fontsize=9)
            ax.legend(fontsize=6, loc="upper left")
            ax.tick_params(labelsize=7)
            if i == len(rows) - 1:
                ax.set_xlabel("true (solver)", fontsize=8)
            if j == 0:
                ax.set_ylabel("predicted", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Loading a fitted predictor.
# --------------------------------------------------------------------------------------------


class PropertyPredictor:
    """A predictor folder: metadata (``meta``) and its fitted regressors, loaded lazily.

    ``regressor(kind, features)`` returns a :class:`PropertyRegressor`; ``features`` is "latent",
    "downsampled" or "decoded" (the closed-loop latent regressor).
    """

    def __init__(self, directory, meta):
        self.directory = Path(directory)
        self.meta = meta
        self._cache = {}

    @property
    def properties(self):
        return tuple(self.meta["properties"])

    def available(self):
        """Keys "features_kind" of the stored regressors."""
        return list(self.meta.get("regressors", {}))

    def regressor(self, kind="mlp", features="latent") -> PropertyRegressor:
        key = f"{features}_{kind}"
        if key not in self.meta.get("regressors", {}):
            raise InputError(
                f"{self.directory}: no {kind} regressor on {features} features "
                f"(has: {', '.join(self.available()) or 'none'})"
            )
        if key not in self._cache:
            self._cache[key] = load_regressor(self.file(self.meta["regressors"][key]))
        return self._cache[key]

    def file(self, name) -> Path:
        """``directory / name``; DataError unless ``name`` is a plain file name (no folder, no "..")."""
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise DataError(f"{self.directory / META_FILE}: file {name!r} is not a plain file name inside the folder")
        return self.directory / name

    def check_run(self, run):
        """DataError unless the :class:`~microlatent.models.run.Run` holds the weights the predictor was
        fitted on."""
        want = self.meta["checkpoint"].get("state_dict_sha256")
        if want and run.state_dict_sha256 != want:
            raise DataError(
                f"{os.fspath(run.path)}: not the model this predictor was fitted on "
                f"({self.directory / META_FILE} names {self.meta['checkpoint']['path']}, "
                f"weights SHA-256 {want[:12]}..., this one {str(run.state_dict_sha256)[:12]}...)"
            )

    def fit_data(self) -> dict:
        file = self.file("fit_data.npz")
        try:
            with np.load(file, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
            raise DataError(f"{file}: cannot read ({err})") from None

    def pca(self):
        """The folder's :class:`~microlatent.stats.StatisticsPCA` (fitted with ``--features pca-stats``)."""
        from microlatent.stats import StatisticsPCA

        if not self.meta.get("pca"):
            raise InputError(f"{self.directory}: no PCA of statistics (fit with `design fit --features pca-stats`)")
        return StatisticsPCA.load(self.file(self.meta["pca"].get("file", PCA_FILE)))

    def predict_images(self, images, model=None, kind="mlp", features="latent") -> np.ndarray:
        """(N, 5) properties of images (N, H, W) in [0, 1]; latent features need ``model``."""
        reg = self.regressor(kind, features)
        if features == "decoded":
            raise InputError("the decoded (closed-loop) regressors take latent codes, not images")
        pca = self.pca() if features == "pca-stats" else None
        X = feature_matrix(images, features, model=model, latent_shape=self.meta["latent_shape"], pca=pca)
        return reg.predict(X)


REGRESSOR_TYPE = f"{PropertyRegressor.__module__}.{PropertyRegressor.__qualname__}"


def _trusted_type(name: str) -> bool:
    return name.startswith(("sklearn.", "numpy.")) or name == REGRESSOR_TYPE


def save_regressor(regressor, path):
    """Write a fitted :class:`PropertyRegressor` to ``path`` with skops (atomic: a partial file never
    has the final name)."""
    import skops.io as sio

    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    sio.dump(regressor, tmp)
    os.replace(tmp, path)


def load_regressor(path) -> PropertyRegressor:
    """Read a skops file written by :func:`save_regressor`. Only scikit-learn and NumPy types and
    :class:`PropertyRegressor` are built; anything else (a function, ``os.system``, another class)
    -> DataError naming it, before anything is constructed. Pickles are refused by suffix."""
    import skops.io as sio

    path = Path(path)
    if path.suffix != REGRESSOR_SUFFIX:
        raise DataError(
            f"{path}: regressors must be {REGRESSOR_SUFFIX} files (pickles such as .joblib or .pkl can "
            "execute code and are refused; refit with `microlatent design fit`)"
        )
    try:
        types = sio.get_untrusted_types(file=path)
    except Exception as err:
        raise DataError(f"{path}: not a readable skops file ({type(err).__name__}: {str(err)[:200]})") from None
    bad = [t for t in types if not _trusted_type(t)]
    if bad:
        raise DataError(f"{path}: refusing to load type {bad[0]} (only scikit-learn, NumPy and PropertyRegressor)")
    try:
        reg = sio.load(path, trusted=types)
    except Exception as err:
        raise DataError(f"{path}: cannot load the fitted regressor ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(reg, PropertyRegressor):
        raise DataError(f"{path}: not a PropertyRegressor")
    return reg


def load_predictor(directory) -> PropertyPredictor:
    """Open a predictor folder written by :func:`fit_property_models` (reads predictor.json only;
    regressors are read, with skops, when first used)."""
    directory = Path(directory)
    file = directory / META_FILE
    if not file.is_file():
        raise DataError(f"{directory}: not a predictor folder (no {META_FILE}; make one with `microlatent design fit`)")
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError, EOFError) as err:  # EOFError: an empty file
        raise DataError(f"{file}: cannot read ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DataError(f"{file}: not a microlatent property predictor")
    if meta.get("version") != META_VERSION:
        old = " (version 1 stored pickles, which are no longer loaded: refit with `microlatent design fit`)"
        raise DataError(
            f"{file}: unsupported predictor version {meta.get('version')!r} (expected {META_VERSION})"
            + (old if meta.get("version") == 1 else "")
        )
    return PropertyPredictor(directory, meta)
