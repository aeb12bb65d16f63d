"""Held-out scores of a predictor fit: rows of R^2 and MAPE per property, as a text table and as a
predicted-vs-true figure (``metrics.csv`` and ``pred_vs_true.png`` of a predictor folder).

A row is ``{"set", "features", "regressor", "property", "r2", "mape", "n_train", "n_test"}``; ``set`` is
"labels" (the file's labels), "decoded" (closed-loop regressors) or "reconstruction" (the solver on
the decoded, thresholded test codes against the labels: the round trip's fidelity).
"""

from __future__ import annotations

import numpy as np

from microlatent.design.regression import FEATURE_KINDS, PROPERTY_NAMES, REGRESSOR_KINDS
from microlatent.evaluation.metrics import mape, r2_per_property
from microlatent.text import text_table


def score_rows(set_name, features, kind, truth, pred, n_train) -> list[dict]:
    """One row per property: R^2 and MAPE (%) of ``pred`` against ``truth`` (N, 5)."""
    r2, err = np.atleast_1d(r2_per_property(truth, pred)), np.atleast_1d(mape(truth, pred))
    return [
        {
            "set": set_name,
            "features": features,
            "regressor": kind,
            "property": name,
            "r2": float(r2[k]),
            "mape": float(err[k]),
            "n_train": int(n_train),
            "n_test": len(truth),
        }
        for k, name in enumerate(PROPERTY_NAMES)
    ]


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
