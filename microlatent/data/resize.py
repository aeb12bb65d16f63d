"""Resizing microstructures without blurring them into grey targets.

A 2-phase image resized with antialiasing comes back grey at every interface (at 256 -> 64 px about
half of a MICRO2D-like image's pixels lie strictly between 0.01 and 0.99), so a VAE trained on it
learns, and is scored against, blurred targets. :func:`resize_images` therefore re-binarises a binary
image after resizing, by the rule that keeps its volume fraction: of the resized (grey) pixels, the
``round(vf * H * W)`` brightest become phase 1, the rest phase 0 (ties in the original order). This
is the image a threshold at the resized image's own vf-quantile gives: the interfaces move by at most
half a pixel and the volume fraction is exact to one pixel, whereas a fixed 0.5 threshold shifts the
volume fraction of thin features (a 3 px line at 4x downsampling is grey 0.75 and survives, a 1 px
one is grey 0.25 and vanishes). Grey inputs (probabilities) are resized and left grey.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def is_binary(images) -> bool:
    """True when every value of the tensor or array is exactly 0 or 1."""
    if isinstance(images, torch.Tensor):
        return bool(((images == 0) | (images == 1)).all())
    array = np.asarray(images)
    return bool(((array == 0) | (array == 1)).all())


def binarize_keeping_volume_fraction(grey: torch.Tensor, volume_fraction: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey images -> 0/1 images whose phase-1 share is ``round(vf * H * W) / (H * W)``.

    volume_fraction: (N,) target phase-1 fractions. The brightest pixels become phase 1.
    """
    n = grey.shape[0]
    flat = grey.reshape(n, -1)
    ones = torch.round(volume_fraction.reshape(n).to(flat.dtype) * flat.shape[1]).long()
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand(n, -1))
    return (rank < ones[:, None]).to(grey.dtype).reshape(grey.shape)


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(N, 1, H, W) float images -> (N, 1, size, size): bilinear with antialiasing, then, for binary
    inputs, re-binarised keeping each image's volume fraction (see the module docstring).

    Images already at ``size`` come back unchanged.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    grey = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0.0, 1.0)
    if not is_binary(images):
        return grey
    return binarize_keeping_volume_fraction(grey, images.mean(dim=(1, 2, 3)))
