"""End-to-end training throughput of a config: images/s of ``train()`` itself, reading a MICRO2D-layout
HDF5 file through its DataLoader (workers, resize, optional cache, pinned memory on CUDA), against the
same model's optimiser step on images already in memory (the compute ceiling) and the loader alone.

    python benchmarks/pipeline.py --device cuda                      # GPU: cai_mse at 224 px, batch 32
    python benchmarks/pipeline.py --device cuda --data MICRO2D_homogenized.h5
    OMP_NUM_THREADS=1 python benchmarks/pipeline.py                  # CPU: a few steps at batch 4
    python benchmarks/pipeline.py --config cai_mse_cpu --workers 0   # CPU-scale config, seconds

Without --data it writes a MICRO2D-like file of 256 x 256 images (gzip, as the real file) in a temporary
folder. Columns (images/s): ``loader`` = the DataLoader alone; ``step`` = the optimiser step on a batch
already on the device, measured just before the row's run; ``train`` = train()'s steps (the median of
steps.csv after the warm-up steps); ``vs step`` = train / step: 1.00x means the data pipeline keeps the
device busy. Every figure is measured in
this process. ``--out FILE`` also writes the table and the settings to FILE.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the cache's progress bars would break the table

import torch  # noqa: E402

from microlatent.data.loading import make_loader, training_datasets  # noqa: E402
from microlatent.data.make import ensure_dataset
from microlatent.device import resolve_device  # noqa: E402
from microlatent.losses import CompositeLoss
from microlatent.models import build_model
from microlatent.training import load_config, train
from microlatent.training.loop import Interrupted

sys.path.insert(0, str(Path(__file__).parent))
from train import step_rate  # noqa: E402  (the in-memory step of benchmarks/train.py)


def loader_rate(config, batch):
    """Images/s of the training DataLoader alone over (at most 2048 images of) the training split, after
    one warm-up batch."""
    train_set, _ = training_datasets(config["data"])
    loader, sampler = make_loader(train_set, config["data"]["num_workers"], torch.device("cpu"), persistent=False)
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))
    sampler.batches = list(order.split(batch))[: max(2, 2048 // batch)]
    count, start = 0, None
    for images in loader:
        if start is None:  # worker start-up and the first batch are not throughput
            start = time.perf_counter()
            continue
        count += len(images)
    return count / (time.perf_counter() - start)


def train_rate(config, out, warmup, steps):
    """Median images/s of train()'s steps ``warmup + 1 ..``, read back from its steps.csv."""
    try:
        train(config, out, stop_after_steps=warmup + steps, progress=False)
    except Interrupted:
        pass
    with open(Path(out) / "steps.csv") as f:
        rates = [float(row["images_per_s"]) for row in csv.DictReader(f)]
    return statistics.median(rates[warmup:])


def ceiling_rate(config, batch, steps, device):
    """Images/s of the config's model and loss stepping on a batch already on the device."""
    model_cfg = dict(config["model"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resnet_vae / VGG without downloaded weights say so
        model = build_model(model_cfg.pop("name"), **model_cfg)
    side = config["data"]["size"] or 256
    images = (torch.rand(batch, 1, side, side) < 0.4).float()
    return step_rate(model, CompositeLoss(config["loss"]), images, steps, device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cai_mse")
    parser.add_argument("--data", help="MICRO2D-layout HDF5 file (default: a generated one)")
    parser.add_argument(
        "--images", type=int, default=None, help="images per class generated (default: 64, or enough for the steps)"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--batch", type=int, default=None, help="default: the config's on CUDA or for a config of 64 px or less, else 4"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5 on CUDA, 1 on CPU)")
    parser.add_argument(
        "--workers", default=None, help="comma-separated worker counts (default 0,4,8 on CUDA, 0,1 on CPU)"
    )
    parser.add_argument(
        "--loader-only", action="store_true", help="measure the DataLoader alone (e.g. on a CPU at a GPU's batch size)"
    )
    parser.add_argument("--out", type=Path, help="also write the output to this file")
    args = parser.parse_args()

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    config = load_config(args.config)
    size = config["data"]["size"]
    small = (size or 256) <= 64  # the _cpu configs: their own batch is CPU-sized
    batch = args.batch or (config["optim"]["batch_size"] if gpu or small else 4)
    steps, warmup = args.steps or (20 if gpu else 3), args.warmup if args.warmup is not None else (5 if gpu else 1)
    workers = [int(w) for w in (args.workers or ("0,4,8" if gpu else "0,1")).split(",")]
    lines = [
        f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if gpu else device}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}",
        f"config {args.config}: {config['model']['name']}, loss {sorted(config['loss'])}, {size or 'stored'} px, "
        f"batch {batch}, {warmup} warm-up + {steps} timed steps",
    ]
    print(*lines, sep="\n", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "micro2d_like.h5"
            n = args.images or max(64, (warmup + steps + 2) * batch // 8 + 1)  # 10 classes, 80 % train
            ensure_dataset(data, "micro2d-like", n, size=256)
        base = {**config, "name": "pipeline"}
        base["data"] = {**config["data"], "path": str(data), "generate": None}
        base["optim"] = {**config["optim"], "batch_size": batch, "epochs": 1}
        base["train"] = {
            **config["train"],
            "device": str(device),
            "log_every": 1,
            "max_steps_per_epoch": warmup + steps,
        }

        table = [
            f"{'workers':>7s} {'cache':>6s} {'loader':>9s}"
            + ("" if args.loader_only else f" {'step':>9s} {'train':>9s} {'vs step':>8s}")
        ]
        print(*table, sep="\n", flush=True)
        for cache in (None, "disk"):
            for count in workers:
                cfg = {**base, "data": {**base["data"], "num_workers": count, "cache": cache}}
                line = f"{count:7d} {str(cache or '-'):>6s} {loader_rate(cfg, batch):9.1f}"
                if not args.loader_only:  # the ceiling again for each row: a shared machine's load drifts
                    ceiling = ceiling_rate(config, batch, steps, device)
                    rate = train_rate(cfg, Path(tmp) / f"run-{cache}-{count}", warmup, steps)
                    line += f" {ceiling:9.1f} {rate:9.1f} {rate / ceiling:7.2f}x"
                table.append(line)
                print(line, flush=True)
    if args.out:
        args.out.write_text("\n".join(lines + [""] + table) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
