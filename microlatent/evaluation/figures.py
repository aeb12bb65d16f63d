"""Figures of trained models: reconstructions of the same inputs by several models."""

from __future__ import annotations

from pathlib import Path

from microlatent.data.sources import load_images
from microlatent.evaluation.inference import load_trained_model, reconstruct
from microlatent.plotting import plot_reconstructions


def reconstruction_figure(checkpoints: dict, source, out, classes=None, split="test", limit=1, device="auto"):
    """Draw inputs from ``source`` and their reconstructions by each model of ``checkpoints``
    ({label: checkpoint path}), each beside its autocorrelation. Returns the PNG path."""
    images, names = load_images(source, classes=classes, split=split, limit=limit)
    recons, inputs = {}, None
    for label, checkpoint in checkpoints.items():
        inputs, recons[label] = reconstruct(load_trained_model(checkpoint, device), images)
    return plot_reconstructions(inputs, recons, names, Path(out))
