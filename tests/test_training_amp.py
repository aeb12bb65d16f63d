"""bfloat16 mixed precision (train.amp) on the CPU: the code path a GPU run takes, run by the suite.

train.amp = bf16 runs the training and validation forward passes under torch.autocast(<device>, bfloat16)
on any device; auto (the default) does so on CUDA only, so without this file the autocast path would
only ever run on a GPU. The loss terms are computed in float32, outside autocast.
"""

import csv
import math
from contextlib import nullcontext

import pytest
import torch
import yaml

from microlatent.data import MicrostructureDataset
from microlatent.errors import InputError
from microlatent.losses import CompositeLoss, cess, msess
from microlatent.losses.style import StyleLoss
from microlatent.losses.terms import cess_from_stats, msess_from_stats
from microlatent.models import build_model
from microlatent.stats import two_point
from microlatent.training import DEFAULTS, load_config, loop, train
from microlatent.training.config import merge

BF16 = torch.bfloat16
U = torch.finfo(BF16).eps / 2  # unit roundoff of bfloat16 (8 significant bits): 2**-8
CPU = torch.device("cpu")

TAESD = {"name": "taesd_vae", "width": 16, "depth": 1, "latent_channels": 4, "stages": 3}
RESNET = {
    "name": "resnet_vae",
    "latent_dim": 9,
    "layers": [1, 1, 1, 1],
    "base_width": 8,
    "fc_hidden": 32,
    "image_size": 32,
}
TEXTURE = {"name": "texture_vae", "latent_dim": 8, "image_size": 32, "vgg_weights": "random", "decoder_width": 32}


def run(data, out, model, loss, amp, epochs=1, lr=1e-3):
    """Train on tiny_data: 10 train and 10 validation images, full batch (one Adam step per epoch).
    Returns (the loss of every step, the validation loss of every epoch)."""
    config = merge(
        DEFAULTS,
        {
            "name": f"amp-{amp}",
            "seed": 3,
            "data": {"path": str(data), "split_fractions": [0.5, 0.5, 0.0]},
            "model": model,
            "loss": loss,
            "optim": {"name": "adam", "batch_size": 10, "epochs": epochs, "lr": lr},
            "schedule": {"name": "constant"},
            "train": {"log_every": 1, "device": "cpu", "amp": amp},
        },
    )
    train(config, out, progress=False)
    with open(out / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    with open(out / "epochs.csv") as f:
        val = [float(row["val_loss"]) for row in csv.DictReader(f)]
    for row in steps:
        assert all(math.isfinite(float(row[name])) for name in ("loss", *loss)), row
    assert all(math.isfinite(v) for v in val), val
    return [float(row["loss"]) for row in steps], val


# ---------------------------------------------------------------- training under bfloat16 autocast


@pytest.mark.filterwarnings("ignore:resnet_vae")  # trains from scratch, and says so
@pytest.mark.parametrize(
    "model, loss, epochs, lr",
    [
        (TAESD, {"cess": 1.0, "kl": 1e-4}, 4, 1e-3),
        (RESNET, {"mse": 1.0, "kl": 1e-4}, 8, 3e-3),
    ],
    ids=["taesd_vae-cess", "resnet_vae-mse"],
)
def test_bf16_training_learns_and_stays_within_rounding_and_one_step_of_float32(
    tiny_data, tmp_path, model, loss, epochs, lr
):
    steps32, val32 = run(tiny_data, tmp_path / "fp32", model, loss, "off", epochs, lr)
    steps16, val16 = run(tiny_data, tmp_path / "bf16", model, loss, "bf16", epochs, lr)
    # bf16 learns: its training loss (finite at every step, checked in run) goes down
    assert sum(steps16[-2:]) < sum(steps16[:2]), steps16
    # autocast really ran: the two runs are otherwise the same computation, and float32 on the CPU is
    # deterministic, so only bfloat16 can make them differ
    assert val16[-1] != val32[-1]
    # Tolerance. The bf16 run differs from the float32 one (same seed, initial weights and batches) by
    # (i) its validation forward pass, rounded to 8 significant bits, which moves a mean loss by at most
    #     u = 2**-8 relative (measured: under 0.2 u), and
    # (ii) where its weights are after the same steps: its gradients carry bfloat16 rounding (its latent
    #     noise is the same: drawn in float32 outside autocast), so the trajectories
    #     part; over a run this short they stay less than one optimiser step apart, and one step moves
    #     the float32 run's validation loss by |L_S - L_(S-1)| (one epoch = one full-batch step).
    # Measured for seeds 0-9 of both cases: |bf16 - float32| at most 0.26 of this tolerance.
    tolerance = U * val32[-1] + abs(val32[-1] - val32[-2])
    assert abs(val16[-1] - val32[-1]) <= tolerance, (val32, val16, tolerance)


def test_the_loop_computes_the_loss_in_float32_outside_autocast(tiny_data, tmp_path, monkeypatch):
    # Why it must: under autocast the style loss's VGG convolutions and Gram matmuls run in bfloat16, and
    # so does the value it returns.
    torch.manual_seed(0)
    images = torch.stack([item["image"] for item in MicrostructureDataset(tiny_data, classes=["GRF"])])[:2]
    recon = (0.8 * images + 0.1 + 0.05 * torch.rand_like(images)).requires_grad_()
    style = StyleLoss(vgg_weights="random")
    with torch.autocast("cpu", dtype=BF16):
        assert style(recon, images).dtype == BF16
    assert style(recon, images).dtype == torch.float32

    calls = []

    class Recording(CompositeLoss):
        def __call__(self, recon, target, mu=None, logvar=None):
            matmul = torch.ones(2, 2) @ torch.ones(2, 2)  # bfloat16 where autocast is on
            total, parts = super().__call__(recon, target, mu, logvar)
            calls.append((matmul.dtype, total.dtype))
            return total, parts

    monkeypatch.setattr(loop, "CompositeLoss", Recording)
    loss = {"mse": 1.0, "style": {"weight": 1e-3, "vgg_weights": "random"}, "kl": 1e-4}
    run(tiny_data, tmp_path / "run", TAESD, loss, "bf16", epochs=1)
    assert calls == [(torch.float32, torch.float32)] * 2  # the training step and the validation batch


@pytest.mark.filterwarnings("ignore:resnet_vae")
@pytest.mark.parametrize("model", [TAESD, RESNET, TEXTURE], ids=lambda m: m["name"])
def test_every_model_and_loss_term_backpropagates_under_bf16_autocast(tiny_data, model):
    """Every loss term the configs use, on each model's bfloat16 forward pass (as the loop computes it):
    a finite float32 value and finite gradients that reach the model."""
    torch.manual_seed(0)
    images = torch.stack([item["image"] for item in MicrostructureDataset(tiny_data)])[::5]  # 4, both classes
    config = dict(model)
    net = build_model(config.pop("name"), **config).train()
    with torch.autocast("cpu", dtype=BF16):
        recon, mu, logvar = net(images)
    assert recon.dtype == mu.dtype == logvar.dtype == BF16
    terms = [
        {"mse": 1.0},
        {"msess": 1.0},
        {"msess": {"periodic": False, "pairs": [[1, 1]]}},
        {"cess": 1.0},
        {"cess": {"crop": 9}},
        {"clamp": {"sigma": 0.1}},
        {"kl": 1.0},
        {"style": {"vgg_weights": "random"}},
    ]
    for spec in terms:
        net.zero_grad()
        value, _ = CompositeLoss(spec)(recon.float(), images, mu.float(), logvar.float())
        value.backward(retain_graph=True)
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert value.dtype == torch.float32 and torch.isfinite(value), spec
        assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads), spec


# ---------------------------------------------------------------- train.amp values


@pytest.mark.parametrize(
    "amp, device, expected",
    [
        ("auto", "cpu", None),
        ("auto", "cuda", "cuda"),
        (None, "cpu", None),
        (None, "cuda", "cuda"),
        (True, "cpu", None),
        (True, "cuda", "cuda"),  # configs from before train.amp took a mode: true = auto
        ("bf16", "cpu", "cpu"),
        ("bf16", "cuda", "cuda"),
        ("off", "cpu", None),
        ("off", "cuda", None),
        (False, "cuda", None),
    ],
)
def test_amp_modes_choose_autocast_by_device(amp, device, expected):
    factory = loop._autocast(amp, torch.device(device))
    if expected is None:
        assert factory is nullcontext
        return
    with (
        pytest.warns(UserWarning, match="CUDA is not available")
        if device == "cuda" and not torch.cuda.is_available()
        else nullcontext()
    ):
        context = factory()  # (a CUDA autocast is only built here, not entered, on a machine without one)
    assert isinstance(context, torch.autocast) and context.device == expected and context.fast_dtype == BF16
    if device == "cpu":
        with context:
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == BF16


def test_amp_config_values_load_and_bad_ones_are_one_line_input_errors(tiny_data, tmp_path):
    assert (
        DEFAULTS["train"]["amp"] is None
        and loop._autocast(load_config("cai_mse_cpu")["train"]["amp"], CPU) is nullcontext
    )
    # --set values are YAML, where off and on are false and true: each loads and means what it says
    loaded = {
        text: load_config("cai_mse_cpu", [f"train.amp={text}"])["train"]["amp"]
        for text in ("auto", "bf16", "off", "on", "true", "false")
    }
    assert loaded == {"auto": "auto", "bf16": "bf16", "off": False, "on": True, "true": True, "false": False}
    assert [loop._autocast(value, CPU) is nullcontext for value in loaded.values()] == [
        True,
        False,
        True,
        True,
        True,
        True,
    ]
    old = tmp_path / "old.yaml"  # a run folder's config.yaml from before: amp: true
    old.write_text(yaml.safe_dump({"name": "old", "train": {"amp": True, "device": "cpu"}}))
    assert load_config(old)["train"]["amp"] is True
    for bad in ("fp16", "BF16", 1, ["bf16"]):
        with pytest.raises(InputError) as error:
            loop._autocast(bad, CPU)
        assert str(error.value) == (
            f"config train.amp = {bad!r} is not one of auto, bf16, off (true = auto, false = off)"
        )
    # train() refuses it before it writes anything
    config = merge(DEFAULTS, {"data": {"path": str(tiny_data)}, "train": {"device": "cpu", "amp": "fp16"}})
    with pytest.raises(InputError, match="train.amp = 'fp16'"):
        train(config, tmp_path / "run", progress=False)
    assert list((tmp_path / "run").iterdir()) == []


# ---------------------------------------------------------------- statistics losses stay float32

STATISTICS_LOSSES = {
    "msess": (msess, msess_from_stats, {}),
    "msess_nonperiodic": (msess, msess_from_stats, {"periodic": False}),
    "cess": (cess, cess_from_stats, {}),
    "cess_crop": (cess, cess_from_stats, {"crop": 9}),
    "cess_nonperiodic_crop": (cess, cess_from_stats, {"periodic": False, "crop": 9}),
}


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))],
)
@pytest.mark.parametrize("name", STATISTICS_LOSSES)
def test_statistics_losses_under_bf16_autocast_equal_float32(tiny_data, device, name):
    """Given the same float32 images, a statistics loss and its gradient under bfloat16 autocast equal the
    float32 ones to 1e-6: its FFTs, products and logs run in float32 (cuFFT has no bfloat16)."""
    loss, from_stats, options = STATISTICS_LOSSES[name]
    torch.manual_seed(0)
    target = torch.stack([item["image"] for item in MicrostructureDataset(tiny_data, classes=["GRF"])])[:3].to(device)
    start = (0.8 * target + 0.1 + 0.05 * torch.rand_like(target)).requires_grad_()
    reference = loss(start, target, **options)
    (reference_grad,) = torch.autograd.grad(reference, start)
    with torch.autocast(device, dtype=BF16):
        value = loss(start, target, **options)
        from_bf16 = loss(start.detach().to(BF16), target, **options)  # a bfloat16 input is read as float32
    (grad,) = torch.autograd.grad(value, start)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, reference_grad, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(from_bf16, loss(start.detach().to(BF16).float(), target, **options), rtol=1e-6, atol=0)
    # 1e-6 is tight enough to see bfloat16 anywhere: rounding only the statistics of the reconstruction
    # to bfloat16 (as a bfloat16 FFT would, and worse) moves the loss by more than 1e-5
    pairs = {"pairs": "all", "periodic": options.get("periodic", True), "crop": options.get("crop"), "validate": False}
    f_target, f_start = two_point(target, **pairs), two_point(start.detach(), **pairs)
    torch.testing.assert_close(from_stats(f_target, f_start), reference.detach(), rtol=1e-6, atol=0)
    assert abs(from_stats(f_target, f_start.to(BF16).float()) - reference).item() > 1e-5 * reference.item()
