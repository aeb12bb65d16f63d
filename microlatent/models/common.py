"""Pieces every model shares: the reparameterisation trick, input checks, and the VAE base class.

Every model is a ``VAE``: ``encode(x) -> (mu, logvar)``, ``decode(z) -> recon``,
``forward(x, eps=None) -> (recon, mu, logvar)``, ``latent_shape(image_size)`` and a ``config`` dict (its
constructor arguments plus ``"name"``) from which ``build_model`` rebuilds it.
"""

import functools
import math

import torch
import torch.nn as nn

from microlatent.errors import InputError

# Value of a "where do the initial weights come from" argument (resnet_vae's ``pretrained``,
# texture_vae's ``vgg_weights``) meaning: do not load or warn, the weights come from a checkpoint.
# ``load_model`` passes it; people need not.
FROM_CHECKPOINT = "<checkpoint>"


def reparameterize(mu, logvar, eps=None):
    """Sample z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (drawn here unless given); differentiable in
    mu and logvar.

    mu, logvar (and eps): tensors of one shape, e.g. (N, C, h, w) or (N, D). Returns a tensor of that
    shape. logvar is clamped to [-30, 20] here (only here) so that a diverging encoder cannot overflow exp.
    """
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * eps.to(mu.dtype)


def check_images(x, name, channels=(1,), multiple=None, size=None):
    """Raise InputError unless x is a float tensor (N, C, H, W) with C in channels.

    multiple: H and W must be divisible by it; size: (H, W) must equal (size, size).
    Returns (H, W).
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor of images (N, 1, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in channels:
        want = " or ".join(f"(N, {c}, H, W)" for c in channels)
        raise InputError(f"{name}: expected images {want}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a floating-point tensor in [0, 1], got dtype {x.dtype}")
    h, w = x.shape[-2:]
    if size is not None and (h, w) != (size, size):
        raise InputError(f"{name}: expects {size} x {size} images, got {h} x {w}")
    if multiple is not None and (h % multiple or w % multiple or h == 0 or w == 0):
        raise InputError(f"{name}: image size {h} x {w} is not divisible by {multiple}")
    return h, w


def check_positive_int(name, **values):
    """Raise InputError unless every value is an int >= 1 (bools refused)."""
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name}: {key} must be a positive integer, got {v!r}")


def to_probabilities(logits):
    """(N, C, H, W) output logits -> phase probabilities: sigmoid for one channel (phase 1 of two),
    softmax over the channels for K phases."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


class Probabilities(nn.Module):
    """:func:`to_probabilities` as a layer (the last of a Sequential decoder; no parameters)."""

    def forward(self, logits):
        return to_probabilities(logits)


@functools.cache
def phase_palette(n_phases: int) -> torch.Tensor:
    """(K, 3) RGB colour of each phase: the figures' viridis at k / (K - 1) (see ``plot_phase_statistics``)."""
    from matplotlib import colormaps

    colours = colormaps["viridis"](torch.linspace(0, 1, n_phases).numpy())[:, :3]
    return torch.tensor(colours, dtype=torch.float32)


def as_rgb(x):
    """Images for an ImageNet-trained network (ResNet, VGG-19), which takes RGB in [0, 1]:
    (N, 1, H, W) grey -> the grey in all three channels; (N, K, H, W) phase probabilities (K >= 3) ->
    each pixel's mix of its phases' colours (:func:`phase_palette`), the picture the figures draw.
    With K <= 4 distinct mixes give distinct colours (the palette's points are affinely independent),
    so the network can tell every phase and every blend of phases apart."""
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    palette = phase_palette(x.shape[1]).to(device=x.device, dtype=x.dtype)
    return torch.einsum("nkhw,kc->nchw", x, palette)


class VAE(nn.Module):
    """Base class: subclasses define encode, decode, latent_shape and set self.config.

    forward(x) -> (recon, mu, logvar). In training mode z is sampled with the reparameterisation
    trick; in eval mode z = mu, so eval-mode forward is deterministic.
    """

    name: str | None = None
    n_phases: int = 2  # K > 2: inputs and outputs are (N, K, H, W) phase probabilities
    config: dict  # constructor arguments and "name" (build_model rebuilds the model from it)

    def forward(self, x, eps=None):
        """(recon, mu, logvar). In training mode z = mu + exp(logvar / 2) * eps with ``eps`` (shape of
        mu) as given, e.g. by data-parallel training, which draws one global batch's noise; drawn
        here otherwise."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, eps) if self.training else mu
        return self.decode(z), mu, logvar

    @property
    def channels(self) -> int:
        """Image channels: 1 for two phases (the phase-1 probability, sigmoid), K for more (softmax)."""
        return 1 if self.n_phases == 2 else self.n_phases

    def set_phases(self, phases) -> int:
        """Check ``phases`` (the number of phases K, an int in 2..255; InputError otherwise), record it
        in ``config`` when K > 2 (absent for two phases, so checkpoints from before n-phase support
        stay the same) and set ``n_phases``. Returns :attr:`channels`."""
        if isinstance(phases, bool) or not isinstance(phases, int) or not 2 <= phases <= 255:
            raise InputError(f"{self.name}: phases must be an integer in 2..255, got {phases!r}")
        if phases > 2:
            self.config["phases"] = phases
        self.n_phases = phases
        return self.channels

    def output_layer(self):
        """The layer whose outputs the final sigmoid turns into phase-1 probabilities (subclasses)."""
        raise NotImplementedError

    def latent_shape(self, image_size) -> tuple:
        """Shape of one latent code of an image_size (int or (H, W)) image (subclasses)."""
        raise NotImplementedError

    def start_output_at(self, volume_fraction):
        """Set the output layer's bias to logit(volume_fraction), so an untrained decoder already
        predicts the data's mean phase-1 share everywhere. Returns the bias set.

        Why: a decoder that starts at 0.5 grey on data of volume fraction ~0.1 spends its first
        thousands of steps moving the output's mean; the encoder gets no useful signal meanwhile and
        the posterior collapses (one active latent unit of nine on the lines set). The fraction is
        clipped to [1e-3, 1 - 1e-3]. A K-phase model takes the list of every phase's share.
        """
        if self.n_phases > 2:  # softmax output: bias_k = log share_k, so softmax(bias) = the shares
            shares = [min(max(float(v), 1e-3), 1.0) for v in volume_fraction]
            biases = [math.log(v / sum(shares)) for v in shares]
            with torch.no_grad():
                self.output_layer().bias.copy_(torch.tensor(biases))
            return biases
        vf = min(max(float(volume_fraction), 1e-3), 1 - 1e-3)
        bias = math.log(vf / (1 - vf))
        with torch.no_grad():
            self.output_layer().bias.fill_(bias)
        return bias

    def num_parameters(self, trainable_only=False):
        """Number of parameters (of those with requires_grad, if trainable_only)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class FixedSizeVAE(VAE):
    """A VAE built for one image size (self.image_size) with a flat latent of self.latent_dim."""

    def latent_shape(self, image_size=None):
        """(latent_dim,); image_size, if given, must be this model's image_size."""
        if image_size is not None and image_size != self.image_size and image_size != (self.image_size,) * 2:
            raise InputError(f"{self.name}: built for {self.image_size} x {self.image_size} images, got {image_size}")
        return (self.latent_dim,)
