"""Figures: microstructures beside their centred 2-point statistics (PNG via matplotlib's Agg backend)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402

from microlatent.errors import InputError  # noqa: E402
from microlatent.stats import offsets, two_point  # noqa: E402


def plot_images_with_statistics(images, titles=None, path="statistics.png", periodic=True, per_row=6, phase=1):
    """Save a figure of images above the centred autocorrelation of ``phase`` of each.

    images : (N, H, W) phase-1 probabilities in [0, 1] (sizes may differ between images: pass a list).
    titles : N strings shown above the images.
    Offsets on the statistics axes are in pixels; the colour scale runs from 0 to the volume fraction.
    Returns the path written.
    """
    images = [np.asarray(image, dtype=np.float32) for image in images]
    titles = list(titles) if titles is not None else [""] * len(images)
    columns = min(per_row, len(images))
    blocks = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(2 * blocks, columns, figsize=(2.3 * columns, 4.6 * blocks), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (image, title) in enumerate(zip(images, titles)):
        block, column = divmod(i, columns)
        top, bottom = axes[2 * block, column], axes[2 * block + 1, column]
        top.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        top.set_title(title, fontsize=9)
        stats = two_point(image, periodic=periodic, pairs=[(phase, phase)])[0, 0]
        ry, rx = offsets(image.shape, periodic)
        shown = bottom.imshow(
            stats,
            cmap="viridis",
            vmin=0,
            interpolation="nearest",
            extent=(rx[0] - 0.5, rx[-1] + 0.5, ry[-1] + 0.5, ry[0] - 0.5),
        )
        bottom.set_axis_on()
        bottom.tick_params(labelsize=6)
        bottom.set_title(f"f({phase},{phase}|r), vf={image.mean():.2f}", fontsize=8)
        fig.colorbar(shown, ax=bottom, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_phase_statistics(labels, n_phases, pairs, titles=None, path="statistics.png", periodic=True):
    """Save a figure with one row per image: the K-phase label image, then the centred map of each
    phase pair in ``pairs`` (e.g. every autocorrelation and the cross-correlations asked for).

    labels : (N, H, W) phase indices 0 .. n_phases - 1; pairs : list of (h, h').
    """
    from microlatent.stats import one_hot

    labels = np.asarray(labels)
    titles = list(titles) if titles is not None else [""] * len(labels)
    maps = two_point(one_hot(labels, n_phases, np.float64), periodic=periodic, pairs=pairs)
    ry, rx = offsets(labels.shape[-2:], periodic)
    columns = 1 + len(pairs)
    fig, axes = plt.subplots(len(labels), columns, figsize=(2.3 * columns, 2.4 * len(labels)), squeeze=False)
    for i, (image, title) in enumerate(zip(labels, titles)):
        axes[i, 0].imshow(image, cmap="viridis", vmin=0, vmax=n_phases - 1, interpolation="nearest")
        axes[i, 0].set_title(title, fontsize=9)
        axes[i, 0].set_axis_off()
        for j, (h, k) in enumerate(pairs):
            ax = axes[i, 1 + j]
            shown = ax.imshow(
                maps[i, j],
                cmap="magma",
                vmin=0,
                interpolation="nearest",
                extent=(rx[0] - 0.5, rx[-1] + 0.5, ry[-1] + 0.5, ry[0] - 0.5),
            )
            ax.tick_params(labelsize=6)
            ax.set_title(f"f({h},{k}|r)" + (f", vf={np.mean(image == h):.2f}" if h == k else ""), fontsize=8)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def check_figure_path(path) -> str:
    """The image format a figure written to ``path`` gets (its suffix; none = png); InputError for a
    suffix matplotlib cannot write (e.g. .txt) or a path that is a folder. Commands call it first,
    so a bad --out fails before any work."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "png"
    if kind not in FigureCanvasBase.get_supported_filetypes():
        raise InputError(
            f"{path}: a figure must be .png, .pdf, .svg or .jpg (or another matplotlib format), not .{kind}"
        )
    if path.is_dir():
        raise InputError(f"{path} is a folder; name the figure file (e.g. {path / 'figure.png'})")
    return kind


def save_figure(fig, path):
    """Write a figure atomically (a half-written PNG never replaces a good one) and close it."""
    path = Path(path)
    try:
        kind = check_figure_path(path)
    except InputError:
        plt.close(fig)
        raise
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    fig.savefig(partial, dpi=110, format=kind)
    plt.close(fig)
    os.replace(partial, path)
    return path


def plot_reconstructions(inputs, recons_by_model, names, path, periodic=True, phase=1):
    """Save a figure with one row per sample: the input and each model's reconstruction, each beside
    the centred autocorrelation of ``phase`` (one colour scale per row, set by the input).

    inputs : (N, H, W) in [0, 1]; recons_by_model : {model name: (N, H, W)}; names : N strings.
    K phases: inputs and reconstructions (N, K, H, W) phase probabilities, drawn as their most
    probable phase (colours as in :func:`plot_phase_statistics`).
    """
    from microlatent.evaluation.inference import phase_labels
    from microlatent.losses.terms import excess_cess_from_stats, js_divergence_from_stats
    from microlatent.stats.pca import as_phases

    inputs = np.asarray(inputs, dtype=np.float32)
    n_phases = inputs.shape[1] if inputs.ndim == 4 else 2
    columns = [("input", inputs), *((name, np.asarray(r, dtype=np.float32)) for name, r in recons_by_model.items())]
    rows = len(inputs)
    fig, axes = plt.subplots(rows, 2 * len(columns), figsize=(2.1 * 2 * len(columns), 2.2 * rows), squeeze=False)
    ry, rx = offsets(inputs.shape[-2:], periodic)
    extent = (rx[0] - 0.5, rx[-1] + 0.5, ry[-1] + 0.5, ry[0] - 0.5)
    stats = {
        name: two_point(images, periodic=periodic, pairs=[(phase, phase)], validate=False)[:, 0]
        for name, images in columns
    }

    labels = {name: phase_labels(images) for name, images in columns}  # thresholded, or likeliest phase

    # Each reconstruction's title carries the report's two scores (all phase pairs): its excess CESS
    # (CESS - H(f_in)) and the JS divergence of its most probable (binary) image's statistics.
    def stats_all(images):
        return two_point(images.astype(np.float64), periodic=periodic, pairs="all", validate=False)

    f_in = stats_all(inputs)
    excess = {name: excess_cess_from_stats(f_in, stats_all(images), reduction="none") for name, images in columns[1:]}
    js = {
        name: js_divergence_from_stats(f_in, stats_all(as_phases(labels[name], n_phases)), reduction="none")
        for name, _ in columns[1:]
    }
    for i in range(rows):
        vmax = float(stats["input"][i].max())
        for j, (name, images) in enumerate(columns):
            image_ax, stats_ax = axes[i, 2 * j], axes[i, 2 * j + 1]
            if n_phases > 2:
                image_ax.imshow(labels[name][i], cmap="viridis", vmin=0, vmax=n_phases - 1, interpolation="nearest")
            else:
                image_ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            title = f"{name}\nexcess CESS {excess[name][i]:.2g}, JS bin. {js[name][i]:.2g}" if j else names[i]
            image_ax.set_title(title, fontsize=7)
            stats_ax.imshow(stats[name][i], cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
            stats_ax.set_title(f"f({phase},{phase}|r)", fontsize=8)
            image_ax.set_axis_off()
            stats_ax.tick_params(labelsize=5)
    fig.tight_layout()
    return save_figure(fig, path)
