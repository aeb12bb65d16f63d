"""Reconstruction and regularisation losses: image space (MSE), statistics space (MSESS, CESS, CESS on
a centre crop), the clamp loss, KL, the VGG-19 style loss; composed from config by ``CompositeLoss``."""

from microlatent.losses.composite import TERMS, CompositeLoss
from microlatent.losses.terms import cess, clamp, kl, mse, msess

__all__ = ["TERMS", "CompositeLoss", "cess", "clamp", "kl", "msess", "mse"]
