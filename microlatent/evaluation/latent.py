"""Walking the latent space of a trained model: traversals, samples from the prior, interpolation.

Traversal (TextureVAE, Sardeshmukh et al. 2021, Fig. 6): encode an image (z = mu), then for one latent
dimension i decode z' with z'[i] = v for v in linspace(-4, 4, 10) and every other dimension kept.
For spatial latents (C, h, w) -- the TAESD-style models -- the unit varied is a channel: z'[c, :, :] = v
at every position at once (the channel set uniformly to v), every other channel kept.
Which units: the ``n`` with the largest variance of mu over the evaluated samples (the most used
ones), in decreasing order; for spatial latents the variance is over samples and positions.
"""

from __future__ import annotations

import numpy as np

from microlatent.errors import InputError
from microlatent.evaluation.inference import decode, encode

TRAVERSAL_VALUES = np.linspace(-4.0, 4.0, 10)


def most_used_units(mu, n=4):
    """Indices of the ``n`` latent units (dimensions of (N, D) codes, channels of (N, C, h, w) codes)
    whose mean code varies most over the samples, largest first."""
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim == 2:
        spread = mu.var(axis=0)
    elif mu.ndim == 4:
        spread = mu.transpose(1, 0, 2, 3).reshape(mu.shape[1], -1).var(axis=1)
    else:
        raise InputError(f"latent codes must be (N, D) or (N, C, h, w), got shape {mu.shape}")
    return [int(i) for i in np.argsort(-spread, kind="stable")[:n]]


def traversal_codes(code, unit, values=TRAVERSAL_VALUES):
    """Copies of one latent code (D,) or (C, h, w) with ``unit`` (a dimension, or a channel set at every
    position) replaced by each of ``values``: (len(values), *code.shape)."""
    code = np.asarray(code, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if code.ndim not in (1, 3):
        raise InputError(f"a latent code must be (D,) or (C, h, w), got shape {code.shape}")
    if not 0 <= unit < code.shape[0]:
        raise InputError(f"latent unit {unit} outside 0..{code.shape[0] - 1}")
    codes = np.repeat(code[None], len(values), axis=0)
    codes[:, unit] = values.reshape(-1, *([1] * (code.ndim - 1)))
    return codes


def traversal(model, image, units, values=TRAVERSAL_VALUES):
    """Decoded traversals of ``image``: {unit: (len(values), H, W)}."""
    mu, _ = encode(model, [image])
    return {unit: decode(model, traversal_codes(mu[0], unit, values)) for unit in units}


def prior_samples(model, latent_shape, n=8, seed=0):
    """Decoded draws z ~ N(0, I) of shape ``latent_shape`` (the shape of one code): (n, H, W)."""
    z = np.random.default_rng(seed).standard_normal((n, *latent_shape)).astype(np.float32)
    return decode(model, z)


def interpolation(model, image_a, image_b, steps=8):
    """Decoded z = (1 - t) mu_a + t mu_b for t in linspace(0, 1, steps): (t values, (steps, H, W))."""
    mu, _ = encode(model, [image_a, image_b])
    t = np.linspace(0.0, 1.0, steps)
    shape = (-1,) + (1,) * (mu.ndim - 1)
    codes = (1 - t.reshape(shape)) * mu[0][None] + t.reshape(shape) * mu[1][None]
    return t, decode(model, codes.astype(np.float32))
