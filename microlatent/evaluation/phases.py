"""Evaluation of K-phase models (K > 2): the same questions as the 2-phase report, for every phase.

Per held-out image and model, with the input one-hot and the reconstruction as the model's phase
probabilities (N, K, H, W):

- ``excess_cess``: CESS minus the input's own statistics entropy over all K^2 ordered pairs (Cai et
  al. eq. 8 generalised; 0 = the statistics are reproduced), of the probabilities;
- ``js_labels``: Jensen-Shannon divergence between the input's statistics and those of the
  reconstruction's most probable phase per pixel (the label image a user takes away);
- ``vf_difference_<k>``: |vf_k(input) - vf_k(labels)| / vf_k(input) x 100 per phase k (Hashemi et
  al. B.1, per phase; NaN where the input has no phase k);
- ``pixel_error``: share of pixels whose most probable phase is not the input's.

``write_phase_report`` writes metrics.json (per-image values, per-model medians, pairwise wins),
report.md (what the numbers mean first) and reconstructions.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from microlatent.errors import InputError
from microlatent.losses.terms import excess_cess_from_stats, js_divergence_from_stats
from microlatent.stats import one_hot, two_point

_BATCH = 32


def phase_metrics(inputs, recons) -> dict:
    """{name: (N,)} of one model's reconstructions (N, K, H, W) against one-hot inputs (N, K, H, W)."""
    inputs, recons = np.asarray(inputs, np.float64), np.asarray(recons, np.float64)
    if inputs.shape != recons.shape or inputs.ndim != 4:
        raise InputError(f"inputs {inputs.shape} and reconstructions {recons.shape} must both be (N, K, H, W)")
    k = inputs.shape[1]
    labels = one_hot(recons.argmax(axis=1), k, np.float64)
    out = {"excess_cess": [], "js_labels": []}
    for s in range(0, len(inputs), _BATCH):
        f_in = two_point(inputs[s : s + _BATCH], pairs="all", validate=False)
        out["excess_cess"].append(
            excess_cess_from_stats(f_in, two_point(recons[s : s + _BATCH], pairs="all", validate=False), "none")
        )
        out["js_labels"].append(
            js_divergence_from_stats(f_in, two_point(labels[s : s + _BATCH], pairs="all", validate=False), "none")
        )
    result = {name: np.concatenate(values) for name, values in out.items()}
    vf_in, vf_out = inputs.mean(axis=(2, 3)), labels.mean(axis=(2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        for p in range(k):
            result[f"vf_difference_{p}"] = np.where(
                vf_in[:, p] > 0, np.abs(vf_in[:, p] - vf_out[:, p]) / vf_in[:, p] * 100, np.nan
            )
    result["pixel_error"] = (inputs.argmax(axis=1) != labels.argmax(axis=1)).mean(axis=(1, 2))
    return result


def evaluate_phases(
    checkpoints: dict, data=None, split="test", limit_per_class=None, classes=None, device="cpu", log=None
):
    """Reconstruct the same held-out images with every model of ``checkpoints`` ({label: path}) and
    score them (:func:`phase_metrics`). Returns {"models": {label: {metric: list}}, "medians",
    "wins": {metric: {a: {b: share of images where a < b}}}, "names", "n_phases", "inputs",
    "recons"} (the last two arrays for figures)."""
    from microlatent.data.split import read_split
    from microlatent.evaluation.inference import roundtrip
    from microlatent.models.run import Run

    say = log or (lambda line: None)
    runs = {label: Run.load(path, device) for label, path in checkpoints.items()}
    phases = {run.model.n_phases for run in runs.values()}
    if len(phases) > 1:
        raise InputError(f"the models were trained on different numbers of phases ({sorted(phases)})")
    first = next(iter(runs.values()))
    data = data or first.data_path
    if not data:
        raise InputError("no --data given and the checkpoint's config names no data.path")
    samples = read_split(data, split, first.split.with_classes(classes), limit_per_class=limit_per_class)
    if not len(samples):
        raise InputError(f"{data}: the {split} split holds no images")
    say(f"{len(samples)} {split} images, {next(iter(phases))} phases")
    models, inputs, recons = {}, None, {}
    for label, run in runs.items():
        seen, recon = roundtrip(run, samples.images)
        inputs = seen if inputs is None else inputs
        recons[label] = recon
        models[label] = {name: values.tolist() for name, values in phase_metrics(seen, recon).items()}
        say(f"{label}: median excess CESS {np.median(models[label]['excess_cess']):.4g}")
    medians = {label: {name: float(np.nanmedian(v)) for name, v in m.items()} for label, m in models.items()}
    wins = {
        metric: {
            a: {b: float(np.mean(np.array(models[a][metric]) < np.array(models[b][metric]))) for b in models if b != a}
            for a in models
        }
        for metric in ("excess_cess", "js_labels")
    }
    return {
        "models": models,
        "medians": medians,
        "wins": wins,
        "names": samples.names,
        "n_phases": next(iter(phases)),
        "data": str(data),
        "split": split,
        "inputs": inputs,
        "recons": recons,
    }


def report_lines(result) -> list[str]:
    from microlatent.text import text_table

    k = result["n_phases"]
    lines = [
        f"# {k}-phase reconstruction report",
        "",
        f"{len(result['names'])} {result['split']} images of {result['data']}. Lower is better everywhere: "
        "excess CESS is the cross-entropy of the reconstruction's 2-point statistics (all "
        f"{k * k} ordered phase pairs) beyond the input's own entropy (0 = statistics reproduced); JS is the "
        "Jensen-Shannon divergence of the statistics of the most probable phase per pixel; vf difference is "
        "per phase, in % of the input's fraction; pixel error is the share of pixels given the wrong phase.",
        "",
    ]
    header = ["model", "excess CESS", "JS labels", "pixel error"] + [f"vf diff {p} %" for p in range(k)]
    rows = [header]
    for label, m in result["medians"].items():
        rows.append(
            [label, f"{m['excess_cess']:.4g}", f"{m['js_labels']:.4g}", f"{m['pixel_error']:.3f}"]
            + [f"{m[f'vf_difference_{p}']:.2f}" for p in range(k)]
        )
    lines += ["Medians over images:", "", "```", text_table(rows, rule=True), "```", ""]
    if len(result["models"]) > 1:
        lines.append("Share of images on which the row model scores lower (better) than the column model:")
        for metric, table in result["wins"].items():
            labels = list(table)
            grid = [[metric] + labels] + [
                [a] + ["-" if a == b else f"{table[a][b]:.0%}" for b in labels] for a in labels
            ]
            lines += ["", "```", text_table(grid, rule=True), "```"]
    return lines


def write_phase_report(result, out_dir) -> Path:
    """metrics.json, report.md and reconstructions.png in ``out_dir``; returns the report's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = {key: value for key, value in result.items() if key not in ("inputs", "recons")}
    (out_dir / "metrics.json").write_text(json.dumps(numbers, indent=1))
    k = result["n_phases"]
    shown = min(6, len(result["names"]))
    rows = 1 + len(result["recons"])
    fig, axes = plt.subplots(rows, shown, figsize=(1.8 * shown, 1.9 * rows), squeeze=False)
    for j in range(shown):
        axes[0, j].imshow(result["inputs"][j].argmax(0), cmap="viridis", vmin=0, vmax=k - 1, interpolation="nearest")
        axes[0, j].set_title(result["names"][j], fontsize=7)
        for i, (label, recon) in enumerate(result["recons"].items(), start=1):
            axes[i, j].imshow(recon[j].argmax(0), cmap="viridis", vmin=0, vmax=k - 1, interpolation="nearest")
            if j == 0:
                axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    fig.suptitle("held-out inputs (top) and each model's most probable phase per pixel")
    fig.tight_layout()
    fig.savefig(out_dir / "reconstructions.png", dpi=100)
    plt.close(fig)
    path = out_dir / "report.md"
    path.write_text("\n".join(report_lines(result) + ["", "![reconstructions](reconstructions.png)", ""]))
    return path
