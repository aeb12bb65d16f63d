"""Training throughput: images/s of one optimiser step (forward, loss, backward, RAdam) per model, at the
CPU-scale configs and at paper scale, and the cost of the statistics-space losses relative to MSE.

    python benchmarks/train.py              # CPU scale + 224 px (a few minutes on 2 cores)
    python benchmarks/train.py --quick      # CPU scale only
    python benchmarks/train.py --device cuda

Every figure is measured in this process; ratios are against the MSE step of the same model and size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from microlatent.device import resolve_device  # noqa: E402
from microlatent.losses import CompositeLoss
from microlatent.models import build_model
from microlatent.training import load_config


def step_rate(model, loss_fn, images, repeats, device):
    """Median images/s of full training steps (after one warm-up step)."""
    model.train().to(device)
    images = images.to(device)
    optimizer = torch.optim.RAdam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            recon, mu, logvar = model(images)
        loss, _ = loss_fn(recon.float(), images, mu.float(), logvar.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms caches and allocators up
            times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def model_from_config(name, **changes):
    config = load_config(name)
    model_config = {**config["model"], **changes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resnet_vae trains from scratch here, and says so
        return build_model(model_config.pop("name"), **model_config)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="CPU-scale cases only")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    # (label, config whose model is used, model overrides, image size, batch)
    cases = [
        ("taesd_vae  cai_*_cpu", "cai_mse_cpu", {}, 64, 16),
        ("resnet_vae hashemi_*_cpu", "hashemi_ssvae_cpu", {}, 64, 32),
        ("texture_vae texture_vae_cpu", "texture_vae_cpu", {}, 64, 16),
    ]
    if not args.quick:
        batch = 32 if device.type == "cuda" else 4
        cases += [
            ("taesd_vae  cai_* (paper)", "cai_mse", {}, 224, batch),
            ("resnet_vae hashemi_* (paper)", "hashemi_ssvae", {}, 224, batch),
            ("texture_vae (paper, 128 px)", "texture_vae", {}, 128, batch),
        ]
    losses = {
        "mse": {"mse": 1.0, "kl": 1e-5},
        "cess": {"cess": 1.0, "kl": 1e-5},
        "cess crop": {"cess": {"weight": 1.0, "crop": 50}, "kl": 1e-5},
        "mse+cess": {"mse": 10.0, "cess": 1.0, "kl": 1e-5},
        "msess": {"msess": 1.0, "kl": 1e-5},
    }
    print(f"\n{'model':32s} {'size':>5s} {'batch':>5s} {'loss':>10s} {'images/s':>9s} {'cost vs mse':>11s}")
    for label, config, changes, size, batch in cases:
        model = model_from_config(config, **changes)
        images = (torch.rand(batch, 1, size, size) < 0.4).float()
        names = ["mse"] + ([] if "texture" in label else ["cess", "cess crop", "mse+cess", "msess"])
        base = None
        for name in names:
            spec = dict(losses[name])
            if name == "cess crop":
                spec["cess"] = {"weight": 1.0, "crop": min(50, size)}
            rate = step_rate(model, CompositeLoss(spec), images, args.repeats, device)
            base = base or rate
            print(f"{label:32s} {size:5d} {batch:5d} {name:>10s} {rate:9.1f} {base / rate:10.2f}x")


if __name__ == "__main__":
    main()
