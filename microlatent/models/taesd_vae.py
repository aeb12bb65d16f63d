"""TAESD-style convolutional VAE (Cai et al. 2025, Sec. 3.3 and Fig. 5; madebyollin/taesd).

Stages of skip-connected conv Blocks; each encoder stage downsamples by 2 (conv stride 2, no bias),
each decoder stage upsamples by 2 (nearest + conv, no bias). With 4 stages a 224 x 224 image maps to
a 14 x 14 x latent_channels grid of (mu, logvar); generally (H / 16, W / 16).

Layout (w = width, d = depth, L = latent_channels; every conv 3x3 unless said):
    encoder  conv(1, w), d x Block, 4 x [conv(w, w, stride 2, no bias), d x Block], conv(w, 2L)
             -> split into mu, logvar, each (N, L, H/16, W/16)
    decoder  tanh(z / 3) * 3, conv(L, w), ReLU, 4 x [d x Block, nearest x2, conv(w, w, no bias)],
             d x Block, conv(w, 1), sigmoid -> (N, 1, H, W), probability of phase 1
Block(n_in, n_out) = ReLU(conv-ReLU-conv-ReLU-conv(x) + skip(x)); skip = 1x1 conv (no bias) when
n_in != n_out, else identity. This is TAESD's encoder/decoder with 4 instead of 3 stages, d Blocks per
stage instead of 3 (Cai et al.'s "depth"), one grey input/output channel, 2L encoder outputs and a
sigmoid at the end.

Defaults: width 64 (TAESD), depth 1 (Cai et al. Fig. 5), latent_channels 4 (TAESD); about 1.4 M
parameters.
"""

import torch
import torch.nn as nn

from microlatent.errors import InputError
from microlatent.models.common import VAE, Probabilities, check_images, check_positive_int

INITIAL_LOGVAR = -4.0
RESIDUAL_SCALE = 0.1


def conv(n_in, n_out, **kwargs):
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3): tanh(x / 3) * 3."""

    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """(N, n_in, H, W) -> (N, n_out, H, W): ReLU(conv-ReLU-conv-ReLU-conv(x) + skip(x))."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x):
        return self.fuse(self.conv(x) + self.skip(x))


def Encoder(latent_channels=4, width=64, depth=1, stages=4, channels=1):
    """(N, channels, H, W) -> (N, 2 * latent_channels, H / 2**stages, W / 2**stages)."""
    layers = [conv(channels, width)] + [Block(width, width) for _ in range(depth)]
    for _ in range(stages):
        layers += [conv(width, width, stride=2, bias=False)] + [Block(width, width) for _ in range(depth)]
    return nn.Sequential(*layers, conv(width, 2 * latent_channels))


def Decoder(latent_channels=4, width=64, depth=1, stages=4, channels=1):
    """(N, latent_channels, h, w) -> (N, channels, h * 2**stages, w * 2**stages): one channel of phase-1
    probabilities (sigmoid), or ``channels`` phase probabilities summing to 1 (softmax)."""
    layers = [Clamp(), conv(latent_channels, width), nn.ReLU()]
    for _ in range(stages):
        layers += [Block(width, width) for _ in range(depth)]
        layers += [nn.Upsample(scale_factor=2), conv(width, width, bias=False)]
    layers += [Block(width, width) for _ in range(depth)]
    return nn.Sequential(*layers, conv(width, channels), Probabilities())


class TaesdVAE(VAE):
    """TAESD-style VAE for grey images (N, 1, H, W) in [0, 1], H and W divisible by 2**stages (16);
    with ``phases`` K > 2, for phase probabilities (N, K, H, W) (one-hot in, softmax out).

    encode(x) -> mu, logvar, each (N, latent_channels, H / 16, W / 16); decode(z) -> (N, 1 or K, H, W).
    """

    name = "taesd_vae"

    def __init__(self, latent_channels=4, width=64, depth=1, stages=4, phases=2):
        super().__init__()
        check_positive_int(self.name, latent_channels=latent_channels, width=width, depth=depth, stages=stages)
        self.config = dict(name=self.name, latent_channels=latent_channels, width=width, depth=depth, stages=stages)
        self.set_phases(phases)
        self.latent_channels, self.factor = latent_channels, 2**stages
        self.encoder = Encoder(latent_channels, width, depth, stages, self.channels)
        self.decoder = Decoder(latent_channels, width, depth, stages, self.channels)
        self._initialise()

    def _initialise(self):
        """He initialisation for the convs that feed a ReLU, x0.1 for the last conv of every Block's
        residual branch, PyTorch's default for the two output convs (mu/logvar and the pixel logits, so
        the first reconstruction sits near 0.5), and a narrow initial posterior (logvar = -4).

        With PyTorch's default init everywhere the signal shrinks through the unnormalised stack: mu
        starts ~1e-3 while the sampling noise has std 1, and training sits on a plateau at the mean.
        """
        outputs = (self.encoder[-1], self.decoder[-2])  # decoder[-1] is the sigmoid (softmax)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and not any(module is out for out in outputs):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, Block):
                # Each Block starts close to identity + ReLU (a down-scaled residual branch, in the spirit
                # of Fixup): otherwise the variance grows with every Block and depth >= 2 overflows.
                with torch.no_grad():
                    module.conv[-1].weight.mul_(RESIDUAL_SCALE)
        with torch.no_grad():
            self.encoder[-1].bias[self.latent_channels :] = INITIAL_LOGVAR

    def output_layer(self):
        return self.decoder[-2]  # decoder[-1] is the sigmoid

    def latent_shape(self, image_size):
        """(C, h, w) of the latent of an image_size (int or (H, W)) image."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % self.factor or w % self.factor or h <= 0 or w <= 0:
            raise InputError(f"{self.name}: image size {h} x {w} is not divisible by {self.factor}")
        return (self.latent_channels, h // self.factor, w // self.factor)

    def encode(self, x):
        check_images(x, self.name, channels=(self.channels,), multiple=self.factor)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        if not isinstance(z, torch.Tensor) or z.ndim != 4 or z.shape[1] != self.latent_channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise InputError(f"{self.name}: decode expects latents (N, {self.latent_channels}, h, w), got {shape}")
        return self.decoder(z)
