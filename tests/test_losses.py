"""Loss terms against their definitions and independent code."""

import numpy as np
import pytest
import torch

from microlatent.errors import InputError
from microlatent.losses import CompositeLoss, cess, clamp, kl, mse, msess
from microlatent.stats import two_point


def batch(seed, shape=(3, 1, 12, 10), binary=False):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (x < 0.4).double() if binary else x


@pytest.mark.parametrize("periodic", [True, False])
def test_cess_is_the_cross_entropy_of_the_pair_distributions(periodic):
    target, recon = batch(0, binary=True), batch(1)
    f_in = two_point(target.numpy(), periodic=periodic, pairs="all")
    f_rec = two_point(recon.numpy(), periodic=periodic, pairs="all")
    expected = np.mean([-(f_in[n] * np.log(f_rec[n])).sum(0).mean() for n in range(3)])
    assert cess(recon, target, periodic=periodic).item() == pytest.approx(expected, rel=1e-10)


def test_cess_is_smallest_at_the_target_statistics():
    """Gibbs' inequality: the cross-entropy of f_in against any f_recon is at least the entropy of f_in."""
    target = batch(2).clamp(0.05, 0.95)
    entropy = cess(target, target).item()
    for seed in range(3, 8):
        assert cess(batch(seed), target).item() > entropy
    # and a periodic shift of the target has the same statistics, so the same CESS
    assert cess(torch.roll(target, (3, 4), dims=(2, 3)), target).item() == pytest.approx(entropy, rel=1e-10)


def test_cess_on_a_crop_uses_only_the_central_offsets():
    target, recon = batch(9, binary=True), batch(10)
    full = two_point(target.numpy(), pairs="all")
    f_rec = two_point(recon.numpy(), pairs="all")
    c0, c1 = full.shape[2] // 2, full.shape[3] // 2
    window = (slice(None), slice(None), slice(c0 - 2, c0 + 3), slice(c1 - 2, c1 + 3))
    expected = -(full[window] * np.log(f_rec[window])).sum(1).mean()
    assert cess(recon, target, crop=5).item() == pytest.approx(expected, rel=1e-10)


def test_cess_log_is_guarded_against_zero_statistics():
    target = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    target[..., :2, :] = 1  # f(1,0) is zero at some offsets for a reconstruction that is all phase 0
    recon = torch.zeros_like(target, requires_grad=True)
    loss = cess(recon, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(recon.grad).all()


def test_msess_is_the_mean_over_offsets_of_the_squared_difference_summed_over_pairs():
    target, recon = batch(11, binary=True), batch(12)
    diff = two_point(target.numpy(), pairs="all") - two_point(recon.numpy(), pairs="all")
    assert msess(recon, target).item() == pytest.approx((diff**2).sum(1).mean(), rel=1e-10)
    assert msess(target, torch.roll(target, 5, dims=3)).item() == pytest.approx(0, abs=1e-20)
    assert mse(target, torch.roll(target, 5, dims=3)).item() > 0.1


def test_msess_on_hashemi_soft_indicator_is_msess_of_the_transformed_images():
    target, recon = batch(14, binary=True), batch(15)
    sigma = 0.25
    indicator = [np.exp(-((1 - x.numpy()) ** 2) / (2 * sigma**2)) for x in (target, recon)]
    diff = two_point(indicator[0], pairs=[(1, 1)]) - two_point(indicator[1], pairs=[(1, 1)])
    value = msess(recon, target, pairs=[[1, 1]], indicator_sigma=sigma).item()
    assert value == pytest.approx((diff**2).mean(), rel=1e-10)
    assert value != pytest.approx(msess(recon, target, pairs=[[1, 1]]).item(), rel=1e-2)  # it changes the term
    faint, bright = [msess(target * v, target, pairs=[[1, 1]], indicator_sigma=sigma).item() for v in (0.6, 0.9)]
    assert bright < faint and faint > msess(target * 0.6, target, pairs=[[1, 1]]).item()  # grey lines count less
    with pytest.raises(InputError, match="indicator_sigma needs pairs"):
        msess(recon, target, indicator_sigma=sigma)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(InputError, match="indicator_sigma must be"):
            msess(recon, target, pairs=[[1, 1]], indicator_sigma=bad)


def test_clamp_loss_is_zero_on_binary_images_and_pushes_pixels_to_the_nearest_phase():
    assert clamp(batch(13, binary=True)).item() == pytest.approx(0, abs=1e-12)
    x = torch.tensor([0.2, 0.45, 0.55, 0.8], dtype=torch.float64, requires_grad=True)
    value = clamp(x, sigma=0.05)
    value.backward()
    assert value.item() > 0
    assert (x.grad[:2] > 0).all() and (x.grad[2:] < 0).all()  # gradient descent moves 0.2 down, 0.8 up
    # eq. 9 by hand for one pixel
    sigma, p = 0.1, 0.3
    by_hand = -np.log(np.exp(-(p**2) / (2 * sigma)) + np.exp(-((p - 1) ** 2) / (2 * sigma)))
    offset = -np.log(1 + np.exp(-1 / (2 * sigma)))
    assert clamp(torch.tensor([p], dtype=torch.float64), sigma).item() == pytest.approx(by_hand - offset)


def test_kl_matches_torch_distributions():
    mu, logvar = batch(14, shape=(4, 6)) - 0.5, batch(15, shape=(4, 6)) - 0.5
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert kl(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-10)
    assert kl(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0


def test_composite_loss_is_the_weighted_sum_of_its_terms():
    target, recon = batch(16, binary=True), batch(17)
    mu, logvar = batch(18, shape=(3, 5)), batch(19, shape=(3, 5))
    loss = CompositeLoss({"mse": 0.5, "cess": {"weight": 2.0, "crop": 5}, "kl": 1e-3, "clamp": {"sigma": 0.1}})
    total, parts = loss(recon, target, mu, logvar)
    expected = 0.5 * mse(recon, target) + 2 * cess(recon, target, crop=5) + 1e-3 * kl(mu, logvar) + clamp(recon, 0.1)
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert set(parts) == {"mse", "cess", "kl", "clamp"} and loss.names == ["mse", "cess", "kl", "clamp"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mae": 1.0}, "unknown loss term 'mae'"),
        ({"cess": {"weight": 1, "cropp": 50}}, "unknown option(s) ['cropp']"),
        ({"mse": "one"}, "weight must be a number"),
        ({}, "non-empty mapping"),
    ],
)
def test_composite_loss_rejects_bad_config(config, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        CompositeLoss(config)


def test_style_loss_is_eq_2_of_texturevae_with_vgg_features():
    from microlatent.losses.style import StyleLoss, gram

    loss = StyleLoss(layers=("conv1_1", "pool1"), layer_weights=(1.0, 0.5), vgg_weights="random")
    target, recon = batch(20, shape=(2, 1, 32, 32), binary=True).float(), batch(21, shape=(2, 1, 32, 32)).float()
    features_t, features_r = loss.vgg(target, loss.layers), loss.vgg(recon, loss.layers)
    expected = 0.0
    for name, weight in (("conv1_1", 1.0), ("pool1", 0.5)):
        c, m = features_t[name].shape[1], features_t[name].shape[2] * features_t[name].shape[3]
        g_t = torch.einsum("nik,njk->nij", features_t[name].flatten(2), features_t[name].flatten(2))
        g_r = gram(features_r[name])
        expected += weight * ((g_t - g_r) ** 2).sum((1, 2)).mean() / (4 * c**2 * m**2)
    assert loss(recon, target).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss(target, target).item() == 0
    assert loss.weights_source.startswith("random")
    with pytest.raises(InputError, match="unknown VGG-19 layer"):
        StyleLoss(layers=("conv9_9",), vgg_weights="random")


def test_composite_loss_reports_where_style_weights_came_from():
    loss = CompositeLoss({"mse": 1.0, "style": {"vgg_weights": "random", "layers": ["conv1_1"]}})
    assert loss.provenance == {"style": "random(seed=0)"}
    assert CompositeLoss({"mse": 1.0}).provenance == {}
