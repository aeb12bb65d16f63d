"""The training loop: one readable function, config as plain data, checkpoint/resume obvious.

A run folder holds
    config.yaml      the full config the run used
    run.json         versions, device, parameter count, where pretrained weights came from
    checkpoint.pt    model + optimiser + scheduler + RNG state + position, written atomically at the end
                     of every epoch and when the run is interrupted (Ctrl-C, SIGTERM)
    model.pt         the final model (the same checkpoint format; ``load_model`` reads either)
    steps.csv        loss terms, learning rate and images/s every ``train.log_every`` steps
    epochs.csv       mean train and validation loss terms per epoch

``resume=True`` continues from checkpoint.pt to exactly the state an uninterrupted run would reach:
the batch order of each epoch comes from a generator seeded by (seed, epoch), and the global RNG (which
draws the VAE's latent noise) is restored with the rest.
"""

from __future__ import annotations

import csv
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from microlatent.errors import DataError, InputError
from microlatent.losses import CompositeLoss
from microlatent.models import build_model, load_checkpoint, load_model, save_model

OPTIMIZERS = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


class Interrupted(Exception):
    """Raised after an interrupted run has saved its checkpoint."""


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but this machine has no CUDA GPU (use --device auto or cpu)")
    return device


def train(config: dict, out_dir, resume: bool = False, stop_after_steps: int | None = None, progress: bool = True):
    """Train the model that ``config`` describes; write the run folder ``out_dir``. Returns its path.

    stop_after_steps: behave as if interrupted after that many optimiser steps of this call (tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume and not checkpoint_path.exists():
        raise DataError(f"{checkpoint_path}: nothing to resume (no checkpoint in {out_dir})")
    if not resume and checkpoint_path.exists():
        raise InputError(f"{out_dir} already holds a run: pass --resume to continue it, or choose another --out")

    saved = load_checkpoint(checkpoint_path)["extra"] if resume else None
    if saved is not None:
        config = saved["config"]  # a resumed run keeps the config it started with
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    seed = config["seed"]
    torch.manual_seed(seed)
    device = resolve_device(config["train"]["device"])
    train_set, val_set = _datasets(config["data"])
    optim_cfg, sched_cfg = config["optim"], config["schedule"]
    batches_per_epoch = math.ceil(len(train_set) / optim_cfg["batch_size"])
    if config["train"]["max_steps_per_epoch"]:
        batches_per_epoch = min(batches_per_epoch, config["train"]["max_steps_per_epoch"])

    model = _initial_model(config, checkpoint_path if resume else None).to(device)
    optimizer = OPTIMIZERS[_choice(optim_cfg["name"], OPTIMIZERS, "optim.name")](
        [p for p in model.parameters() if p.requires_grad], lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"]
    )
    scheduler = _scheduler(optimizer, sched_cfg, batches_per_epoch)
    loss_fn = CompositeLoss(config["loss"])
    _write_metadata(out_dir / "run.json", model, loss_fn, device, config)
    use_amp = config["train"]["amp"] and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext

    epoch, batch_index, step, totals = 0, 0, 0, {}
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        epoch, batch_index, step, totals = saved["epoch"], saved["batch_index"], saved["step"], saved["totals"]
        _set_rng_state(saved["rng"])

    def save(next_epoch, next_batch):
        save_model(model, checkpoint_path, extra={
            "config": config, "epoch": next_epoch, "batch_index": next_batch, "step": step, "totals": totals,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
        })

    log = _Logs(out_dir, loss_fn.names, append=resume)
    steps_this_call = 0
    with _interrupt_flag() as interrupted:
        while epoch < optim_cfg["epochs"]:
            model.train()
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            batches = order.split(optim_cfg["batch_size"])[:batches_per_epoch]
            bar = tqdm(range(batch_index, len(batches)), desc=f"epoch {epoch + 1}/{optim_cfg['epochs']}",
                       disable=not progress, leave=False, unit="batch")
            for batch_index in bar:
                started = time.perf_counter()
                images = _load_batch(train_set, batches[batch_index], device)
                with autocast():
                    recon, mu, logvar = model(images)
                    loss, parts = loss_fn(recon.float(), images, mu.float(), logvar.float())
                if not torch.isfinite(loss):
                    save(epoch, batch_index)
                    raise DataError(f"{checkpoint_path}: loss became {loss.item()} at step {step}; checkpoint kept")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if optim_cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg["grad_clip"])
                optimizer.step()
                scheduler.step()
                step += 1
                steps_this_call += 1
                rate = len(images) / (time.perf_counter() - started)
                parts = {"loss": loss.detach(), **parts}
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value.item()
                bar.set_postfix(loss=f"{loss.item():.4g}", img_s=f"{rate:.1f}")
                if step % config["train"]["log_every"] == 0:
                    log.step(step, epoch, parts, scheduler.get_last_lr()[0], rate)
                if interrupted() or steps_this_call == stop_after_steps:
                    save(epoch, batch_index + 1)
                    log.close()
                    raise Interrupted(f"interrupted at epoch {epoch + 1}, step {step}; resume with --resume ({out_dir})")
            train_means = {k: v / max(1, len(batches)) for k, v in totals.items()}
            val_means = evaluate_loss(model, val_set, loss_fn, optim_cfg["batch_size"], device, autocast)
            log.epoch(epoch, train_means, val_means)
            epoch, batch_index, totals = epoch + 1, 0, {}
            save(epoch, 0)
    log.close()
    save_model(model, out_dir / "model.pt", extra={"config": config, "epoch": epoch, "step": step})
    return out_dir


def _write_metadata(path, model, loss_fn, device, config):
    """run.json: versions, device, parameter count and where pretrained weights came from (or that
    they were random), so a result can be traced without the console output."""
    import json

    from microlatent import __version__

    metadata = {
        "name": config["name"], "microlatent": __version__, "torch": torch.__version__, "device": str(device),
        "model": model.config, "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model_weights": {k: getattr(model, k) for k in ("weights_source", "pretrained") if hasattr(model, k)},
        "loss_weights": loss_fn.provenance,
    }
    path.write_text(json.dumps(metadata, indent=2, default=str))


@torch.no_grad()
def evaluate_loss(model, dataset, loss_fn, batch_size, device, autocast=nullcontext):
    """Mean loss terms of ``model`` (eval mode: z = mu) over ``dataset``; {} for an empty set."""
    if len(dataset) == 0:
        return {}
    model.eval()
    totals, count = {}, 0
    for batch in torch.arange(len(dataset)).split(batch_size):
        images = _load_batch(dataset, batch, device)
        with autocast():
            recon, mu, logvar = model(images)
        loss, parts = loss_fn(recon.float(), images, mu.float(), logvar.float())
        for name, value in {"loss": loss, **parts}.items():
            totals[name] = totals.get(name, 0.0) + value.item() * len(images)
        count += len(images)
    model.train()
    return {name: value / count for name, value in totals.items()}


def _initial_model(config, resume_from):
    model_cfg = dict(config["model"])
    name = model_cfg.pop("name", None)
    if resume_from is not None:
        return load_model(resume_from)
    init_from = config["train"]["init_from"]
    if init_from:
        model = load_model(init_from)
        if model.config["name"] != name:
            raise InputError(f"{init_from} holds a {model.config['name']} model but the config asks for {name}")
        return model
    return build_model(name, **model_cfg)


def _datasets(data_cfg):
    from microlatent.data import MicrostructureDataset
    from microlatent.data.make import ensure_dataset

    if data_cfg["path"] is None:
        raise InputError("config data.path is not set: name an HDF5 file in the MICRO2D layout")
    path = Path(data_cfg["path"])
    if data_cfg["generate"]:
        spec = dict(data_cfg["generate"])
        if "kind" not in spec or "n" not in spec:
            raise InputError(f"config data.generate needs kind and n; it has {sorted(spec)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        ensure_dataset(path, spec.pop("kind"), spec.pop("n"), **spec)  # generates only what is missing
    kwargs = dict(classes=data_cfg["classes"], seed=data_cfg["split_seed"],
                  split_fractions=tuple(data_cfg["split_fractions"]), size=data_cfg["size"])
    return MicrostructureDataset(path, split="train", **kwargs), MicrostructureDataset(path, split="val", **kwargs)


def _load_batch(dataset, indices, device):
    images = torch.stack([dataset[int(i)]["image"] for i in indices])
    return images.to(device, non_blocking=True)


def _scheduler(optimizer, cfg, batches_per_epoch):
    name = _choice(cfg["name"], ("cosine_warm_restarts", "constant"), "schedule.name")
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    # Stepped every batch, so the cosine is smooth within an epoch and restarts every period_epochs.
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, cfg["period_epochs"] * batches_per_epoch), eta_min=cfg["min_lr"]
    )


def _choice(value, options, key):
    if value not in options:
        raise InputError(f"config {key} = {value!r} is not one of {', '.join(options)}")
    return value


def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def _interrupt_flag():
    """Turn the first Ctrl-C / SIGTERM into a flag the loop checks after each step (so it can save);
    a second one interrupts at once."""
    hits = []

    def handler(signum, frame):
        if hits:
            raise KeyboardInterrupt
        hits.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: signals stay as they were
            pass
    try:
        yield lambda: bool(hits)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Logs:
    """steps.csv and epochs.csv (appended to when a run resumes), plus TensorBoard when installed."""

    def __init__(self, out_dir, names, append):
        mode = "a" if append else "w"
        self.step_file = open(out_dir / "steps.csv", mode, newline="")
        self.epoch_file = open(out_dir / "epochs.csv", mode, newline="")
        terms = ["loss", *names]
        self.steps = csv.DictWriter(self.step_file, ["step", "epoch", *terms, "lr", "images_per_s"])
        self.epochs = csv.DictWriter(self.epoch_file, ["epoch", *[f"train_{t}" for t in terms], *[f"val_{t}" for t in terms]])
        if not append:
            self.steps.writeheader()
            self.epochs.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(out_dir / "tensorboard")
        except ImportError:
            self.board = None

    def step(self, step, epoch, parts, lr, rate):
        row = {"step": step, "epoch": epoch + 1, "lr": lr, "images_per_s": round(rate, 2)}
        row.update({name: value.item() for name, value in parts.items()})
        self.steps.writerow(row)
        self.step_file.flush()
        if self.board:
            for name, value in parts.items():
                self.board.add_scalar(f"train/{name}", value.item(), step)

    def epoch(self, epoch, train_means, val_means):
        row = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train_means.items()},
               **{f"val_{k}": v for k, v in val_means.items()}}
        self.epochs.writerow(row)
        self.epoch_file.flush()
        if self.board:
            for name, value in val_means.items():
                self.board.add_scalar(f"val/{name}", value, epoch + 1)

    def close(self):
        self.step_file.close()
        self.epoch_file.close()
        if self.board:
            self.board.close()
