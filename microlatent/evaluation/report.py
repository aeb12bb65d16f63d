"""The evaluation report: trained checkpoints + a data split -> the papers' numbers and figures.

``write_report({label: checkpoint}, data, out_dir)`` writes into ``out_dir``::

    report.html        tables and figures, to open in a browser
    report.md          the same as Markdown (tables ready to paste into a README)
    metrics.json       every number of the report (schema below); the report is rendered from it
                       alone by ``microlatent.evaluation.render.render_report(out_dir)``
                       (``microlatent report OUT_DIR``), so it can be redone without models
    per_sample.csv     one row per (model, sample) with every per-sample metric
    summary.csv        one row per (model, class, metric) with mean, median, quantiles
    figures/*.png      the figures

What is measured (details in :mod:`~microlatent.evaluation.metrics`, :mod:`~.lines`, :mod:`~.texture`,
:mod:`~.latent`):

* per sample, each reconstruction against the input as the model saw it (resized to its training
  size): CESS, log CESS, MSESS, image MSE, the volume fraction difference (Hashemi B.1), STSIM-2 and
  the VGG-19 Gram distance;
* lines classes: orientation and line count of the reconstruction against the label, and the line
  count of the training image nearest in statistics space to the original (Hashemi B.3) and to the
  reconstruction (Hashemi C.2);
* overfitting check (Hashemi B): for reconstructions of training and of validation images, the
  mean MSE to every image of their own split, in image and in statistics space;
* across models: the win matrix of CESS (Cai Fig. 11), histograms of CESS and log CESS (Figs. 9-10);
* pictures: reconstruction grids per class with autocorrelations and log-statistics differences
  (Cai Fig. 12), the highest-CESS outliers (Fig. 7), latent traversals (TextureVAE Fig. 6), samples
  from the prior and an interpolation between two microstructures.

metrics.json (NaN and infinities are written as null)::

    meta           data file, split (name, seed, fractions), sample counts per class, versions, and per
                   model: checkpoint, architecture, config name, loss, trained and input size, parameters
    samples        [{name, class, index, label}] in evaluation order
    per_sample     {model: {metric: [value per sample]}} (metric names: METRICS)
    summary        {model: {"all" | "by_class": {class: ...}: {metric: {n, mean, std, median, q05, q25,
                   q75, q95, min, max}}}}
    win_matrix     {metric: "excess_cess", models: [...], matrix: [[share A beats B]]}
    latent         {model: {images, active_units, latent_units, output_std, kl_per_unit, collapse_warning}}
    headline       {reference, scores: {score: {medians, comparisons [{model, reference, win_share,
                   median_change}], best}}, best, collapse_warnings}: what the report says first
    line_threshold threshold of the lines metrics
    figures        [{path (relative to the folder), caption, section}]
    lines          (lines classes only) orientation / count scores and nearest-neighbour counts
    overfitting    (HDF5 data only) train vs val MSE to their own split, image and statistics space
"""

from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from microlatent.data.resize import resize_images
from microlatent.data.sources import load_samples
from microlatent.data.split import is_hdf5, iter_split, sample_split
from microlatent.errors import InputError
from microlatent.evaluation import figures
from microlatent.evaluation.inference import encode, model_batches, roundtrip
from microlatent.evaluation.latent import (
    TRAVERSAL_VALUES,
    interpolation,
    most_used_units,
    prior_samples,
    traversal,
)
from microlatent.evaluation.lines import line_measurements, line_truth
from microlatent.evaluation.metrics import (
    NearestSearch,
    SetMoments,
    autocorrelation_features,
    default_threshold,
    flatten,
    reconstruction_metrics,
    summarize,
    volume_fraction_difference,
    win_matrix,
)
from microlatent.evaluation.render import HEADLINE_SCORES, render_report
from microlatent.models.run import Run
from microlatent.training.diagnostics import LatentStatistics, collapse_warning


def headline(results) -> dict:
    """What the report says first, for each score of HEADLINE_SCORES: for each model after the first
    (the reference, e.g. the MSE model), the share of samples on which it scores lower than the
    reference and the relative change of its median; which model has the lowest median of the binary
    score (the microstructure a user keeps); and any posterior-collapse warning."""
    labels = list(results["summary"])
    reference = labels[0]
    scores = {}
    for key in HEADLINE_SCORES:
        medians = {label: results["summary"][label]["all"][key]["median"] for label in labels}
        per_sample = {label: np.asarray(results["per_sample"][label][key], dtype=np.float64) for label in labels}
        comparisons = []
        for label in labels[1:]:
            ref = medians[reference]
            change = (medians[label] - ref) / ref if ref else float("nan")
            _, matrix = win_matrix({label: per_sample[label], reference: per_sample[reference]})
            comparisons.append(
                {"model": label, "reference": reference, "win_share": matrix[0, 1], "median_change": change}
            )
        finite = {k: v for k, v in medians.items() if v is not None and math.isfinite(v)}
        scores[key] = {
            "medians": medians,
            "comparisons": comparisons,
            "best": min(finite, key=finite.get) if finite else None,
        }
    warnings = {
        label: results["latent"][label].get("collapse_warning")
        for label in labels
        if results["latent"][label].get("collapse_warning")
    }
    return {
        "reference": reference,
        "scores": scores,
        "best": scores["js_binary"]["best"],
        "collapse_warnings": warnings,
    }


def write_report(
    checkpoints: dict,
    data,
    out_dir,
    split="test",
    limit_per_class=None,
    device="auto",
    *,
    classes=None,
    threshold=None,
    line_threshold=0.5,
    texture=True,
    vgg_weights="auto",
    overfit_samples=1000,
    reference_limit_per_class=None,
    grid_per_class=2,
    outliers=6,
    traversal_units=4,
    log=None,
):
    """Evaluate the models ``checkpoints`` ({label: checkpoint path}) on ``split`` of ``data`` and
    write the report into ``out_dir``. Returns the path of ``report.html`` (``report.md`` beside it).

    data : HDF5 file in the MICRO2D layout (or an image, folder or .npy: no split, labels or
        overfitting check); None: the first checkpoint's training data (config ``data.path``).
    split, limit_per_class, classes : which images (the first ``limit_per_class`` of each class).
        The split is cut with the first checkpoint's ``data.split_seed`` / ``split_fractions``.
    threshold : volume fraction difference threshold for every class; None: 0.95 for lines (Hashemi
        et al.'s 0.05 on dark lines), 0.5 otherwise. line_threshold : where lines are counted in
        reconstructions (phase 1 where value >= it).
    texture : compute STSIM-2 and the Gram distance (the slow metrics: ~0.45 s per sample at 224 px on
        one CPU core); vgg_weights : VGG-19 weights of the Gram distance (see StyleLoss).
    overfit_samples : reconstructions per split (train, val) of the overfitting check (0: skip);
        reference_limit_per_class : cap on the images per class of the sets they are compared with and
        of the training set searched for nearest neighbours (None: all).
    log : callable taking one line of progress (e.g. ``click.echo``), or None.
    """
    say = log or (lambda line: None)
    if not checkpoints:
        raise InputError("write_report: give at least one checkpoint")
    checkpoints = {str(label): Path(path) for label, path in checkpoints.items()}
    slugs = {}
    for label in checkpoints:  # figure file names come from labels: two labels must not share one
        if _slug(label) in slugs:
            raise InputError(
                f"labels {slugs[_slug(label)]!r} and {label!r} give the same figure file names "
                f"(*_{_slug(label)}.png); choose labels that differ in letters or digits"
            )
        slugs[_slug(label)] = label
    out_dir = Path(out_dir)
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)

    models = {label: Run.load(checkpoint, device) for label, checkpoint in checkpoints.items()}
    first = next(iter(models.values()))
    if data is None:
        data = first.data_path
        if not data:
            raise InputError("no data given and the first checkpoint's config names no data.path")
    cut = first.split.with_classes(classes)  # the first run's seed and fractions, over the classes asked for
    samples = load_samples(data, split, cut, limit_per_class)
    hdf5 = is_hdf5(data)
    say(f"evaluating {len(checkpoints)} model(s) on {len(samples)} {samples.source['split']} images of {data}")

    class_names = samples.class_names()
    thresholds = {c: float(threshold) if threshold is not None else default_threshold(c) for c in class_names}
    truth = [line_truth(label) for label in samples.labels]
    line_positions = np.array([i for i, (o, _) in enumerate(truth) if o is not None], dtype=np.int64)

    keep = sorted({int(i) for c in class_names for i in samples.where(c)[:grid_per_class]})
    runs = {}
    gram = None
    for label, model in models.items():
        say(f"{label}: reconstructing and measuring")
        if texture and gram is None:
            from microlatent.evaluation.texture import GramDistance

            gram = GramDistance(vgg_weights=vgg_weights, device=model.device)
        runs[label] = _evaluate_model(
            model,
            samples,
            thresholds,
            truth,
            line_positions,
            gram if texture else None,
            keep,
            outliers,
            line_threshold=line_threshold,
        )

    lines = None
    if len(line_positions):
        say("lines: nearest training images in statistics space")
        lines = _lines_section(samples, truth, line_positions, runs, models, data, hdf5, cut, reference_limit_per_class)
    results = {
        "meta": _meta(
            checkpoints,
            models,
            samples,
            data,
            thresholds,
            texture,
            gram,
            cut,
            {label: run["input_size"] for label, run in runs.items()},
        ),
        "line_threshold": line_threshold,
        "samples": [
            {"name": n, "class": c, "index": i, "label": lab}
            for n, c, i, lab in zip(samples.names, samples.classes, samples.indices, samples.labels)
        ],
        "per_sample": {label: run["values"] for label, run in runs.items()},
        "summary": {label: _summaries(run["values"], samples) for label, run in runs.items()},
    }
    # Excess CESS orders samples as CESS does (H(f_in) is the same for every model) but says how much.
    labels, matrix = win_matrix({label: run["values"]["excess_cess"] for label, run in runs.items()})
    results["win_matrix"] = {"metric": "excess_cess", "models": labels, "matrix": matrix}
    results["latent"] = {label: run["latent"] for label, run in runs.items()}
    results["headline"] = headline(results)
    if lines is not None:
        results["lines"] = lines
    if hdf5 and overfit_samples:
        say("overfitting check")
        results["overfitting"] = _overfitting(models, data, cut, overfit_samples, reference_limit_per_class)

    say("figures")
    results["figures"] = _figures(results, runs, models, samples, figure_dir, grid_per_class, outliers, traversal_units)
    return _write_outputs(results, out_dir)


# ---------------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------------


def _stsim2_or_nan(inputs, recons, device):
    from microlatent.evaluation.texture import stsim2_batch

    if min(inputs.shape[1:]) < 32:
        return np.full(len(inputs), np.nan)  # the 3-scale pyramid needs >= 32 px
    return stsim2_batch(inputs, recons, device=device)


def _evaluate_model(
    run, samples, thresholds, truth, line_positions, gram, keep, n_outliers, chunk=256, line_threshold=0.5
):
    """Per-sample metrics of one model, in chunks of ``chunk`` images so that memory stays bounded;
    keeps (input as seen, reconstruction) only of the samples ``keep``, of the ``n_outliers`` with the
    highest excess CESS, and the reconstructions of lines samples (for the nearest-neighbour search)."""
    device = run.device
    n = len(samples)
    parts, kept, top, line_recons = [], {}, {}, {}
    latents = LatentStatistics()
    line_set = set(int(i) for i in line_positions)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        # One pass: eval-mode reconstruction is decode(mu), and mu, logvar feed the latent diagnostics.
        seen, decoded = [], []
        with torch.no_grad():
            for batch in model_batches(run, samples.images[start:stop], batch_size=32):
                mu, logvar = run.model.encode(batch)
                recon = run.model.decode(mu)
                latents.add(mu, logvar, recon)
                seen.append(batch[:, 0].cpu().numpy())
                decoded.append(recon[:, 0].float().cpu().numpy())
        inputs, recons = np.concatenate(seen), np.concatenate(decoded)
        values = reconstruction_metrics(inputs, recons, threshold=[thresholds[c] for c in samples.classes[start:stop]])
        values["vf_diff"] = volume_fraction_difference(
            inputs, recons, [thresholds[c] for c in samples.classes[start:stop]]
        )
        if gram is not None:
            values["stsim2"] = _stsim2_or_nan(inputs, recons, device)
            values["gram"] = gram(inputs, recons)
        parts.append(values)
        for i in range(start, stop):
            if i in keep:
                kept[i] = (inputs[i - start].copy(), recons[i - start].copy())
            if i in line_set:
                line_recons[i] = recons[i - start].copy()
        # running top-n by excess CESS for the outlier figure
        for i in range(start, stop):
            top[i] = (values["excess_cess"][i - start], inputs[i - start].copy(), recons[i - start].copy())
        for i in sorted(top, key=lambda k: (-np.nan_to_num(top[k][0], nan=-np.inf), k))[n_outliers:]:
            del top[i]
    values = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    line_recons = np.stack([line_recons[int(i)] for i in line_positions]) if len(line_positions) else None
    if line_recons is not None:
        values.update(_line_values(line_recons, truth, line_positions, n, line_threshold))
    outliers = sorted(top, key=lambda k: (-np.nan_to_num(top[k][0], nan=-np.inf), k))
    latent = latents.result()
    latent["collapse_warning"] = collapse_warning(latent)
    return {
        "values": values,
        "kept": kept,
        "outliers": [(i, top[i][1], top[i][2]) for i in outliers],
        "latent": latent,
        "line_recons": line_recons,
        "input_size": list(inputs.shape[1:]),
    }


def _line_values(line_recons, truth, positions, n, threshold=0.5):
    """Per-sample line metrics of one model's reconstructions of the lines samples at ``positions``
    (NaN for samples of other classes)."""
    out = {key: np.full(n, np.nan) for key in ("orientation_correct", "count_correct", "lines_counted", "count_error")}
    orientations, counts = line_measurements(line_recons, threshold)
    for k, i in enumerate(positions):
        true_orientation, true_count = truth[i]
        out["orientation_correct"][i] = float(orientations[k] == true_orientation)
        out["count_correct"][i] = float(counts[k] == true_count)
        out["lines_counted"][i] = counts[k]
        out["count_error"][i] = counts[k] - true_count
    return out


def _resized(model, images):
    """Images as ``model`` sees them (resized to its training size), (N, H, W) float32 on the CPU."""
    parts = [batch[:, 0].cpu().numpy() for batch in model_batches(model, images, batch_size=256)]
    return np.concatenate(parts) if parts else np.zeros((0, 1, 1), dtype=np.float32)


def _lines_section(samples, truth, positions, runs, models, data, hdf5, cut, reference_limit):
    """Hashemi B.3 (and C.2): line counts of the training images nearest in statistics space."""
    true_counts = np.array([truth[i][1] for i in positions])
    _, input_counts = line_measurements([samples.images[i] for i in positions])
    section = {
        "positions": positions,
        "true_count": true_counts,
        "input_count": input_counts,
        "input_count_accuracy": float(np.mean(input_counts == true_counts)),
        "models": {},
    }
    for label, run in runs.items():
        values = run["values"]
        section["models"][label] = {
            "n": int(len(positions)),
            "orientation_accuracy": float(np.mean(values["orientation_correct"][positions])),
            "count_accuracy": float(np.mean(values["count_correct"][positions])),
            "mean_abs_count_error": float(np.mean(np.abs(values["count_error"][positions]))),
            "lines_counted": values["lines_counted"][positions].astype(np.int64),
        }
    line_classes = list(dict.fromkeys(samples.classes[i] for i in positions))
    if not hdf5:
        return section
    # B.3: the training image nearest to each original (as stored) in statistics space; C.2: the one
    # nearest to each reconstruction, with the training images resized as the model saw them.
    to_original = NearestSearch(autocorrelation_features([samples.images[i] for i in positions]))
    sizes = {label: models[label].trained_size for label in runs}
    to_recon = {label: NearestSearch(autocorrelation_features(run["line_recons"])) for label, run in runs.items()}
    ref_counts, ref_names = [], []
    for name, indices, images, labels in iter_split(data, "train", cut.with_classes(line_classes), reference_limit):
        ref_counts += [line_truth(label)[1] if line_truth(label)[1] is not None else -1 for label in labels]
        ref_names += [f"{name}[{i}]" for i in indices]
        to_original.update(autocorrelation_features(images))
        resized = {}
        for label in runs:
            if sizes[label] not in resized:
                resized[sizes[label]] = autocorrelation_features(_resized(models[label], images))
            to_recon[label].update(resized[sizes[label]])
    if not ref_counts:
        return section
    ref_counts = np.array(ref_counts)
    index, distance = to_original.result()
    section.update(
        {
            "reference": {"split": "train", "n": len(ref_counts), "classes": line_classes},
            "nearest_train": [ref_names[k] for k in index],
            "nearest_train_distance": distance,
            "nearest_train_count": ref_counts[index],
            "nearest_train_count_accuracy": float(np.mean(ref_counts[index] == true_counts)),
        }
    )
    for label, run in runs.items():
        index, _ = to_recon[label].result()
        correct = np.full(len(samples), np.nan)
        correct[positions] = ref_counts[index] == true_counts
        run["values"]["nearest_to_recon_count_correct"] = correct
        section["models"][label]["nearest_to_recon"] = [ref_names[k] for k in index]
        section["models"][label]["nearest_to_recon_count"] = ref_counts[index]
        section["models"][label]["nearest_to_recon_count_accuracy"] = float(np.mean(ref_counts[index] == true_counts))
    return section


def _ks(a, b):
    from scipy.stats import ks_2samp

    result = ks_2samp(a, b)
    return {"statistic": float(result.statistic), "pvalue": float(result.pvalue)}


def _overfitting(models, data, cut, n, reference_limit):
    """Hashemi B: each reconstruction's mean MSE to every image of its own split, train vs val."""
    moments = {}  # (split, trained size) -> {"image": SetMoments, "stats": SetMoments}

    def set_moments(model, split):
        key = (split, model.trained_size)
        if key not in moments:
            image_m, stats_m = SetMoments(), SetMoments()
            for _, _, images, _ in iter_split(data, split, cut, reference_limit):
                resized = _resized(model, images)
                image_m.update(flatten(resized))
                stats_m.update(autocorrelation_features(resized))
            moments[key] = {"image": image_m, "stats": stats_m}
        return moments[key]

    out = {}
    drawn = {}
    for label, model in models.items():
        entry = {}
        for split in ("train", "val"):
            if split not in drawn:
                try:
                    drawn[split] = sample_split(data, split, n, cut)
                except InputError:
                    drawn[split] = None
            if drawn[split] is None:
                continue
            _, recons = roundtrip(model, drawn[split].images)
            reference = set_moments(model, split)
            entry[split] = {
                "n": len(recons),
                "reference_n": reference["image"].count,
                "names": drawn[split].names,
                "image": reference["image"].mean_mse(flatten(recons)),
                "stats": reference["stats"].mean_mse(autocorrelation_features(recons)),
            }
        if "train" in entry and "val" in entry:
            entry["ks_image"] = _ks(entry["train"]["image"], entry["val"]["image"])
            entry["ks_stats"] = _ks(entry["train"]["stats"], entry["val"]["stats"])
        for split in ("train", "val"):
            if split in entry:
                entry[split]["image_summary"] = summarize(entry[split]["image"])
                entry[split]["stats_summary"] = summarize(entry[split]["stats"])
        out[label] = entry
    return out


def _summaries(values, samples):
    by_class = {c: samples.where(c) for c in samples.class_names()}
    return {
        "all": {key: summarize(v) for key, v in values.items()},
        "by_class": {
            c: {key: summarize(np.asarray(v)[idx]) for key, v in values.items()} for c, idx in by_class.items()
        },
    }


def _meta(checkpoints, models, samples, data, thresholds, texture, gram, cut, input_sizes):
    from microlatent import __version__

    model_info = {}
    for label, checkpoint in checkpoints.items():
        run = models[label]
        config = run.config
        model_info[label] = {
            "checkpoint": str(checkpoint),
            "model": run.model.config.get("name"),
            "model_config": run.model.config,
            "config_name": config.get("name"),
            "loss": config.get("loss"),
            "init_from": (config.get("train") or {}).get("init_from"),
            "trained_size": run.trained_size,
            "input_size": input_sizes.get(label),
            "parameters": int(sum(p.numel() for p in run.model.parameters())),
        }
    counts = {c: int(len(samples.where(c))) for c in samples.class_names()}
    return {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "microlatent": __version__,
        "data": str(data),
        "split": samples.source.get("split"),
        "split_seed": cut.seed,
        "split_fractions": list(cut.fractions),
        "n_samples": len(samples),
        "samples_per_class": counts,
        "models": model_info,
        "statistics": "periodic 2-point statistics, all ordered phase pairs (CESS, MSESS); "
        "autocorrelation f(1,1|r) for nearest neighbours and the overfitting check",
        "vf_thresholds": thresholds,
        "vf_threshold_rule": "phase 1 where value >= threshold; 0.95 for lines = Hashemi et al.'s 0.05 on dark lines",
        "texture": {
            "computed": bool(texture),
            "stsim2": "complex steerable pyramid (pyrtools), 3 scales x 4 "
            "orientations + residuals, 7x7 windows, C=0.001 on [0, 255]",
            "gram_weights": getattr(gram, "weights_source", None),
        },
        "traversal": "one latent unit over linspace(-4, 4, 10); spatial latents: one channel set to the "
        "value at every position; units with the largest variance of mu",
        "win_matrix": "share of samples where model A (row) has strictly lower excess CESS (equivalently: "
        "CESS) than model B (column)",
        "excess_cess": "CESS - H(f_in): the mean over offsets r of KL(f_in(.|r) || f_recon(.|r)), >= 0, 0 for "
        "identical statistics; ~99 % of raw CESS is the input's own entropy H(f_in), the same for "
        "every model",
        "js_binary": "Jensen-Shannon divergence (nats, mean over offsets) between the input's statistics and those "
        "of the reconstruction thresholded at the vf threshold: the score of the binary image a user "
        "keeps (raw CESS of a binary image is dominated by the 1e-6 log floor)",
        "latent": "on the evaluated images: active units (Var(mu) > 0.01 and KL > 0.1 nats), the pixel std of "
        "reconstructions across inputs, KL per latent unit (channel, for spatial latents)",
    }


# ---------------------------------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------------------------------


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "model"


def _to_shape(images, shape):
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:] == tuple(shape):
        return images
    return resize_images(torch.from_numpy(images)[:, None], tuple(shape))[:, 0].numpy()


def _figures(results, runs, models, samples, figure_dir, grid_per_class, outliers, traversal_units):
    made = []

    def add(path, caption, section):
        made.append({"path": str(Path(path).relative_to(figure_dir.parent)), "caption": caption, "section": section})

    labels = list(runs)
    for c in samples.class_names():
        idx = samples.where(c)[:grid_per_class]
        reference = np.stack([runs[labels[0]]["kept"][i][0] for i in idx])  # inputs as the first model saw them
        recons = {
            label: _to_shape(np.stack([runs[label]["kept"][i][1] for i in idx]), reference.shape[1:])
            for label in labels
        }
        path = figures.statistics_grid_figure(
            reference, recons, [samples.names[i] for i in idx], figure_dir / f"grid_{_slug(c)}.png"
        )
        add(
            path,
            f"{c}: input and reconstructions; centred autocorrelation f(1,1|r); log f(recon) - log f(input)",
            "Reconstructions",
        )
    cess = {label: runs[label]["values"]["cess"] for label in labels}
    excess = {label: runs[label]["values"]["excess_cess"] for label in labels}
    add(
        figures.histograms_figure(
            {"excess CESS = CESS - H(f_in) (largest quintile cut off)": excess},
            figure_dir / "excess_cess_hist.png",
            "excess CESS",
            cutoff_quantile=0.8,
        ),
        "Histogram of excess CESS with medians: what differs between the models",
        "Distributions",
    )
    add(
        figures.histograms_figure(
            {"CESS (largest quintile cut off)": cess}, figure_dir / "cess_hist.png", "CESS", cutoff_quantile=0.8
        ),
        "Histogram of CESS with medians (Cai et al. Fig. 9)",
        "Distributions",
    )
    add(
        figures.histograms_figure(
            {"log CESS": {k: np.log(v) for k, v in cess.items()}}, figure_dir / "log_cess_hist.png", "log CESS"
        ),
        "Histogram of log CESS (Cai et al. Fig. 10)",
        "Distributions",
    )
    add(
        figures.histograms_figure(
            {"volume fraction difference": {k: runs[k]["values"]["vf_diff"] for k in labels}},
            figure_dir / "vf_diff_hist.png",
            "|vf - vf thresholded| / vf x 100",
            cutoff_quantile=0.95,
        ),
        "Volume fraction difference, % (Hashemi et al. Fig. 2; largest 5 % cut off)",
        "Distributions",
    )
    if "stsim2" in runs[labels[0]]["values"]:
        add(
            figures.histograms_figure(
                {
                    "STSIM-2": {k: runs[k]["values"]["stsim2"] for k in labels},
                    "VGG-19 Gram distance": {k: runs[k]["values"]["gram"] for k in labels},
                },
                figure_dir / "texture_hist.png",
                "score",
                cutoff_quantile=None,
            ),
            "Texture similarity: STSIM-2 (1 = same) and Gram distance (0 = same)",
            "Distributions",
        )
    if len(labels) > 1:
        matrix = results["win_matrix"]
        add(
            figures.win_matrix_figure(matrix["models"], matrix["matrix"], figure_dir / "win_matrix.png"),
            "Share of samples on which model A (row) has lower excess CESS (so lower CESS) than model B (column) "
            "(Cai et al. Fig. 11)",
            "Comparison",
        )
    for label in labels:
        run, slug = runs[label], _slug(label)
        top = run["outliers"]
        add(
            figures.outliers_figure(
                np.stack([x for _, x, _ in top]),
                np.stack([r for _, _, r in top]),
                [samples.names[i] for i, _, _ in top],
                run["values"]["cess"][[i for i, _, _ in top]],
                figure_dir / f"outliers_{slug}.png",
                k=outliers,
                title=label,
            ),
            f"{label}: the {outliers} samples with the highest excess CESS (Cai et al. Fig. 7)",
            "Outliers",
        )
    if "lines" in results:
        lines = results["lines"]
        panels = {f"reconstruction: {label}": lines["models"][label]["lines_counted"] for label in labels}
        if "nearest_train_count" in lines:
            panels["nearest training image (statistics)"] = lines["nearest_train_count"]
        add(
            figures.line_count_figure(lines["true_count"], panels, figure_dir / "line_counts.png"),
            "Lines counted vs lines in the original (Hashemi et al. Fig. 3)",
            "Lines",
        )
    if "overfitting" in results:
        for label, entry in results["overfitting"].items():
            if "train" in entry and "val" in entry:
                panels = {
                    f"{label}: image space": {
                        "train recon vs train set": entry["train"]["image"],
                        "val recon vs val set": entry["val"]["image"],
                    },
                    f"{label}: statistics space": {
                        "train recon vs train set": entry["train"]["stats"],
                        "val recon vs val set": entry["val"]["stats"],
                    },
                }
                add(
                    figures.histograms_figure(
                        panels, figure_dir / f"overfitting_{_slug(label)}.png", "mean MSE to the set", density=True
                    ),
                    f"{label}: overfitting check (Hashemi et al. Figs. 4-5)",
                    "Overfitting",
                )
    for label in labels:
        _latent_figures(models[label], label, samples, figure_dir, traversal_units, add)
    return made


def _latent_figures(model, label, samples, figure_dir, units, add):
    """Traversal of the first sample, prior samples and an interpolation for one model."""
    slug = _slug(label)
    probe = samples.images[: min(len(samples), 256)]
    mu, _ = encode(model, probe)
    chosen = most_used_units(mu, units)
    rows = traversal(model, samples.images[0], chosen)
    kind = "channel (set at every position)" if mu.ndim == 4 else "dimension"
    original = _resized(model, [samples.images[0]])[0]
    add(
        figures.traversal_figure(
            original,
            rows,
            TRAVERSAL_VALUES,
            figure_dir / f"traversal_{slug}.png",
            title=f"{label}: {samples.names[0]}, one latent {kind} over [-4, 4]",
            row_label="channel" if mu.ndim == 4 else "dim",
        ),
        f"{label}: latent traversals of {samples.names[0]}, the {len(chosen)} most used latent {kind}s "
        "(TextureVAE Fig. 6)",
        "Latent space",
    )
    drawn = prior_samples(model, mu.shape[1:], n=6, seed=0)
    other = next((i for i, c in enumerate(samples.classes) if c != samples.classes[0]), len(samples) - 1)
    t, path_images = interpolation(model, samples.images[0], samples.images[other], steps=6)
    groups = {
        "z ~ N(0, I)": (drawn, [f"prior #{i}" for i in range(len(drawn))]),
        "interpolation": (path_images, [f"t = {v:.2f}" for v in t]),
    }
    add(
        figures.image_rows_figure(groups, figure_dir / f"latent_samples_{slug}.png"),
        f"{label}: decoded samples from the prior (top) and decoded (1 - t) mu({samples.names[0]}) + "
        f"t mu({samples.names[other]}) (bottom), each above its autocorrelation",
        "Latent space",
    )


# ---------------------------------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------------------------------


def _clean(value):
    """JSON-ready: arrays to lists, numpy scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _write_outputs(results, out_dir):
    """Measuring ends here: every number goes to metrics.json, and the report is rendered from that file
    alone (:func:`render_report`), so it can be rendered again without models or data."""
    (out_dir / "metrics.json").write_text(json.dumps(_clean(results), indent=1))
    return render_report(out_dir)
