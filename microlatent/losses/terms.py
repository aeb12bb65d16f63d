"""Loss terms of the papers. Images are (N, 1, H, W) or (N, H, W) phase-1 probabilities in [0, 1];
every term returns a scalar averaged over the batch.

Statistics terms compare 2-point statistics of the input (target) and the reconstruction; with all
ordered phase pairs f(., . | r) is a probability distribution over pairs at every offset r.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from microlatent.errors import InputError
from microlatent.stats import two_point

# Smallest statistic the cross-entropy takes the log of: FFT roundoff can give values <= 0.
LOG_FLOOR = 1e-6


def mse(recon, target):
    """Mean squared error on pixels (Cai eq. 6)."""
    return torch.mean((recon - target) ** 2)


def msess(recon, target, periodic=True, pairs="all", crop=None, indicator_sigma=None):
    """MSE on statistics, Cai eq. 7: mean over offsets r of sum over pairs of (f_in - f_recon)^2.

    ``indicator_sigma``: the statistics of both images are taken of Hashemi et al.'s soft phase
    indicator exp(-(1 - x)^2 / (2 sigma^2)) (phase 1; their code uses sigma 0.25) instead of the
    values themselves. A pixel then counts as phase 1 only near 1 (0.9 -> 0.92, 0.5 -> 0.14 at 0.25).
    It needs 2 phases (``pairs`` of phase 1 only)."""
    if indicator_sigma is not None:
        if isinstance(pairs, str) or [tuple(pair) for pair in pairs] != [(1, 1)]:
            raise InputError(f"msess: indicator_sigma needs pairs [[1, 1]], got {pairs!r}")
        if not (isinstance(indicator_sigma, (int, float)) and math.isfinite(indicator_sigma) and indicator_sigma > 0):
            raise InputError(f"msess: indicator_sigma must be a positive number, got {indicator_sigma!r}")
        recon, target = soft_indicator(recon, indicator_sigma), soft_indicator(target, indicator_sigma)
    f_in = two_point(target, periodic=periodic, pairs=pairs, crop=crop, validate=False)
    f_recon = two_point(recon, periodic=periodic, pairs=pairs, crop=crop, validate=False)
    return msess_from_stats(f_in, f_recon)


def soft_indicator(x, sigma):
    """exp(-(1 - x)^2 / (2 sigma^2)): ~1 where x is near 1, falling off with the distance from it."""
    return torch.exp(-((1 - x) ** 2) / (2 * sigma**2))


def soft_indicator_inverse(value, sigma):
    """The x in [0, 1] whose :func:`soft_indicator` is ``value`` (a float in (0, 1]), 1 - sigma sqrt(-2 ln
    value); 0 where the indicator never gets that low (its least value, at x = 0, is exp(-1 / 2 sigma^2))."""
    return max(1.0 - sigma * math.sqrt(-2.0 * math.log(value)), 0.0)


def msess_from_stats(f_target, f_recon, reduction="mean"):
    """Cai eq. 7 on statistics maps (N, K, H', W') (or (K, H', W')) of the same pairs and offsets:
    mean over offsets of the sum over pairs of (f_target - f_recon)^2. Tensors or NumPy arrays;
    ``reduction="none"`` keeps one value per map of a batch, ``"mean"`` averages the batch."""
    per_map = ((f_target - f_recon) ** 2).sum(-3).mean((-2, -1))
    return _reduce(per_map, reduction)


def cess(recon, target, periodic=True, crop=None):
    """Cross-entropy on statistics, Cai eq. 8 (eq. 11 with ``crop``):
    -(1/|Omega_r|) sum_r sum_{h,h'} f_in(h,h'|r) log f_recon(h,h'|r), over all ordered pairs.

    Its minimum over reconstructions is reached at f_recon = f_in, where it equals the entropy of
    f_in; ``cess`` is not zero there.
    """
    f_in = two_point(target, periodic=periodic, pairs="all", crop=crop, validate=False)
    f_recon = two_point(recon, periodic=periodic, pairs="all", crop=crop, validate=False)
    return cess_from_stats(f_in, f_recon)


def cess_from_stats(f_target, f_recon, reduction="mean"):
    """Cai eq. 8 on statistics maps (N, K, H', W') (or (K, H', W')) of all ordered pairs:
    -mean over offsets of sum over pairs of f_target log f_recon, with f_recon floored at
    ``LOG_FLOOR``. Tensors or NumPy arrays; ``reduction`` as in :func:`msess_from_stats`."""
    if isinstance(f_recon, torch.Tensor):
        log_recon = torch.log(f_recon.clamp_min(LOG_FLOOR))
    else:
        log_recon = np.log(np.maximum(f_recon, LOG_FLOOR))
    per_map = -(f_target * log_recon).sum(-3).mean((-2, -1))
    return _reduce(per_map, reduction)


def entropy_from_stats(f, reduction="mean"):
    """Entropy of statistics maps of all ordered pairs, -mean over offsets of sum over pairs of f log f
    (0 log 0 = 0; FFT roundoff below 0 counts as 0). It is CESS's floor: ``cess_from_stats(f, f)``
    equals it up to the log floor. Shapes and ``reduction`` as in :func:`cess_from_stats`."""
    if isinstance(f, torch.Tensor):
        p = f.clamp_min(0)
        plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    else:
        p = np.maximum(f, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return _reduce(-plogp.sum(-3).mean((-2, -1)), reduction)


def excess_cess_from_stats(f_target, f_recon, reduction="mean"):
    """CESS minus the target's own entropy: the mean over offsets of KL(f_target || f_recon), >= 0
    (up to the log floor), 0 for a perfect match.

    What differs between models: on MICRO2D-like images ~99 % of CESS is the target's entropy, the
    same for every model, so raw CESS means hide the differences that this shows.
    """
    per_map = cess_from_stats(f_target, f_recon, "none") - entropy_from_stats(f_target, "none")
    return _reduce(per_map, reduction)


def js_divergence_from_stats(f_a, f_b, reduction="mean"):
    """Jensen-Shannon divergence between two statistics maps of all ordered pairs, mean over offsets
    (nats, between 0 and log 2). Symmetric and finite without a log floor, so it scores binary
    reconstructions, whose statistics are exactly 0 at offsets where a phase pair never occurs (CESS
    there adds 13.8 f_in from ``LOG_FLOOR`` alone)."""
    if isinstance(f_a, torch.Tensor):
        f_a, f_b = f_a.clamp_min(0), f_b.clamp_min(0)
    else:
        f_a, f_b = np.maximum(f_a, 0), np.maximum(f_b, 0)
    m = (f_a + f_b) / 2
    per_map = entropy_from_stats(m, "none") - (entropy_from_stats(f_a, "none") + entropy_from_stats(f_b, "none")) / 2
    return _reduce(per_map, reduction)


def _reduce(per_map, reduction):
    if reduction == "none":
        return per_map
    if reduction == "mean":
        return per_map.mean()
    raise InputError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def clamp(recon, sigma=0.05):
    """Clamp loss, Cai eq. 9: negative log-likelihood of a two-component Gaussian mixture at 0 and 1,
    -log(exp(-x^2 / 2 sigma) + exp(-(x - 1)^2 / 2 sigma)), averaged over pixels (eq. 9 sums; a mean
    keeps weights independent of image size) and shifted so that a binary image scores 0."""
    x = recon
    log_mix = torch.logaddexp(-(x**2) / (2 * sigma), -((x - 1) ** 2) / (2 * sigma))
    best = math.log1p(math.exp(-1 / (2 * sigma)))  # log_mix at x = 0 or 1
    return (best - log_mix).mean()


def kl(mu, logvar):
    """KL divergence of N(mu, exp(logvar)) from N(0, I), summed over latent dimensions, mean over batch."""
    return -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / mu.shape[0]
