"""Figures of trained models: reconstructions of the same inputs by several models, and the figures of
the evaluation report (arrays in, one PNG out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microlatent.data.sources import load_images
from microlatent.errors import InputError
from microlatent.evaluation.inference import roundtrip
from microlatent.losses.terms import LOG_FLOOR
from microlatent.models.run import Run
from microlatent.plotting import plot_reconstructions, plt, save_figure
from microlatent.stats import offsets, two_point


def reconstruction_figure(checkpoints: dict, source, out, classes=None, split="test", limit=1, device="auto"):
    """Draw inputs from ``source`` and their reconstructions by each model of ``checkpoints``
    ({label: checkpoint path}), each beside its autocorrelation. Returns the PNG path."""
    runs = {label: Run.load(checkpoint, device) for label, checkpoint in checkpoints.items()}
    phases = {run.model.n_phases for run in runs.values()}
    if len(phases) > 1:
        raise InputError(
            f"these models were trained on different numbers of phases ({sorted(phases)}): compare them apart"
        )
    images, names = load_images(source, classes=classes, split=split, limit=limit, n_phases=phases.pop())
    recons, inputs = {}, None
    for label, run in runs.items():
        inputs, recons[label] = roundtrip(run, images)
    return plot_reconstructions(inputs, recons, names, Path(out))


# ---------------------------------------------------------------------------------------------------
# Figures of the evaluation report (Cai et al. 2025 Figs. 7, 9-12; Hashemi et al. 2024 Figs. 2-5;
# TextureVAE Fig. 6). Arrays in, one PNG out; each returns the path written.
# ---------------------------------------------------------------------------------------------------


def _extent(shape, periodic=True):
    ry, rx = offsets(shape, periodic)
    return (rx[0] - 0.5, rx[-1] + 0.5, ry[-1] + 0.5, ry[0] - 0.5)


def statistics_grid_figure(inputs, recons_by_model, names, path, periodic=True, phase=1):
    """Cai et al. Fig. 12 for each sample: columns input and each model; rows the image, its centred
    autocorrelation f(phase, phase | r) and log f(recon) - log f(input) (diverging colours, one
    symmetric scale per sample, red = more than the input; floored at 1e-6 like CESS).

    inputs : (N, H, W); recons_by_model : {model: (N, H, W)}; names : N titles.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    columns = [("input", inputs), *((m, np.asarray(r, dtype=np.float64)) for m, r in recons_by_model.items())]
    stats = {
        m: two_point(images, periodic=periodic, pairs=[(phase, phase)], validate=False)[:, 0] for m, images in columns
    }
    n, width = len(inputs), len(columns)
    fig, axes = plt.subplots(3 * n, width, figsize=(2.0 * width + 0.6, 6.0 * n), squeeze=False)
    extent = _extent(inputs.shape[1:], periodic)
    for i in range(n):
        log_in = np.log(np.maximum(stats["input"][i], LOG_FLOOR))
        diffs = {m: np.log(np.maximum(stats[m][i], LOG_FLOOR)) - log_in for m, _ in columns[1:]}
        span = max([float(np.abs(d).max()) for d in diffs.values()] + [1e-3])
        vmax = float(stats["input"][i].max())
        for j, (model, images) in enumerate(columns):
            image_ax, stats_ax, diff_ax = axes[3 * i, j], axes[3 * i + 1, j], axes[3 * i + 2, j]
            image_ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            image_ax.set_title(f"{names[i]}" if j == 0 else model, fontsize=8)
            stats_ax.imshow(stats[model][i], cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
            stats_ax.set_title(f"f({phase},{phase}|r)", fontsize=7)
            image_ax.set_axis_off()
            stats_ax.set_axis_off()  # offsets run from -H/2 to H/2, centre = 0 (ticks are slow to draw)
            if j == 0:
                diff_ax.set_axis_off()
                diff_ax.text(
                    0.5,
                    0.5,
                    "log f(recon)\n- log f(input)",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=diff_ax.transAxes,
                )
                continue
            diff_ax.imshow(diffs[model], cmap="RdBu_r", vmin=-span, vmax=span, extent=extent, interpolation="nearest")
            diff_ax.set_title(f"log diff, \u00b1{span:.2g}", fontsize=7)
            diff_ax.set_axis_off()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.96, wspace=0.08, hspace=0.3)
    return save_figure(fig, path)


def outliers_figure(inputs, recons, names, scores, path, k=6, score_name="CESS", title=None):
    """Cai et al. Fig. 7: the ``k`` samples with the highest ``scores``, input above reconstruction,
    the score written below."""
    scores = np.asarray(scores, dtype=np.float64)
    order = [i for i in np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")[:k]]
    fig, axes = plt.subplots(2, max(1, len(order)), figsize=(2.0 * max(1, len(order)), 4.4), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for j, i in enumerate(order):
        axes[0, j].imshow(inputs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, j].set_title(names[i], fontsize=7)
        axes[1, j].imshow(recons[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1, j].set_xlabel(f"{score_name} {scores[i]:.4g}", fontsize=8)
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("reconstruction", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def histograms_figure(panels, path, xlabel, cutoff_quantile=None, bins=40, log_x=False, density=False):
    """One panel per entry of ``panels`` ({title: {series: values}}), overlaid histograms of the
    series with a dashed line at each median (Cai et al. Figs. 9-10; Hashemi et al. Figs. 2, 4-5).
    ``cutoff_quantile`` (e.g. 0.8, as Cai et al. cut the largest quintile) limits the x range to that
    quantile of all values of the panel. ``density``: normalise each series (for series of different
    sizes). Non-finite values are left out."""
    panels = dict(panels)
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.2 * max(1, len(panels)), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, series) in zip(axes[0], panels.items()):
        arrays = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in series.items()}
        finite = {name: v[np.isfinite(v)] for name, v in arrays.items()}
        pooled = np.concatenate([v for v in finite.values()] or [np.zeros(0)])
        if pooled.size:
            low, high = float(pooled.min()), float(pooled.max())
            if cutoff_quantile is not None:
                high = float(np.quantile(pooled, cutoff_quantile))
            if high <= low:
                high = low + 1e-12 + abs(low) * 1e-6
            edges = np.geomspace(low, high, bins + 1) if log_x and low > 0 else np.linspace(low, high, bins + 1)
            for k, (name, values) in enumerate(finite.items()):
                if not values.size:
                    continue
                colour = colours[k % len(colours)]
                ax.hist(
                    values,
                    bins=edges,
                    alpha=0.45,
                    color=colour,
                    density=density,
                    label=f"{name} (n {values.size}, median {np.median(values):.4g})",
                )
                ax.axvline(np.median(values), color=colour, linestyle="--", linewidth=1.2)
            if log_x and low > 0:
                ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("density" if density else "samples", fontsize=8)
        ax.tick_params(labelsize=7)
        if pooled.size:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def win_matrix_figure(labels, matrix, path, title="share of samples with\nCESS(model A) < CESS(model B)"):
    """Cai et al. Fig. 11: matrix[a, b] as a heat map with the numbers written in (diagonal blank)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    size = 1.0 + 1.1 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdYlGn", vmin=0, vmax=1)
    for a in range(len(labels)):
        for b in range(len(labels)):
            if np.isfinite(matrix[a, b]):
                ax.text(b, a, f"{matrix[a, b]:.3f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("model B", fontsize=8)
    ax.set_ylabel("model A", fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def line_count_figure(truth, panels, path):
    """Hashemi et al. Fig. 3: one panel per entry of ``panels`` ({title: counted lines per sample}),
    the number of samples at each (true count, counted) pair, the diagonal being right."""
    truth = np.asarray(truth, dtype=np.int64)
    panels = dict(panels)
    top = int(max([truth.max(initial=0)] + [np.asarray(v).max(initial=0) for v in panels.values()]))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.4), squeeze=False)
    for ax, (title, counted) in zip(axes[0], panels.items()):
        table = np.zeros((top + 1, top + 1), dtype=np.int64)
        np.add.at(table, (np.asarray(counted, dtype=np.int64), truth), 1)
        ax.imshow(table, cmap="Blues", origin="lower")
        for y in range(top + 1):
            for x in range(top + 1):
                if table[y, x]:
                    ax.text(x, y, str(table[y, x]), ha="center", va="center", fontsize=7)
        ax.set_xlabel("lines in the original", fontsize=8)
        ax.set_ylabel("lines counted", fontsize=8)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def traversal_figure(original, rows, values, path, title=None, row_label="unit"):
    """TextureVAE Fig. 6: one row per latent unit, the original image first, then the decoded image at
    each traversal value. rows : {unit: (len(values), H, W)}."""
    values = list(values)
    n_rows = max(1, len(rows))
    fig, axes = plt.subplots(
        n_rows, len(values) + 1, figsize=(1.25 * (len(values) + 1), 1.35 * n_rows + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (unit, images) in enumerate(rows.items()):
        axes[r, 0].imshow(original, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(f"{row_label} {unit}", fontsize=7)
        for c, image in enumerate(images):
            axes[r, c + 1].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == 0:
                axes[r, c + 1].set_title(f"{values[c]:+.2f}", fontsize=7)
    axes[0, 0].set_title("original", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def image_rows_figure(groups, path, periodic=True, phase=1):
    """Rows of images, each above its centred autocorrelation f(phase, phase | r) (one colour scale
    per image, 0 to its volume fraction). groups : {row title: (images (n, H, W), n titles)}.
    A light sibling of :func:`microlatent.plotting.plot_images_with_statistics` (no colour bars or
    ticks: several times faster to draw), for the report's prior samples and interpolations."""
    groups = dict(groups)
    width = max(len(images) for images, _ in groups.values())
    fig, axes = plt.subplots(2 * len(groups), width, figsize=(1.6 * width, 3.5 * len(groups)), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for g, (row_title, (images, titles)) in enumerate(groups.items()):
        images = np.asarray(images, dtype=np.float64)
        stats = two_point(images, periodic=periodic, pairs=[(phase, phase)], validate=False)[:, 0]
        extent = _extent(images.shape[1:], periodic)
        for j, (image, title) in enumerate(zip(images, titles)):
            axes[2 * g, j].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[2 * g, j].set_title(title, fontsize=7)
            axes[2 * g + 1, j].imshow(
                stats[j],
                cmap="viridis",
                vmin=0,
                vmax=max(float(image.mean()), 1e-6),
                extent=extent,
                interpolation="nearest",
            )
            axes[2 * g + 1, j].set_title(f"f({phase},{phase}|r), vf={image.mean():.2f}", fontsize=6)
        axes[2 * g, 0].text(
            -0.08, 0.5, row_title, rotation=90, ha="right", va="center", fontsize=8, transform=axes[2 * g, 0].transAxes
        )
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.02, top=0.95, wspace=0.08, hspace=0.3)
    return save_figure(fig, path)
