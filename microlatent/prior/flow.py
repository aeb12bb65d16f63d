"""A learned prior over a VAE's latent grids: conditional flow matching, in one short file.

Why flow matching and not diffusers' DDPM schedulers: the whole method is the two lines of
:func:`flow_matching_loss` (a straight path from noise to data, the network predicts its velocity)
and the Euler loop of :meth:`LatentFlow.sample`; a scheduler library would add a dependency, a
noise schedule and a parameterisation to choose, for nothing this small model needs (Lipman et al.
2023; Liu et al. 2023, "rectified flow").

    net = LatentFlow(latent_shape=(4, 4, 4), n_classes=10, n_properties=2)
    loss = flow_matching_loss(net, z1, classes, props, prop_mask)     # z1: normalised latents (B, C, h, w)
    z = net.sample(n, classes, props, prop_mask, steps=50, guidance=1.0, seed=0)

Conditioning: a class index (``n_classes`` means "no class") and a vector of standardised property
values with a mask (0 = not given). Training drops each condition with probability ``p_drop``, so one
network is conditional and unconditional, and sampling mixes them (classifier-free guidance, Ho &
Salimans 2022), one scale per condition: v = v_free + g_class (v_class - v_free) + g_props (v_class,props -
v_class).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def time_features(t, dim):
    """(B, dim) sinusoidal features of times t (B,) in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t[:, None].float() * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Block(nn.Module):
    """Residual 3x3 conv block whose features are scaled and shifted by the condition (FiLM)."""

    def __init__(self, channels, cond_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, cond):
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(self.norm1(x)))
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return x + self.conv2(h)


class LatentFlow(nn.Module):
    """Velocity network v(z_t, t | class, properties) on latent grids (B, C, h, w)."""

    def __init__(self, latent_shape, n_classes=0, n_properties=0, width=64, depth=4, p_drop=0.1, property_mlp=True):
        super().__init__()
        self.config = {
            "latent_shape": [int(v) for v in latent_shape],
            "n_classes": int(n_classes),
            "n_properties": int(n_properties),
            "width": int(width),
            "depth": int(depth),
            "p_drop": float(p_drop),
            "property_mlp": bool(property_mlp),
        }
        channels = int(latent_shape[0])
        cond = 4 * width
        self.time = nn.Sequential(nn.Linear(width, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.classes = nn.Embedding(n_classes + 1, cond)  # index n_classes: no class given
        # properties through a small MLP, as the time: a single linear map of a scalar gives the blocks
        # one direction to read it from, and samples then missed their targets by a biased ~0.25 std
        self.properties = None
        if n_properties and property_mlp:
            self.properties = nn.Sequential(nn.Linear(2 * n_properties, cond), nn.SiLU(), nn.Linear(cond, cond))
        elif n_properties:  # priors saved before the MLP
            self.properties = nn.Linear(2 * n_properties, cond)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(Block(width, cond) for _ in range(depth))
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    @property
    def null_class(self) -> int:
        return self.config["n_classes"]

    def condition(self, t, classes, props, mask):
        cond = self.time(time_features(t, self.config["width"])) + self.classes(classes)
        if self.properties is not None:
            cond = cond + self.properties(torch.cat([props * mask, mask], dim=1))
        return F.silu(cond)

    def forward(self, z, t, classes, props=None, mask=None):
        """Velocity (B, C, h, w) at z (B, C, h, w), times t (B,), classes (B,) long, props and mask
        (B, P) (zeros when the network has no property input)."""
        if props is None:
            props = mask = z.new_zeros(len(z), self.config["n_properties"])
        cond = self.condition(t, classes, props, mask)
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(h)

    def drop_conditions(self, classes, mask, generator=None):
        """Training-time condition dropout (classifier-free guidance): each image loses its class and,
        independently, all its properties with probability ``p_drop``."""
        p = self.config["p_drop"]
        drop_class = torch.rand(len(classes), generator=generator, device=classes.device) < p
        drop_props = torch.rand(len(classes), generator=generator, device=classes.device) < p
        classes = torch.where(drop_class, torch.full_like(classes, self.null_class), classes)
        return classes, mask * (~drop_props)[:, None].to(mask.dtype)

    @torch.no_grad()
    def sample(
        self,
        n,
        classes=None,
        props=None,
        mask=None,
        steps=50,
        guidance=1.0,
        seed=0,
        device="cpu",
        property_guidance=None,
    ):
        """(n, C, h, w) normalised latents, integrating dz/dt = v from N(0, I) at t = 0 to t = 1 with
        ``steps`` Euler steps. The same seed gives the same samples.

        Guidance is compositional (one scale per condition): v = v_free + guidance (v_class - v_free)
        + property_guidance (v_class,props - v_class), where v_class is conditioned on the class only and
        v_free on nothing. 1 is plain conditional sampling (the most realistic); larger scales follow the
        condition more closely. ``property_guidance`` None: the same as ``guidance``.
        """
        shape = (n, *self.config["latent_shape"])
        z = torch.randn(shape, generator=torch.Generator().manual_seed(int(seed))).to(device)
        classes = torch.full((n,), self.null_class, dtype=torch.long) if classes is None else classes
        P = self.config["n_properties"]
        props = torch.zeros(n, P) if props is None else props
        mask = torch.zeros(n, P) if mask is None else mask
        classes, props, mask = classes.to(device), props.to(device).float(), mask.to(device).float()
        property_guidance = guidance if property_guidance is None else property_guidance
        free, no_props = torch.full_like(classes, self.null_class), torch.zeros_like(mask)
        has_class, has_props = bool((classes != self.null_class).any()), bool(mask.any())
        for k in range(steps):
            t = torch.full((n,), k / steps, device=device)
            v = self(z, t, classes, props, mask)
            if has_props and property_guidance != 1.0:
                v_class = self(z, t, classes, props, no_props)
                v = v_class + property_guidance * (v - v_class)
            else:
                v_class = v if not has_props else None
            if has_class and guidance != 1.0:
                v_class = self(z, t, classes, props, no_props) if v_class is None else v_class
                v = v + (guidance - 1.0) * (v_class - self(z, t, free, props, no_props))
            z = z + v / steps
        return z


def flow_matching_loss(net, z1, classes, props=None, mask=None, generator=None):
    """Mean squared error between the network's velocity at z_t = (1 - t) z0 + t z1 and the path's
    velocity z1 - z0, z0 ~ N(0, I), t ~ U(0, 1) (conditions dropped as :meth:`LatentFlow.drop_conditions`)."""
    z0 = torch.randn(z1.shape, generator=generator, device=z1.device)
    t = torch.rand(len(z1), generator=generator, device=z1.device)
    zt = (1 - t[:, None, None, None]) * z0 + t[:, None, None, None] * z1
    if mask is None:
        props = mask = z1.new_zeros(len(z1), net.config["n_properties"])
    classes, mask = net.drop_conditions(classes, mask, generator)
    return F.mse_loss(net(zt, t, classes, props, mask), z1 - z0)
