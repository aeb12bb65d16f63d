"""Evaluation: running trained models on data and measuring them the way the papers do.

write_report({label: checkpoint}, data, out_dir)   the report of ``microlatent evaluate | compare``
metrics     per-sample CESS / MSESS / MSE, volume fraction difference, win matrix, nearest
            neighbours and mean distances in statistics space
lines       orientation and line count of lines images
texture     STSIM-2 and the VGG-19 Gram distance
latent      traversals, prior samples, interpolation
figures     the report's figures
"""

from microlatent.evaluation.figures import reconstruction_figure
from microlatent.evaluation.inference import decode, encode, model_batches, roundtrip
from microlatent.evaluation.lines import count_lines, line_orientation
from microlatent.evaluation.metrics import (
    mean_mse_to_set,
    nearest_neighbours,
    reconstruction_metrics,
    summarize,
    volume_fraction_difference,
    win_matrix,
)
from microlatent.evaluation.render import render_report
from microlatent.evaluation.report import write_report
from microlatent.evaluation.texture import GramDistance, stsim2, stsim2_batch

__all__ = [
    "decode",
    "encode",
    "model_batches",
    "roundtrip",
    "reconstruction_figure",
    "count_lines",
    "line_orientation",
    "mean_mse_to_set",
    "nearest_neighbours",
    "reconstruction_metrics",
    "summarize",
    "volume_fraction_difference",
    "win_matrix",
    "render_report",
    "write_report",
    "GramDistance",
    "stsim2",
    "stsim2_batch",
]
