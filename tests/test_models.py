"""Tests for microlatent.models: shapes, gradients, determinism, checkpoints, registry, weight loading."""

import math
import warnings

import pytest
import torch

from microlatent.errors import DataError, InputError
from microlatent.models import (
    MODELS,
    ResnetVAE,
    TaesdVAE,
    TextureVAE,
    build_model,
    load_checkpoint,
    load_model,
    reparameterize,
    save_model,
)

# Small CPU configs; image size each is built for
TINY = {
    "taesd_vae": (dict(latent_channels=4, width=8, depth=1), 32),
    "resnet_vae": (dict(latent_dim=9, layers=[1, 1, 1, 1], base_width=8, fc_hidden=32, image_size=32), 32),
    "texture_vae": (dict(latent_dim=8, image_size=32, vgg_weights="random", decoder_width=32), 32),
}


def tiny(name, **over):
    cfg, size = TINY[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resnet_vae warns that it trains from scratch
        return build_model(name, **{**cfg, **over}), size


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def images(n, size, w=None):
    return (torch.rand(n, 1, size, w or size) > 0.5).float()


# ---------------------------------------------------------------- registry and config


def test_registry_lists_the_three_models():
    assert set(MODELS) == {"taesd_vae", "resnet_vae", "texture_vae"}
    assert MODELS["taesd_vae"] is TaesdVAE and MODELS["resnet_vae"] is ResnetVAE and MODELS["texture_vae"] is TextureVAE


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(InputError, match="resnet_vae, taesd_vae, texture_vae") as e:
        build_model("unet")
    assert "\n" not in str(e.value)


def test_unknown_config_key_lists_valid_ones():
    with pytest.raises(
        InputError, match=r"unknown config key\(s\) widht; valid: latent_channels, width, depth, stages"
    ):
        build_model("taesd_vae", widht=8)


@pytest.mark.parametrize("bad", [dict(width=0), dict(depth=1.5), dict(latent_channels=True)])
def test_bad_config_values_are_input_errors(bad):
    with pytest.raises(InputError):
        build_model("taesd_vae", **bad)


@pytest.mark.parametrize("name", sorted(TINY))
def test_config_rebuilds_the_same_architecture(name):
    model, _ = tiny(name)
    assert model.config["name"] == name
    again, _ = tiny(name, **{k: v for k, v in model.config.items() if k != "name"})
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert type(build_model(**model.config)) is type(model)  # config carries "name"


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("size,latent", [(64, 4), (224, 14), (32, 2)])
def test_taesd_latent_is_size_over_16(size, latent):
    model = TaesdVAE(latent_channels=3, width=8).eval()
    x = images(2, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 3, latent, latent) == (2, *model.latent_shape(size))
    recon = model.decode(mu)
    assert recon.shape == x.shape


def test_taesd_non_square_and_depth():
    model = TaesdVAE(latent_channels=2, width=8, depth=2).eval()
    recon, mu, _ = model(images(1, 32, 64))
    assert mu.shape == (1, 2, 2, 4) and recon.shape == (1, 1, 32, 64)
    assert model.latent_shape((32, 64)) == (2, 2, 4)
    assert sum(type(m).__name__ == "Block" for m in model.encoder) == 2 * 5  # depth x (1 + 4 stages)


@pytest.mark.parametrize("size", [65, 100, 8])
def test_taesd_rejects_size_not_divisible_by_16(size):
    model = TaesdVAE(width=8)
    with pytest.raises(InputError, match=f"{size} x {size}"):
        model.encode(images(1, size))
    with pytest.raises(InputError):
        model.latent_shape(size)


@pytest.mark.parametrize("name", sorted(TINY))
def test_wrong_input_layout_is_input_error(name):
    model, size = tiny(name)
    for bad in (
        torch.rand(2, 3, size, size),
        torch.rand(1, size, size),
        torch.zeros(2, 1, size, size, dtype=torch.long),
        images(2, size).numpy(),
    ):
        with pytest.raises(InputError):
            model.encode(bad)
    with pytest.raises(InputError):
        model.decode(torch.zeros(2, 99))


@pytest.mark.parametrize("name", ["resnet_vae", "texture_vae"])
def test_fixed_size_models_reject_other_sizes(name):
    model, size = tiny(name)
    with pytest.raises(InputError, match=f"{size} x {size}.*got {2 * size} x {2 * size}"):
        model.encode(images(2, 2 * size))
    with pytest.raises(InputError):
        model.latent_shape(2 * size)


def test_texture_vae_default_is_128_and_refuses_other_sizes():
    model = TextureVAE(vgg_weights="random", decoder_width=64).eval()
    assert model.latent_shape(128) == (64,)
    recon, mu, logvar = model(images(1, 128))
    assert recon.shape == (1, 1, 128, 128) and mu.shape == logvar.shape == (1, 64)
    with pytest.raises(InputError, match="128 x 128"):
        model(images(1, 224))


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_and_decoder_range(name):
    model, size = tiny(name)
    model.eval()
    x = images(3, size)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (3, *model.latent_shape(size))
    assert torch.equal(model.decode(mu), recon)
    # decoder output is a probability, also for extreme latents
    for z in (torch.zeros_like(mu), 50 * torch.randn_like(mu)):
        out = model.decode(z)
        assert out.shape == x.shape and torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()
    assert ((recon > 0) & (recon < 1)).all()


def test_resnet_vae_training_batch_of_one_is_input_error():
    model, size = tiny("resnet_vae")
    model.train()
    with pytest.raises(InputError, match=">= 2"):
        model(images(1, size))
    model.eval()
    assert model(images(1, size))[0].shape == (1, 1, size, size)


# ---------------------------------------------------------------- gradients, determinism


@pytest.mark.parametrize("name", sorted(TINY))
def test_gradient_reaches_every_trainable_parameter(name):
    model, size = tiny(name)
    model.train()
    recon, mu, logvar = model(images(4, size))
    kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
    (torch.nn.functional.mse_loss(recon, images(4, size)) + kl).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert no_grad == []


def test_texture_vae_vgg_is_frozen():
    model, size = tiny("texture_vae")
    vgg = [p for n, p in model.named_parameters() if n.startswith("vgg.")]
    assert len(vgg) == 32 and not any(p.requires_grad for p in vgg)
    before = {k: v.clone() for k, v in model.vgg.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    recon, mu, logvar = model.train()(images(2, size))
    recon.mean().backward()
    opt.step()
    assert all(p.grad is None for p in vgg)
    assert all(torch.equal(before[k], v) for k, v in model.vgg.state_dict().items())
    assert model.num_parameters(trainable_only=True) < model.num_parameters()


@pytest.mark.parametrize("name", sorted(TINY))
def test_eval_forward_is_deterministic_and_uses_mu(name):
    model, size = tiny(name)
    x = images(2, size)
    model.eval()
    r1, mu1, lv1 = model(x)
    r2, mu2, lv2 = model(x)
    assert torch.equal(r1, r2) and torch.equal(mu1, mu2) and torch.equal(lv1, lv2)
    assert torch.equal(r1, model.decode(mu1))
    if name != "resnet_vae":  # (resnet_vae's BatchNorm also changes between modes)
        model.train()
        r3, mu3, _ = model(x)
        assert torch.equal(mu3, mu1) and not torch.equal(r3, r1)  # training mode samples z


def test_reparameterize_statistics_and_gradient():
    mu = torch.tensor([1.0, -2.0]).repeat(20000, 1).requires_grad_()
    logvar = torch.tensor([0.0, math.log(0.25)]).repeat(20000, 1).requires_grad_()
    z = reparameterize(mu, logvar)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.03)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 0.5]), atol=0.03)
    z.sum().backward()
    assert torch.equal(mu.grad, torch.ones_like(mu)) and logvar.grad.abs().sum() > 0
    eps = torch.randn_like(mu)
    torch.testing.assert_close(reparameterize(mu, logvar, eps), mu + torch.exp(0.5 * logvar) * eps)


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", sorted(TINY))
def test_save_load_round_trip_is_exact(name, tmp_path):
    model, size = tiny(name)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):  # move weights and BatchNorm statistics away from their initial values
        recon, _, _ = model(images(4, size))
        recon.mean().backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    x = images(3, size)
    expected = model(x)
    path = tmp_path / "model.pt"
    save_model(model, path, extra={"epoch": 3, "loss": [0.5, 0.25]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilding must not warn about missing pretrained weights
        loaded = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.config == model.config
    got = loaded(x)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert getattr(loaded, "weights_source", None) == getattr(model, "weights_source", None)
    assert load_checkpoint(path)["extra"] == {"epoch": 3, "loss": [0.5, 0.25]}


def checkpoint_error(path):
    with pytest.raises(DataError) as e:
        load_model(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_bad_checkpoints_are_data_errors(tmp_path):
    model, _ = tiny("taesd_vae")
    good = tmp_path / "good.pt"
    save_model(model, good)
    data = good.read_bytes()

    checkpoint_error(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    checkpoint_error(tmp_path / "text.pt")
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    checkpoint_error(tmp_path / "truncated.pt")
    corrupt = bytearray(data)
    corrupt[len(data) // 3 : len(data) // 3 + 64] = b"\x00" * 64
    (tmp_path / "corrupt.pt").write_bytes(bytes(corrupt))
    checkpoint_error(tmp_path / "corrupt.pt")  # torch.load reads it; the checksum does not match
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    assert "not a microlatent model checkpoint" in checkpoint_error(tmp_path / "other.pt")

    ckpt = torch.load(good, weights_only=True)
    ckpt["model_config"]["width"] = 16  # state dict no longer matches the config
    torch.save(ckpt, tmp_path / "mismatch.pt")
    assert (
        "model_config does not match the saved weights (encoder.0.weight: config gives (16, 1, 3, 3)"
        in checkpoint_error(tmp_path / "mismatch.pt")
    )
    ckpt["model_config"]["width"] = 100_000  # would allocate ~10^11 parameters: refused before any allocation
    torch.save(ckpt, tmp_path / "huge.pt")
    assert "does not match the saved weights" in checkpoint_error(tmp_path / "huge.pt")
    ckpt["model_config"]["width"] = model.config["width"]
    ckpt["model_config"] = {**model.config, "colour": 3}
    torch.save(ckpt, tmp_path / "badkey.pt")
    assert "colour" in checkpoint_error(tmp_path / "badkey.pt")
    ckpt["model_name"] = "gan"
    torch.save(ckpt, tmp_path / "badname.pt")
    assert "unknown model 'gan'" in checkpoint_error(tmp_path / "badname.pt")


def test_save_model_refuses_non_models(tmp_path):
    with pytest.raises(InputError):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")


# ---------------------------------------------------------------- resnet_vae pretrained weights


def torchvision_state_dict(encoder, drop_num_batches_tracked=True):
    """A torchvision-style resnet file: encoder keys (no prefix) plus fc.*, as old zoo files
    (no num_batches_tracked)."""
    sd = {
        k: v.clone()
        for k, v in encoder.state_dict().items()
        if not (drop_num_batches_tracked and k.endswith("num_batches_tracked"))
    }
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, encoder.num_features), torch.randn(1000)
    return sd


def test_resnet_encoder_uses_torchvision_names():
    model, _ = tiny("resnet_vae")
    keys = list(model.encoder.state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer1.0.conv1.weight" in keys and "layer1.0.downsample.0.weight" in keys
    assert "layer4.0.downsample.1.running_var" in keys and "layer4.0.conv3.weight" in keys


def test_resnet152_has_torchvision_parameter_count():
    from microlatent.models import ResNet

    with torch.device("meta"):
        encoder = ResNet()  # layers (3, 8, 36, 3), width 64
    # torchvision resnet152 has 60,192,808 parameters, 2,049,000 of them in fc
    assert sum(p.numel() for p in encoder.parameters()) == 60_192_808 - 2_049_000
    n_bn = sum(k.endswith("num_batches_tracked") for k in encoder.state_dict())
    assert n_bn == 1 + 3 * (3 + 8 + 36 + 3) + 4  # stem, 3 per bottleneck, 4 downsample branches


def test_resnet_loads_torchvision_state_dict(tmp_path):
    source, size = tiny("resnet_vae")
    for p in source.encoder.state_dict().values():  # make every entry distinctive
        if p.is_floating_point():
            p.copy_(torch.randn_like(p).abs() + 0.1)
    path = tmp_path / "resnet.pth"
    torch.save(torch_sd := torchvision_state_dict(source.encoder), path)
    cfg = {k: v for k, v in TINY["resnet_vae"][0].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ResnetVAE(**cfg, pretrained=path)
    assert model.pretrained is True and model.weights_source == str(path) and model.config["pretrained"] == str(path)
    got = model.encoder.state_dict()
    assert all(torch.equal(got[k], v) for k, v in torch_sd.items() if not k.startswith("fc."))
    # the checkpoint alone rebuilds it, even after the .pth is gone
    save_model(model, tmp_path / "vae.pt")
    path.unlink()
    loaded = load_model(tmp_path / "vae.pt")
    assert loaded.pretrained is True and loaded.config["pretrained"] == str(path)
    assert torch.equal(loaded.encoder.conv1.weight, torch_sd["conv1.weight"])


def test_resnet_decoder_upsamplers(tmp_path):
    """Both ways of doubling rebuild from a checkpoint; the default leaves older checkpoints' config
    unchanged; anything else is a one-line error."""
    default, size = tiny("resnet_vae")
    assert "upsample" not in default.config and isinstance(default.deconv[0][0], torch.nn.ConvTranspose2d)
    nearest, _ = tiny("resnet_vae", upsample="nearest")
    assert isinstance(nearest.deconv[0][0], torch.nn.Upsample) and nearest.config["upsample"] == "nearest"
    x = images(2, size)
    save_model(nearest.eval(), tmp_path / "nearest.pt")
    loaded = load_model(tmp_path / "nearest.pt").eval()
    with torch.no_grad():
        out = nearest(x)[0]
        assert out.shape == x.shape and torch.equal(loaded(x)[0], out)
    with pytest.raises(InputError, match="upsample must be one of transpose, nearest") as e:
        tiny("resnet_vae", upsample="bilinear")
    assert "\n" not in str(e.value)


def test_resnet_from_scratch_warns_and_says_so():
    with pytest.warns(UserWarning, match="from scratch"):
        model = ResnetVAE(**TINY["resnet_vae"][0])
    assert model.pretrained is False and model.weights_source == "scratch"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_resnet_refuses_mismatched_weights(tmp_path):
    source, _ = tiny("resnet_vae")
    cfg = TINY["resnet_vae"][0]
    good = torchvision_state_dict(source.encoder)
    cases = {
        "missing": {k: v for k, v in good.items() if k != "layer2.0.conv2.weight"},
        "unexpected": {**good, "layer5.0.conv1.weight": torch.zeros(1)},
        "wrong shape": {**good, "conv1.weight": torch.zeros(8, 3, 3, 3)},
    }
    for label, sd in cases.items():
        torch.save(sd, tmp_path / f"{label}.pth")
        with pytest.raises(DataError, match=label) as e:
            ResnetVAE(**cfg, pretrained=tmp_path / f"{label}.pth")
        assert "\n" not in str(e.value) and f"{label}.pth" in str(e.value)
    deeper, _ = tiny("resnet_vae", layers=[1, 2, 1, 1])  # a different ResNet depth
    torch.save(torchvision_state_dict(deeper.encoder), tmp_path / "deeper.pth")
    with pytest.raises(DataError, match="unexpected"):
        ResnetVAE(**cfg, pretrained=tmp_path / "deeper.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04junk")
    with pytest.raises(DataError, match="junk.pth"):
        ResnetVAE(**cfg, pretrained=tmp_path / "junk.pth")
    with pytest.raises(DataError, match="not found"):
        ResnetVAE(**cfg, pretrained=tmp_path / "absent.pth")


# ---------------------------------------------------------------- learning


def four_patterns():
    """(4, 1, 32, 32): a square, vertical stripes, horizontal stripes, a quadrant."""
    x = torch.zeros(4, 1, 32, 32)
    x[0, :, 8:24, 8:24] = 1
    x[1, :, :, ::4] = 1
    x[2, :, ::8] = 1
    x[3, :, :16, 16:] = 1
    return x


def test_tiny_taesd_overfits_one_batch():
    model = TaesdVAE(latent_channels=4, width=16, depth=1)
    x = four_patterns()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    model.eval()  # z = mu: a deterministic autoencoder, so one batch can be memorised
    for _ in range(250):
        recon, mu, logvar = model(x)
        loss = torch.nn.functional.mse_loss(recon, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 0.2 and min(losses[-5:]) < 0.02 * losses[0]


def test_training_mode_vae_loss_decreases():
    model = TaesdVAE(latent_channels=4, width=16, depth=1).train()
    x = four_patterns()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(100):
        recon, mu, logvar = model(x)  # sampled z
        kl = -0.5 * torch.mean(1 + logvar - mu**2 - logvar.exp())
        loss = torch.nn.functional.mse_loss(recon, x) + 1e-3 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.nn.functional.mse_loss(model.eval()(x)[0], x).item() < 0.6 * 0.24


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_taesd_vae_starts_finite_and_trains_at_any_depth(depth):
    """Unnormalised residual stacks overflow at initialisation unless the residual branches start small."""
    torch.manual_seed(0)
    model = TaesdVAE(latent_channels=4, width=24, depth=depth)
    x = images(4, 32)
    recon, mu, logvar = model(x)
    assert torch.isfinite(mu).all() and mu.abs().max() < 10 and torch.isfinite(logvar).all()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        recon, mu, logvar = model(x)
        loss = torch.nn.functional.mse_loss(recon, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
