"""The latent prior: the flow sampler against known distributions (two clusters in proportion, class
conditioning), determinism per seed, exact resume, and the commands end to end on a tiny VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microlatent.errors import DataError, InputError
from microlatent.prior import LatentFlow, Prior, fit_prior, flow_matching_loss
from microlatent.prior.realism import autocorrelation_length, frechet_distance


def _train_on_clusters(classes, latents, n_classes, epochs=60, seed=0):
    torch.manual_seed(seed)
    net = LatentFlow((1, 2, 2), n_classes=n_classes, width=16, depth=2)
    classes = classes if n_classes else torch.zeros_like(classes)  # index 0 = "no class" for n_classes 0
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(latents)).split(128):
            loss = flow_matching_loss(net, latents[batch], classes[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def clusters():
    """3 of 4 codes near +2 (class 0), 1 of 4 near -2 (class 1), in a (1, 2, 2) latent."""
    g = torch.Generator().manual_seed(0)
    n = 1200
    classes = (torch.rand(n, generator=g) < 0.25).long()
    centre = torch.where(classes == 0, 2.0, -2.0)
    latents = centre[:, None, None, None] + 0.2 * torch.randn(n, 1, 2, 2, generator=g)
    return classes, latents, _train_on_clusters(classes, latents, 2)


def test_unconditional_samples_land_on_both_clusters_in_proportion(clusters):
    classes, latents, _ = clusters
    net = _train_on_clusters(classes, latents, 0)
    z = net.sample(800, steps=40, seed=1).mean(dim=(1, 2, 3))
    near_a, near_b = (z - 2).abs() < 0.7, (z + 2).abs() < 0.7
    assert (near_a | near_b).float().mean() > 0.9  # on the clusters, not between them
    share = near_a.float().sum() / (near_a | near_b).float().sum()
    assert abs(share.item() - 0.75) < 0.06, share


def test_class_conditioning_selects_its_cluster_and_the_sampler_is_deterministic(clusters):
    _, _, net = clusters
    for label, centre in ((0, 2.0), (1, -2.0)):
        z = net.sample(200, torch.full((200,), label), steps=40, guidance=2.0, seed=2).mean(dim=(1, 2, 3))
        assert ((z - centre).abs() < 0.7).float().mean() > 0.95, (label, z[:10])
    a = net.sample(16, torch.zeros(16, dtype=torch.long), seed=5)
    assert torch.equal(a, net.sample(16, torch.zeros(16, dtype=torch.long), seed=5))
    assert not torch.equal(a, net.sample(16, torch.zeros(16, dtype=torch.long), seed=6))
    assert not torch.equal(a, net.sample(16, torch.ones(16, dtype=torch.long), seed=5))


def test_guidance_is_compositional_per_condition():
    """One Euler integration written out from the definition: v = v_free + g_class (v_class - v_free)
    + g_props (v_class,props - v_class); equal scales give single-scale guidance v_free + g (v_full - v_free)."""
    torch.manual_seed(0)
    net = LatentFlow((2, 2, 2), n_classes=3, n_properties=1, width=16, depth=1).eval()
    for p in net.parameters():  # a net whose conditions all matter (zero-initialised parts made random)
        torch.nn.init.normal_(p, std=0.3)
    n, steps = 5, 4
    classes, props, mask = torch.full((n,), 1), torch.full((n, 1), 0.7), torch.ones(n, 1)
    free, none = torch.full((n,), 3), torch.zeros(n, 1)

    def by_hand(g_class, g_props):
        z = torch.randn((n, 2, 2, 2), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            for k in range(steps):
                t = torch.full((n,), k / steps)
                v_free, v_class = net(z, t, free, props, none), net(z, t, classes, props, none)
                v_full = net(z, t, classes, props, mask)
                z = z + (v_free + g_class * (v_class - v_free) + g_props * (v_full - v_class)) / steps
        return z

    for g_class, g_props in ((1.0, 1.0), (1.0, 3.0), (2.0, 1.0), (2.5, 4.0)):
        got = net.sample(n, classes, props, mask, steps=steps, guidance=g_class, seed=4, property_guidance=g_props)
        assert torch.allclose(got, by_hand(g_class, g_props), atol=1e-5), (g_class, g_props)
    single = net.sample(n, classes, props, mask, steps=steps, guidance=2.0, seed=4)  # property_guidance None
    assert torch.allclose(single, by_hand(2.0, 2.0), atol=1e-5)
    assert not torch.allclose(single, by_hand(1.0, 1.0), atol=1e-3)


def test_property_condition_selects_its_cluster():
    """Codes near +2 carry property +1, codes near -2 property -1 (no classes): asking for either
    property samples its cluster, with or without property guidance."""
    g = torch.Generator().manual_seed(1)
    n = 1200
    sign = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
    latents = 2 * sign[:, None, None, None] + 0.2 * torch.randn(n, 1, 2, 2, generator=g)
    torch.manual_seed(0)
    net = LatentFlow((1, 2, 2), n_classes=0, n_properties=1, width=16, depth=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    no_class, mask = torch.zeros(n, dtype=torch.long), torch.ones(n, 1)
    for _ in range(60):
        for batch in torch.randperm(n).split(128):
            loss = flow_matching_loss(net, latents[batch], no_class[batch], sign[batch, None], mask[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    for value in (1.0, -1.0):
        for g_props in (1.0, 3.0):
            props = torch.full((200, 1), value)
            z = net.sample(200, None, props, torch.ones(200, 1), steps=40, seed=3, property_guidance=g_props)
            assert ((z.mean(dim=(1, 2, 3)) - 2 * value).abs() < 0.7).float().mean() > 0.9, (value, g_props)


def test_a_prior_saved_before_the_property_mlp_still_loads():
    from microlatent.prior.fit import _flow

    old = LatentFlow((4, 2, 2), n_classes=2, n_properties=1, width=16, depth=1, property_mlp=False)
    config = {k: v for k, v in old.config.items() if k != "property_mlp"}  # as such priors saved it
    rebuilt = _flow(config)
    rebuilt.load_state_dict(old.state_dict())
    assert isinstance(rebuilt.properties, torch.nn.Linear)
    assert isinstance(LatentFlow((4, 2, 2), 2, 1, 16, 1).properties, torch.nn.Sequential)


def test_frechet_distance_and_correlation_length_against_their_definitions():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    b = rng.standard_normal((4000, 3)) * 2 + 1  # N(1, 4I): d = 3 * 1 + tr(I + 4I - 2 * 2I) = 3 + 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # stripes of period 8 along one axis (half phase 1): the radial average of a triangle wave falls
    # below 1/e between 1 and 4 px; a coarser texture (period 32) has a 4x longer length
    x = np.arange(64)
    fine = np.tile((x % 8 < 4)[:, None], (1, 64)).astype(float)
    coarse = np.tile((x % 32 < 16)[:, None], (1, 64)).astype(float)
    lf, lc = autocorrelation_length(np.stack([fine, coarse]))
    assert 1 < lf < 4 and lc == pytest.approx(4 * lf, rel=0.15)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, train_tiny_model):
    from microlatent.data import generate
    from microlatent.data.store import write_class
    from microlatent.properties.storage import homogenize_file

    root = tmp_path_factory.mktemp("prior")
    data = root / "set.h5"
    for kind in ("GRF", "VoronoiLarge"):
        ((images, labels),) = generate(kind, 40, size=32, seed=1).values()
        write_class(data, kind, images, labels)
    homogenize_file(data, thermal=False)
    return data, train_tiny_model(data, root / "run", name="tiny-prior"), root


def test_resume_reaches_the_uninterrupted_state(tiny_run, tmp_path):
    data, checkpoint, _ = tiny_run
    settings = dict(epochs=4, batch_size=16, width=16, depth=1, seed=3)
    whole = fit_prior(checkpoint, data, tmp_path / "whole", properties=("Ex",), progress=False, **settings)
    assert (
        fit_prior(checkpoint, data, tmp_path / "cut", ("Ex",), progress=False, stop_after_epochs=2, **settings) is None
    )
    with pytest.raises(DataError, match="stopped at epoch 2 of 4"):
        Prior.load(tmp_path / "cut")
    resumed = fit_prior(checkpoint, data, tmp_path / "cut", resume=True, progress=False)
    for key, value in whole.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[key]), key
    with pytest.raises(InputError, match="already holds a prior"):
        fit_prior(checkpoint, data, tmp_path / "whole", progress=False, **settings)
    with pytest.raises(InputError, match="not conditioned on Gxy"):
        whole.sample(2, targets={"Gxy": 1.0})
    with pytest.raises(InputError, match="not one the prior knows"):
        whole.sample(2, class_name="NBSA")


def test_decoded_labels_are_the_solver_properties_of_each_codes_thresholded_decoding(tiny_run):
    from microlatent.evaluation.inference import decode
    from microlatent.models.run import Run
    from microlatent.prior.fit import training_latents
    from microlatent.properties.homogenize import homogenize_elastic

    data, checkpoint, _ = tiny_run
    run = Run.load(checkpoint, "cpu")
    mu, _, classes, decoded = training_latents(run, data, ("Ex", "Gxy"), limit=6, labels="decoded")
    _, _, same_classes, labelled = training_latents(run, data, ("Ex", "Gxy"), limit=6, labels="data")
    assert classes == same_classes and decoded.shape == labelled.shape == (len(mu), 2)
    images = (decode(run, mu) > 0.5).astype(np.uint8)
    solved = homogenize_elastic(images)  # the file's labels were made with the default phases
    assert np.allclose(decoded, np.stack([solved["Ex"], solved["Gxy"]], axis=1), rtol=1e-6)
    assert not np.allclose(decoded, labelled, rtol=1e-3)  # the round trip changes the image, so its properties
    with pytest.raises(InputError, match="labels must be"):
        training_latents(run, data, ("Ex",), limit=2, labels="guess")


def test_commands_train_generate_and_evaluate(tiny_run, tmp_path):
    from microlatent.cli import _register_commands, cli
    from microlatent.data.store import list_classes, read_images

    _register_commands()
    data, checkpoint, _ = tiny_run
    runner = CliRunner()
    prior_dir = tmp_path / "prior"
    result = runner.invoke(
        cli,
        ["prior", "train", str(checkpoint), "--data", str(data), "--condition", "Ex", "--out", str(prior_dir),
         "--epochs", "3", "--width", "16", "--depth", "1", "--batch-size", "16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "conditioned on class, Ex" in result.output
    out = tmp_path / "gen"
    args = ["generate", str(checkpoint), "--prior", str(prior_dir), "--class", "GRF", "--target", "Ex=5", "--n", "6"]
    result = runner.invoke(cli, args + ["--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert list_classes(out / "generated.h5") == ["GRF"]
    images = read_images(out / "generated.h5", "GRF")
    assert images.shape == (6, 32, 32) and set(np.unique(images)) <= {0, 1}
    result = runner.invoke(cli, args + ["--out", str(tmp_path / "again"), "--device", "auto"])  # same seed: same images
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert np.array_equal(images, read_images(tmp_path / "again" / "generated.h5", "GRF"))
    with np.load(out / "statistics.npz") as saved:
        assert saved["f11"].shape == (6, 32, 32)
    result = runner.invoke(
        cli, ["prior", "evaluate", str(checkpoint), "--prior", str(prior_dir), "--data", str(data), "--n", "8"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    numbers = json.loads((prior_dir / "evaluation" / "realism.json").read_text())
    assert set(numbers["classes"]) == {"GRF", "VoronoiLarge"}
    floor = numbers["classes"]["GRF"]["floor"]
    assert floor["frechet"] >= 0 and 0 <= floor["vf"] < 1
    assert len(numbers["targeted"]["Ex"]["achieved"]) == 8 and numbers["targeted"]["Ex"]["nrmse"] > 0
    assert (prior_dir / "evaluation" / "samples_GRF.png").stat().st_size > 5_000
    result = runner.invoke(cli, args + ["--out", str(tmp_path / "bad"), "--device", "nosuch"])
    assert isinstance(result.exception, InputError) and "nosuch" in str(result.exception)
    assert "Realism" in (prior_dir / "evaluation" / "report.md").read_text().splitlines()[2]
