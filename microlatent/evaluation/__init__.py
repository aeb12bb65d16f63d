"""Evaluation: running trained models on data and measuring them the way the papers do."""

from microlatent.evaluation.inference import decode, encode, load_trained_model, model_batches, reconstruct
from microlatent.evaluation.figures import reconstruction_figure

__all__ = ["decode", "encode", "load_trained_model", "model_batches", "reconstruct", "reconstruction_figure"]
