"""Reconstruction by gradient descent on a pixel field (after Cai et al. 2025, §3.2, Figs. 2-3).

Logits z are optimised by Adam (learning rate ``lr`` decaying geometrically to ``lr * lr_end``);
the field is x = sigmoid(beta z) (2 phases: probability of phase 1)
or softmax(beta z) over phases (C phases). The loss is the statistics loss (CESS, eq. 8, taken as the
excess over its minimum, the target's entropy, or MSESS, eq. 7), divided by its value for an image
without structure at the target volume fractions, plus w * clamp (eq. 9, on every phase probability).

Schedule over progress t in [0, 1] (steps done, or time used, whichever is further):
    t < soft_until                 statistics only: beta = 1, w = 0
    soft_until <= t < hard_from    beta rises geometrically to beta_max and w from w_start to w_end
    t >= hard_from                 straight-through: the statistics are those of the binary image
                                   (phase-1 pixels = the highest logits, as many as the volume
                                   fraction asks; C phases: argmax), the gradient that of the field
Then the binary image is taken as the result; optionally a greedy pixel-swap polish follows
(``microlatent.reconstruction.swaps``). Every sample of a call is optimised in one batch.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from microlatent.device import resolve_device
from microlatent.losses.terms import LOG_FLOOR, cess_from_stats, clamp, msess_from_stats
from microlatent.reconstruction.target import TargetStatistics
from microlatent.stats import two_point

DEFAULTS = {
    "lr": 0.3,
    "lr_end": 1.0,
    "beta_max": 8.0,
    "clamp_start": 1e-3,
    "clamp_end": 0.3,
    "sigma": 0.05,
    "soft_until": 0.5,
    "hard_from": 0.85,
    "init_noise": 1.0,
    "noise": 0.0,
}


def field_of(logits, n_phases, beta):
    """The soft field: (N, H, W) phase-1 probabilities (2 phases) or (N, C, H, W) probabilities."""
    if n_phases == 2:
        return torch.sigmoid(beta * logits)
    return torch.softmax(beta * logits, dim=1)


def harden(logits, n_phases, counts=None):
    """Binary image from logits: (N, H, W) 0/1 float (2 phases) or (N, C, H, W) one-hot.

    counts : phase-1 pixels per image (2 phases; the highest logits win, so the volume fraction is
    exact); None thresholds at 0 (C phases: argmax).
    """
    if n_phases == 2:
        if counts is None:
            return (logits > 0).to(logits.dtype)
        flat = logits.flatten(1)
        hard = torch.zeros_like(flat)
        if counts > 0:
            top = torch.topk(flat, int(counts), dim=1).indices
            hard.scatter_(1, top, 1.0)
        return hard.view_as(logits)
    return torch.nn.functional.one_hot(logits.argmax(1), n_phases).permute(0, 3, 1, 2).to(logits.dtype)


def labels_of(hard, n_phases) -> np.ndarray:
    """(N, H, W) uint8 phase labels of a binary batch from :func:`harden`."""
    if n_phases == 2:
        return hard.detach().cpu().numpy().round().astype(np.uint8)
    return hard.argmax(1).detach().cpu().numpy().astype(np.uint8)


def warm_up(target: TargetStatistics, n_samples=1, device="cpu"):
    """One optimiser step on the statistics at the run's shape, untimed. In a fresh process the first
    torch.optim.Adam imports torch._dynamo (~1 s; 3 s on a loaded machine) and the first FFT at a size
    plans it: a time budget is for the search, not for that."""
    device = resolve_device(device)
    shape = (n_samples, *target.shape) if target.n_phases == 2 else (n_samples, target.n_phases, *target.shape)
    x = torch.full(shape, 1.0 / target.n_phases, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([x], lr=1e-3)
    two_point(x, periodic=target.periodic, pairs="all", crop=target.crop, validate=False).sum().backward()
    optimiser.step()


def descend(
    target: TargetStatistics,
    n_samples=1,
    steps=None,
    time_limit=None,
    seed=0,
    device="auto",
    loss="cess",
    record_every=10,
    on_progress=None,
    clock=None,
    start_field=None,
    **options,
):
    """Run the schedule; returns (labels (N, H, W) uint8, soft field (N, H, W) or (N, C, H, W) float32,
    soft errors (N,), histories: N lists of {"step", "seconds", "error"} with the error of the binary
    image at that step)."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        from microlatent.errors import InputError

        raise InputError(f"unknown gradient option(s) {unknown} (known: {sorted(DEFAULTS)})")
    opts = {**DEFAULTS, **options}
    if steps is None and time_limit is None:
        raise ValueError("give steps or time_limit")
    device = resolve_device(device)
    start = time.perf_counter()
    clock = clock or (lambda: time.perf_counter() - start)
    began = clock()
    C = target.n_phases
    H, W = target.shape
    generator = torch.Generator().manual_seed(int(seed))
    vf = torch.as_tensor(np.clip(target.volume_fractions, 1e-4, 1 - 1e-4), dtype=torch.float32)
    if C == 2:
        init = torch.logit(vf[1]) + opts["init_noise"] * torch.randn((n_samples, H, W), generator=generator)
    else:
        init = torch.log(vf)[None, :, None, None] + opts["init_noise"] * torch.randn(
            (n_samples, C, H, W), generator=generator
        )
    if start_field is not None:  # continue from a soft field (e.g. the L-BFGS-B stage's)
        init = torch.logit(torch.as_tensor(start_field, dtype=torch.float32).clamp(0.02, 0.98))
    logits = init.to(device).requires_grad_(True)
    f_target = torch.as_tensor(target.statistics, dtype=torch.float32, device=device)[None]
    counts = int(round(float(target.volume_fractions[1]) * H * W)) if C == 2 else None

    def stats_of(x):
        return two_point(x, periodic=target.periodic, pairs="all", crop=target.crop, validate=False)

    if loss == "cess":
        floor = cess_from_stats(f_target, f_target.clamp_min(LOG_FLOOR))

        def stat_loss(f):
            return cess_from_stats(f_target, f, reduction="none") - floor
    elif loss == "msess":

        def stat_loss(f):
            return msess_from_stats(f_target, f, reduction="none")
    else:
        from microlatent.errors import InputError

        raise InputError(f"loss must be 'cess' or 'msess', got {loss!r}")
    with torch.no_grad():
        reference = stat_loss(torch.as_tensor(target.structureless(), dtype=torch.float32, device=device)[None])
        reference = reference.clamp_min(1e-12)

    optimiser = torch.optim.Adam([logits], lr=opts["lr"])
    histories = [[] for _ in range(n_samples)]
    step, beta = 0, 1.0
    while True:
        elapsed = clock() - began
        progress = max(step / steps if steps else 0.0, elapsed / time_limit if time_limit else 0.0)
        if progress >= 1:
            break
        phase = (progress - opts["soft_until"]) / max(opts["hard_from"] - opts["soft_until"], 1e-9)
        phase = min(max(phase, 0.0), 1.0)
        beta = opts["beta_max"] ** phase
        weight = (
            0.0
            if progress < opts["soft_until"]
            else opts["clamp_start"] * (opts["clamp_end"] / opts["clamp_start"]) ** phase
        )
        optimiser.param_groups[0]["lr"] = opts["lr"] * opts["lr_end"] ** progress
        x = field_of(logits, C, beta)
        if progress >= opts["hard_from"]:
            with torch.no_grad():
                hard = harden(logits, C, counts)
            used = hard + x - x.detach()  # straight-through: binary forward, soft gradient
        else:
            used = x
        f = stats_of(used)
        per_sample = stat_loss(f) / reference
        total = per_sample.sum()
        if weight > 0:
            total = total + weight * n_samples * clamp(x, opts["sigma"])
        logits.grad = None
        total.backward()
        optimiser.step()
        if opts["noise"] > 0 and progress < opts["soft_until"]:
            with torch.no_grad():
                amplitude = opts["noise"] * (1 - progress / opts["soft_until"])
                logits.add_(amplitude * torch.randn(logits.shape, generator=generator).to(device))
        if step % record_every == 0:
            with torch.no_grad():
                errors = msess_from_stats(f_target, stats_of(harden(logits, C, counts)), reduction="none").cpu().numpy()
            now = clock()
            for i in range(n_samples):
                histories[i].append({"step": step, "seconds": now, "error": float(errors[i])})
            if on_progress:
                on_progress(progress, float(errors.min()))
        step += 1
    with torch.no_grad():
        soft = field_of(logits, C, beta)
        soft_errors = msess_from_stats(f_target, stats_of(soft), reduction="none").cpu().numpy()
        hard = harden(logits, C, counts)
    labels = labels_of(hard, C)
    if C > 2:
        labels = np.stack([_assign_counts(s, target.volume_fractions) for s in soft.cpu().numpy()])
    return labels, soft.cpu().numpy().astype(np.float32), soft_errors.astype(float), histories, step


def _assign_counts(probabilities, volume_fractions):
    """Labels (H, W) from phase probabilities (C, H, W) with the given volume fractions: the most
    probable (pixel, phase) pairs are taken first, each phase until it is full."""
    C, H, W = probabilities.shape
    quota = np.floor(np.asarray(volume_fractions) * H * W).astype(np.int64)
    quota[np.argmax(np.asarray(volume_fractions) * H * W - quota)] += H * W - quota.sum()
    order = np.argsort(-probabilities.reshape(C, -1), axis=None, kind="stable")
    labels = np.full(H * W, -1, np.int64)
    for flat in order:
        phase, pixel = divmod(int(flat), H * W)
        if labels[pixel] < 0 and quota[phase] > 0:
            labels[pixel] = phase
            quota[phase] -= 1
    return labels.reshape(H, W).astype(np.uint8)
