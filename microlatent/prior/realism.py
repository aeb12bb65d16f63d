"""How realistic generated microstructures are, measured against held-out real ones of the same class.

Two-sample distances in statistics space, each against two references:
- the **floor**: two disjoint real sets of the class (the training split against the test split),
  what a perfect generator scores at this sample size;
- **N(0, I)**: the VAE's decoder applied to standard normal draws (TextureVAE-style sampling).

Distances (all between sets of binary images):
- ``frechet``: Fréchet distance between Gaussians fitted to the images' codes under a PCA of the
  periodic phase-1 autocorrelation (fitted on real training images of every class), the FID recipe
  with statistics in place of Inception features;
- ``vf``: Wasserstein-1 distance between the volume-fraction distributions;
- ``length``: Wasserstein-1 distance between the autocorrelation-length distributions (the radius
  where the radially averaged, normalised autocovariance first falls below 1/e).

K phases (label images 0..K-1): the PCA is of all K autocorrelations, concatenated; ``vf`` and
``length`` are the means over the K phases of each phase's Wasserstein-1 distance (for two phases
both phases' distances equal phase 1's), and ``vf_per_phase`` / ``length_per_phase`` list them.

``class_accuracy``: a 1-nearest-neighbour classifier on the PCA codes of the real training images
names each image's class; generated images should be named as the class they were asked for about as
often as real test images are.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from scipy.stats import wasserstein_distance

from microlatent.stats.correlation import two_point


def autocorrelation_length(images) -> np.ndarray:
    """(N,) radius in pixels where each image's radially averaged normalised autocovariance
    (f11(r) - v^2) / (v - v^2) first drops below 1/e (the largest radius if it never does; 0 for a
    single-phase image)."""
    images = np.asarray(images, dtype=np.float64)
    f = two_point(images, pairs=[(1, 1)])[:, 0]  # centred maps (N, H, W)
    H, W = f.shape[1:]
    yy, xx = np.indices((H, W))
    radius = np.hypot(yy - H // 2, xx - W // 2).round().astype(int)
    counts = np.bincount(radius.ravel())
    out = np.zeros(len(images))
    for i, fi in enumerate(f):
        v = fi[H // 2, W // 2]
        if v <= 0 or v >= 1:
            continue
        profile = (np.bincount(radius.ravel(), fi.ravel()) / counts - v * v) / (v - v * v)
        below = np.flatnonzero(profile[: min(H, W) // 2] < np.exp(-1))
        if len(below) == 0:
            out[i] = min(H, W) // 2
            continue
        k = below[0]  # interpolate between k - 1 and k
        a, b = profile[k - 1], profile[k]
        out[i] = k - 1 + (a - np.exp(-1)) / (a - b) if a != b else k
    return out


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # a tiny ridge keeps sqrtm defined for singular covariances (fewer samples than dimensions, or a
    # constant feature), as FID implementations do
    ridge = np.eye(len(cov_a)) * 1e-9 * max(np.trace(cov_a), np.trace(cov_b), 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = np.real(linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


class StatisticsSpace:
    """PCA of the phase-1 autocorrelation (K phases: of every autocorrelation) fitted on real images,
    with the labelled real codes for a 1-NN class check."""

    def __init__(self, real_images, real_classes, n_components=10, n_phases=2):
        from microlatent.stats import StatisticsPCA

        self.n_phases = n_phases
        pairs = None if n_phases == 2 else "auto"
        self.pca = StatisticsPCA(min(n_components, len(real_images) - 1), pairs=pairs, n_phases=n_phases)
        self.pca.fit(np.asarray(real_images, np.float64))
        self.codes = self.pca.transform(np.asarray(real_images, np.float64))
        self.classes = np.asarray(real_classes)

    def features(self, images) -> np.ndarray:
        return self.pca.transform(np.asarray(images, dtype=np.float64))

    def classify(self, images) -> np.ndarray:
        codes = self.features(images)
        nearest = ((codes[:, None, :] - self.codes[None]) ** 2).sum(-1).argmin(axis=1)
        return self.classes[nearest]


def distances(space, a, b) -> dict:
    """{"frechet", "vf", "length"} between image sets a and b (K phases: also "vf_per_phase" and
    "length_per_phase"; "vf" and "length" are their means)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # the phase-1 images of two phases; the indicator of each phase of K
    phases = [(a, b)] if space.n_phases == 2 else [(a == h, b == h) for h in range(space.n_phases)]
    vf = [float(wasserstein_distance(x.mean(axis=(1, 2)), y.mean(axis=(1, 2)))) for x, y in phases]
    length = [float(wasserstein_distance(autocorrelation_length(x), autocorrelation_length(y))) for x, y in phases]
    out: dict = {"frechet": frechet_distance(space.features(a), space.features(b)), "vf": vf[0], "length": length[0]}
    if len(phases) > 1:
        out.update(vf=float(np.mean(vf)), length=float(np.mean(length)), vf_per_phase=vf, length_per_phase=length)
    return out
