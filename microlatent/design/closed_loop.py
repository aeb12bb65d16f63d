"""The closed loop: latent codes decoded, thresholded (K phases: the most probable phase per pixel) and
homogenized by the FE solver, so a regressor (and a design search) sees what the solver sees after
thresholding, not the labels of the images the codes came from.

    solved_properties(images, phases) -> (N, 5) in PROPERTY_NAMES order
    decoded_properties(run, codes, phases) -> (y (N, 5), images uint8 (N, H, W))
    closed_loop_codes(codes, n_prior, n_mix, seed) -> codes to fit a closed-loop regressor on, origin
"""

from __future__ import annotations

import numpy as np

from microlatent.design.labels import DEFAULT_PHASES
from microlatent.design.regression import PROPERTY_NAMES

THRESHOLD = 0.5  # decoded probability -> phase 1


def solved_properties(images, phases=None) -> np.ndarray:
    """(N, 5) properties in PROPERTY_NAMES order of phase-label images (N, H, W), homogenized with
    ``phases`` (``{"E", "nu", "plane"}``, one modulus per phase; default 10 / 1, 0.3, plane stress)."""
    from microlatent.properties.homogenize import homogenize_elastic

    phases = phases or DEFAULT_PHASES
    r = homogenize_elastic(images, E=tuple(phases["E"]), nu=tuple(phases["nu"]), plane=phases.get("plane", "stress"))
    return np.stack([np.atleast_1d(r[k]) for k in PROPERTY_NAMES], axis=1)


def decoded_properties(model, codes, phases=None, threshold=THRESHOLD, batch_size=64):
    """Properties of the decoded latent codes after thresholding: ``(y (N, 5), images uint8 (N, H, W))``.

    Each code is decoded, thresholded at ``threshold`` (probability of phase 1 above it; a K-phase
    model's most probable phase per pixel) and homogenized with ``phases`` (``{"E", "nu", "plane"}``,
    one modulus per phase; default 10 / 1, 0.3, plane stress)."""
    from microlatent.evaluation.inference import decode, phase_labels

    codes = np.asarray(codes, dtype=np.float32)
    if len(codes) == 0:
        return np.zeros((0, len(PROPERTY_NAMES))), np.zeros((0, 0, 0), np.uint8)
    labels = phase_labels(decode(model, codes, batch_size), threshold, strict=True)
    return solved_properties(labels, phases), labels


def closed_loop_codes(codes, n_prior, n_mix, seed=0):
    """Latent codes for the closed-loop regressor: the data codes, ``n_prior`` draws from the standard
    normal prior and ``n_mix`` random convex mixtures of two data codes (points between data, where a
    design search travels). Returns (codes (M, ...), origin list of "data"/"prior"/"mix")."""
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes, dtype=np.float32)
    prior = rng.standard_normal((n_prior,) + codes.shape[1:]).astype(np.float32)
    a, b = rng.integers(0, len(codes), (2, n_mix))
    w = rng.uniform(0, 1, (n_mix,) + (1,) * (codes.ndim - 1)).astype(np.float32)
    mix = w * codes[a] + (1 - w) * codes[b]
    origin = ["data"] * len(codes) + ["prior"] * n_prior + ["mix"] * n_mix
    return np.concatenate([codes, prior, mix]), origin
