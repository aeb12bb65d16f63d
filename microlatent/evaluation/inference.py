"""Running trained models on arrays: load a checkpoint for inference, encode, decode, round trip.

Arrays in, arrays out: images are (N, H, W) float32 in [0, 1]; each model sees them resized to the
size its training config used (``Run.trained_size``) and gives reconstructions back at that size.
A K-phase model (``model.n_phases`` > 2) takes label images (N, H, W) of phase indices, sees them
one-hot, and gives (N, K, H, W) phase probabilities back.
Functions take a :class:`~microlatent.models.run.Run` (or a bare model, used at the images' size).
"""

from __future__ import annotations

import numpy as np
import torch

from microlatent.data.resize import resize_images
from microlatent.errors import InputError
from microlatent.models.run import as_run


def model_batches(model, images, batch_size=32):
    """(B, 1, H, W) tensors on the model's device, resized to the run's ``trained_size`` when it has one.
    ``model``: a :class:`Run` or a bare model (images at their own size)."""
    run = as_run(model)
    images = list(images)
    if len({np.shape(image) for image in images}) > 1:
        raise InputError("images of different sizes cannot be batched for a model")
    device = run.device
    k = run.model.n_phases
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start : start + batch_size]).astype(np.float32))[:, None]
        if k > 2:  # labels -> (B, K, H, W) one-hot, resized as labels (nearest), as in training
            if run.trained_size and tuple(batch.shape[-2:]) != (run.trained_size,) * 2:
                batch = torch.nn.functional.interpolate(batch, size=(run.trained_size,) * 2, mode="nearest")
            if batch.max() > k - 1 or (batch != batch.round()).any():
                raise InputError(f"a {k}-phase model takes label images of phase indices 0..{k - 1}")
            yield torch.nn.functional.one_hot(batch[:, 0].long(), k).permute(0, 3, 1, 2).float().to(device)
            continue
        if run.trained_size:
            batch = resize_images(batch, run.trained_size)  # as in training: binary images stay binary
        yield batch.to(device)


def seen_images(model, images, batch_size=32) -> np.ndarray:
    """(N, H, W) float64 images as the model sees them (resized to its trained size; binary images
    stay binary); a K-phase model's as phase labels (resized nearest), the argmax of its one-hot input."""
    return np.concatenate(
        [(b.argmax(1) if b.shape[1] > 1 else b[:, 0]).cpu().numpy() for b in model_batches(model, images, batch_size)]
    ).astype(np.float64)


def phase_labels(output, threshold=0.5, strict=False) -> np.ndarray:
    """Phase labels (N, H, W) uint8 of decoded output: the most probable phase of a K-phase model's
    (N, K, H, W) probabilities; phase 1 where a 2-phase model's (N, H, W) phase-1 probability is
    >= ``threshold`` (> with ``strict``, the design closed loop's rule)."""
    output = np.asarray(output)
    if output.ndim == 4:
        return output.argmax(axis=1).astype(np.uint8)
    return ((output > threshold) if strict else (output >= threshold)).astype(np.uint8)


@torch.no_grad()
def encode(model, images, batch_size=32):
    """Latent means and log-variances: two arrays (N, *latent_shape)."""
    parts = [as_run(model).model.encode(batch) for batch in model_batches(model, images, batch_size)]
    return (torch.cat([mu for mu, _ in parts]).cpu().numpy(), torch.cat([lv for _, lv in parts]).cpu().numpy())


def _images(batch):
    """(B, 1, H, W) -> (B, H, W); K-phase (B, K, H, W) stays."""
    return batch[:, 0] if batch.shape[1] == 1 else batch


@torch.no_grad()
def decode(model, latents, batch_size=64):
    """Images (N, H, W) in [0, 1] decoded from latent codes (N, *latent_shape); (N, K, H, W) phase
    probabilities for a K-phase model."""
    run = as_run(model)
    z = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
    return _images(torch.cat([run.model.decode(chunk.to(run.device)).cpu() for chunk in z.split(batch_size)])).numpy()


@torch.no_grad()
def roundtrip(model, images, batch_size=32):
    """(inputs as the model saw them, reconstructions), each (N, H, W) float32 (K-phase model: each
    (N, K, H, W), one-hot inputs and phase probabilities); eval mode, so z = mu."""
    inputs, recons = [], []
    net = as_run(model).model
    for batch in model_batches(model, images, batch_size):
        inputs.append(_images(batch).cpu().numpy())
        recons.append(_images(net(batch)[0]).float().cpu().numpy())
    return np.concatenate(inputs), np.concatenate(recons)
