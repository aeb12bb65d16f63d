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

Batches are loaded by a torch DataLoader (``data.num_workers`` processes, each with its own HDF5
handle; pinned memory on CUDA) whose batch sampler is the loop's own per-epoch permutation, so the
images of a step, and so the result, do not depend on the number of workers. ``data.cache`` keeps a
resized copy of the images (``memory``, or ``disk``: a memory-mapped .npy beside the HDF5 file).

Under ``torchrun`` the same function trains data-parallel (see ``microlatent.training.distributed``):
the global batch is ``optim.batch_size``, split over the ranks, and the run reaches the weights a single
process would, within float rounding; rank 0 alone writes the run folder.

``train.amp`` runs the forward passes under bfloat16 autocast: ``auto`` on CUDA only, ``bf16`` on any
device (the CPU included, which is how the test suite covers the GPU's code path), ``off`` never. The
loss terms are always computed in float32, outside autocast.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from microlatent.data.augment import augment, check_augmentations
from microlatent.data.loading import make_loader, mean_volume_fraction, training_datasets
from microlatent.device import resolve_device, rng_state, set_rng_state
from microlatent.errors import DataError, InputError
from microlatent.losses import CompositeLoss
from microlatent.models import build_model, load_checkpoint, load_model, save_model
from microlatent.training import distributed
from microlatent.training.config import DEFAULTS, check_values, config_difference, merge
from microlatent.training.diagnostics import LatentStatistics, collapse_warning

OPTIMIZERS = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


class Interrupted(Exception):
    """Raised after an interrupted run has saved its checkpoint."""


class NonFiniteLoss(DataError):
    """The training loss became NaN or infinite (the checkpoint before that step is kept)."""


def train(
    config: dict,
    out_dir,
    resume: bool = False,
    stop_after_steps: int | None = None,
    progress: bool = True,
    on_epoch_end=None,
):
    """Train the model that ``config`` describes; write the run folder ``out_dir``. Returns its path.

    stop_after_steps: behave as if interrupted after that many optimiser steps of this call (tests).
    on_epoch_end: called as ``on_epoch_end(epoch, train_means, val_means)`` (epoch counted from 1, means
    as in epochs.csv without the prefixes) after each epoch's checkpoint is written, on every rank; an
    exception it raises ends the run there (a hyperparameter sweep prunes a trial so).
    """
    check_values(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume and not checkpoint_path.exists():
        raise DataError(f"{checkpoint_path}: nothing to resume (no checkpoint in {out_dir})")
    if not resume and checkpoint_path.exists():
        raise InputError(f"{out_dir} already holds a run: pass --resume to continue it, or choose another --out")

    for stale in out_dir.glob("*.pt.tmp*"):  # a kill during a checkpoint write leaves its temporary file
        stale.unlink(missing_ok=True)
    saved = load_checkpoint(checkpoint_path)["extra"] if resume else None
    if saved is not None:
        # A resumed run keeps the config it started with (keys added since take their defaults; the device may change).
        saved_config = merge(DEFAULTS, saved["config"], origin=str(checkpoint_path))
        _check_same_config(saved_config, config, checkpoint_path)
        config = saved_config
    # One process, or one rank of a torchrun job (then: this rank's GPU, and rank 0 writes the files).
    ddp, device = distributed.setup(resolve_device(config["train"]["device"]))
    autocast = _autocast(config["train"]["amp"], device)  # checked before anything is written
    if ddp.is_main:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    seed = config["seed"]
    torch.manual_seed(seed)
    train_set, val_set = training_datasets(config["data"], ddp)
    if len(train_set) == 0:
        raise DataError(
            f"{config['data']['path']}: no training images (a MICRO2D-layout file holds a group C "
            "with an image dataset C/C per class)"
        )
    optim_cfg, sched_cfg = config["optim"], config["schedule"]
    batches_per_epoch = math.ceil(len(train_set) / optim_cfg["batch_size"])
    if config["train"]["max_steps_per_epoch"]:
        batches_per_epoch = min(batches_per_epoch, config["train"]["max_steps_per_epoch"])

    phased = _with_phases(config, getattr(train_set, "n_phases", 2))
    if phased is not config and ddp.is_main:
        (out_dir / "config.yaml").write_text(yaml.safe_dump(phased, sort_keys=False))
    config = phased
    model = _initial_model(config, checkpoint_path if resume else None).to(device)
    optimizer = OPTIMIZERS[_choice(optim_cfg["name"], OPTIMIZERS, "optim.name")](
        [p for p in model.parameters() if p.requires_grad], lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"]
    )
    scheduler = _scheduler(optimizer, sched_cfg, batches_per_epoch)
    loss_fn = CompositeLoss(config["loss"])
    output_start = None
    if not resume and not config["train"]["init_from"]:
        # The decoder starts at the training data's mean phase-1 share, not at 0.5 grey (see
        # VAE.start_output_at: a 0.5 start on sparse data ended in posterior collapse), as the
        # loss's statistics see it (CompositeLoss.output_start).
        vf = mean_volume_fraction(train_set)
        start = loss_fn.output_start(vf)
        output_start = {"volume_fraction": vf, "output": start, "bias": model.start_output_at(start)}
    if ddp.is_main:
        _write_metadata(out_dir / "run.json", model, loss_fn, device, config, ddp.world_size, output_start, resume)
    net = ddp.wrap(model)  # DistributedDataParallel under torchrun; the model itself otherwise
    loader, sampler = make_loader(train_set, config["data"]["num_workers"], device)
    augmentations = check_augmentations(config["data"]["augment"], "data.augment")

    epoch, batch_index, step, totals = 0, 0, 0, {}
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        epoch, batch_index, step, totals = saved["epoch"], saved["batch_index"], saved["step"], saved["totals"]
        set_rng_state(saved["rng"], device)

    def save(next_epoch, next_batch):
        if ddp.is_main:
            save_model(
                model,
                checkpoint_path,
                extra={
                    "config": config,
                    "epoch": next_epoch,
                    "batch_index": next_batch,
                    "step": step,
                    "totals": totals,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": rng_state(device),
                },
            )
        ddp.barrier()  # no rank moves on (or exits) before the checkpoint is on disk

    steps_this_call = 0
    last_save = time.monotonic()
    units = model.latent_shape(tuple(train_set[0]["image"].shape[-2:]))[0] if len(train_set) else 0
    with (
        _interrupt_flag() as interrupted,
        _Logs(
            out_dir, loss_fn.names, append=resume, enabled=ddp.is_main, latent_units=units, up_to=(step, epoch)
        ) as log,
    ):
        while epoch < optim_cfg["epochs"]:
            model.train()
            order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            batches = order.split(optim_cfg["batch_size"])[:batches_per_epoch]
            sampler.batches = [ddp.shard(batch) for batch in batches[batch_index:]]  # what the loader loads
            bar = tqdm(
                loader,
                initial=batch_index,
                total=len(batches),
                desc=f"epoch {epoch + 1}/{optim_cfg['epochs']}",
                disable=not progress or not ddp.is_main,
                leave=False,
                unit="batch",
            )
            started = time.perf_counter()
            for batch_index, images in enumerate(bar, start=batch_index):
                images = images.to(device, non_blocking=True)
                batch_size = len(batches[batch_index])  # the global batch: all ranks together
                if augmentations:  # drawn per (seed, epoch, batch), so a resumed run sees the same images
                    draws = torch.Generator().manual_seed((seed * 100_003 + epoch) * 1_000_003 + batch_index)
                    first = distributed.shard_bounds(batch_size, ddp.rank, ddp.world_size)[0]
                    images = augment(images, augmentations, draws, first, batch_size)
                # The latent noise of the whole global batch, this rank's rows (as one process draws it).
                eps = ddp.noise(batch_size, model.latent_shape(tuple(images.shape[-2:])), device)
                with autocast():
                    recon, mu, logvar = net(images, eps=eps)
                # Outside autocast: inside, the style loss's Gram matrices (small differences of large sums)
                # ran in bfloat16; no loss should depend on autocast's per-device op lists.
                loss, parts = loss_fn(recon.float(), images, mu.float(), logvar.float())
                parts, stop = ddp.mean_over_ranks({"loss": loss.detach(), **parts}, batch_size, interrupted())
                if not torch.isfinite(parts["loss"]):
                    save(epoch, batch_index)
                    raise NonFiniteLoss(
                        f"{checkpoint_path}: loss became {parts['loss'].item()} at step {step}; checkpoint kept"
                    )
                optimizer.zero_grad(set_to_none=True)
                (loss * ddp.loss_weight(batch_size)).backward()  # DDP averages gradients: weight by shard size
                if optim_cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg["grad_clip"])
                optimizer.step()
                scheduler.step()
                step += 1
                steps_this_call += 1
                now = time.perf_counter()
                rate, started = batch_size / (now - started), now
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value.item()
                bar.set_postfix(loss=f"{parts['loss'].item():.4g}", img_s=f"{rate:.1f}")
                if step % config["train"]["log_every"] == 0:
                    log.step(step, epoch, parts, scheduler.get_last_lr()[0], rate)
                if stop or steps_this_call == stop_after_steps:
                    save(epoch, batch_index + 1)
                    raise Interrupted(
                        f"interrupted at epoch {epoch + 1}, step {step}; resume with --resume ({out_dir})"
                    )
                # one process only: under torchrun the ranks' clocks would disagree on when to save (and deadlock)
                if ddp.world_size == 1 and time.monotonic() - last_save > config["train"]["checkpoint_every_s"]:
                    save(epoch, batch_index + 1)  # a kill inside a long epoch then loses minutes, not the epoch
                    last_save = time.monotonic()
            train_means = {k: v / max(1, len(batches)) for k, v in totals.items()}
            latents = LatentStatistics()
            val_means = evaluate_loss(
                model,
                val_set,
                loss_fn,
                optim_cfg["batch_size"],
                device,
                autocast,
                num_workers=config["data"]["num_workers"],
                ddp=ddp,
                latents=latents,
            )
            diagnostics = latents.result()
            log.epoch(epoch, train_means, val_means, diagnostics)
            warning = collapse_warning(diagnostics)
            if warning and ddp.is_main and epoch + 1 == optim_cfg["epochs"]:
                warnings.warn(f"{out_dir}: {warning}", PosteriorCollapseWarning, stacklevel=2)
            epoch, batch_index, totals = epoch + 1, 0, {}
            save(epoch, 0)
            last_save = time.monotonic()
            if on_epoch_end is not None:
                on_epoch_end(epoch, train_means, val_means)
    if ddp.is_main:
        save_model(model, out_dir / "model.pt", extra={"config": config, "epoch": epoch, "step": step})
    ddp.barrier()
    return out_dir


class PosteriorCollapseWarning(UserWarning):
    """The finished model's decoder ignores its latent code (see microlatent.training.diagnostics)."""


def _write_metadata(path, model, loss_fn, device, config, world_size=1, output_start=None, resume=False):
    """run.json: versions, device, parameter count, where pretrained weights came from (or that
    they were random) and where the output layer started, so a result can be traced without the
    console output. A resumed run keeps the output start its first call recorded."""
    from microlatent import __version__

    if resume and path.exists():
        output_start = json.loads(path.read_text()).get("output_start", output_start)

    metadata = {
        "name": config["name"],
        "microlatent": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "processes": world_size,
        "model": model.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model_weights": {k: getattr(model, k) for k in ("weights_source", "pretrained") if hasattr(model, k)},
        "loss_weights": loss_fn.provenance,
        # logit of the training split's mean volume fraction (null: weights from init_from)
        "output_start": output_start,
    }
    path.write_text(json.dumps(metadata, indent=2, default=str))


@torch.no_grad()
def evaluate_loss(
    model, dataset, loss_fn, batch_size, device, autocast=nullcontext, num_workers=0, ddp=None, latents=None
):
    """Mean loss terms of ``model`` (eval mode: z = mu) over ``dataset``; {} for an empty set.

    latents: a ``LatentStatistics`` that receives every batch's mu, logvar and reconstruction (under
    torchrun: this rank's share of the batches).
    num_workers: DataLoader worker processes. ddp: a ``distributed.Distributed``; each rank then
    evaluates every world_size-th batch and the sums are reduced, so every rank gets the same means.
    """
    if len(dataset) == 0:
        return {}
    model.eval()
    loader, sampler = make_loader(dataset, num_workers, device, persistent=False)
    sampler.batches = list(torch.arange(len(dataset)).split(batch_size))
    if ddp is not None:
        sampler.batches = sampler.batches[ddp.rank :: ddp.world_size]
    totals = dict.fromkeys(["loss", *loss_fn.names], 0.0)
    count = 0
    for images in loader:
        images = images.to(device, non_blocking=True)
        with autocast():
            recon, mu, logvar = model(images)
        loss, parts = loss_fn(recon.float(), images, mu.float(), logvar.float())
        if latents is not None:
            latents.add(mu, logvar, recon)
        for name, value in {"loss": loss, **parts}.items():
            totals[name] += value.item() * len(images)
        count += len(images)
    if ddp is not None:
        *sums, count = ddp.sum_over_ranks([*totals.values(), count])
        totals = dict(zip(totals, sums))
    model.train()
    return {name: value / count for name, value in totals.items()}


def _check_same_config(saved, asked, checkpoint_path):
    """InputError if a resume asks for another config than the run's (``train.device`` may differ):
    silently keeping the saved one would ignore, say, ``--set optim.epochs=4``."""
    difference = config_difference(saved, asked)
    if difference:
        key, had, wants = difference
        raise InputError(
            f"{checkpoint_path}: a resumed run keeps its config, and this one asks for "
            f"{key} = {wants!r} where the run has {had!r}; start a new run (another --out) to change it"
        )


def _with_phases(config, n_phases):
    """The config with ``model.phases`` set to the data's number of phases when it has more than two
    (a K-phase VAE: one-hot in, softmax out); InputError when the config asks for another number."""
    asked = config["model"].get("phases")
    if asked is not None and int(asked) != n_phases:
        raise InputError(f"config model.phases = {asked}, but the training data has {n_phases} phases")
    if n_phases == 2:
        return config
    return {**config, "model": {**config["model"], "phases": n_phases}}


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
        for key, value in model_cfg.items():  # the architecture comes from the checkpoint: say so, never record another
            if key in model.config and model.config[key] != value:
                raise InputError(
                    f"{init_from} holds a model with {key} = {model.config[key]!r} but the config "
                    f"asks for model.{key} = {value!r}; a finetune keeps the checkpoint's architecture"
                )
        return model
    return build_model(name, **model_cfg)


def _scheduler(optimizer, cfg, batches_per_epoch):
    name = _choice(cfg["name"], ("cosine_warm_restarts", "constant"), "schedule.name")
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    # Stepped every batch, so the cosine is smooth within an epoch and restarts every period_epochs.
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, cfg["period_epochs"] * batches_per_epoch), eta_min=cfg["min_lr"]
    )


AMP_MODES = ("auto", "bf16", "off")


def _autocast(amp, device):
    """The context factory the forward passes run in, for config ``train.amp`` on ``device``:
    ``torch.autocast(device.type, bfloat16)`` for "bf16" (on any device, the CPU included) and for
    "auto" on CUDA; no autocast (``nullcontext``) for "off" and for "auto" elsewhere. Configs written
    before train.amp took a mode hold true (= auto) or false (= off); null means auto."""
    if amp is None or isinstance(amp, bool):
        amp = "off" if amp is False else "auto"
    if not isinstance(amp, str) or amp not in AMP_MODES:
        raise InputError(f"config train.amp = {amp!r} is not one of {', '.join(AMP_MODES)} (true = auto, false = off)")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _choice(value, options, key):
    if value not in options:
        raise InputError(f"config {key} = {value!r} is not one of {', '.join(options)}")
    return value


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


def _truncate_csv(path, column, last):
    """Keep the header and the rows of ``path`` whose ``column`` is <= ``last`` (atomic rewrite)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or column not in rows[0]:
        return
    at = rows[0].index(column)
    kept = [rows[0]] + [row for row in rows[1:] if len(row) > at and row[at] and float(row[at]) <= last]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


class _Logs:
    """steps.csv and epochs.csv (appended to when a run resumes), plus TensorBoard when installed.
    A context manager; with ``enabled=False`` (ranks other than 0) it writes nothing."""

    def __init__(self, out_dir, names, append, enabled=True, latent_units=0, up_to=None):
        self.enabled, self.board = enabled, None
        if not enabled:
            return
        if append and up_to is not None:  # rows written after the checkpoint we resume from are redone: drop them
            _truncate_csv(out_dir / "steps.csv", "step", up_to[0])
            _truncate_csv(out_dir / "epochs.csv", "epoch", up_to[1])
        mode = "a" if append else "w"
        self.step_file = open(out_dir / "steps.csv", mode, newline="")
        self.epoch_file = open(out_dir / "epochs.csv", mode, newline="")
        terms = ["loss", *names]
        self.steps = csv.DictWriter(self.step_file, ["step", "epoch", *terms, "lr", "images_per_s"])
        # Latent diagnostics of the validation set (microlatent.training.diagnostics): active units,
        # the reconstructions' pixel std across inputs and the KL of each latent unit.
        latent = ["val_active_units", "val_output_std", *[f"val_kl_unit{i}" for i in range(latent_units)]]
        self.epochs = csv.DictWriter(
            self.epoch_file,
            ["epoch", *[f"train_{t}" for t in terms], *[f"val_{t}" for t in terms], *latent],
            extrasaction="ignore",
        )
        for file, writer in ((self.step_file, self.steps), (self.epoch_file, self.epochs)):
            if file.tell() == 0:  # a new log, or one killed before its header reached the disk
                writer.writeheader()
                file.flush()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(out_dir / "tensorboard")
        except ImportError:
            pass

    def step(self, step, epoch, parts, lr, rate):
        if not self.enabled:
            return
        row = {"step": step, "epoch": epoch + 1, "lr": lr, "images_per_s": round(rate, 2)}
        row.update({name: value.item() for name, value in parts.items()})
        self.steps.writerow(row)
        self.step_file.flush()
        if self.board:
            for name, value in parts.items():
                self.board.add_scalar(f"train/{name}", value.item(), step)

    def epoch(self, epoch, train_means, val_means, diagnostics=None):
        if not self.enabled:
            return
        row = {
            "epoch": epoch + 1,
            **{f"train_{k}": v for k, v in train_means.items()},
            **{f"val_{k}": v for k, v in val_means.items()},
        }
        if diagnostics:
            row.update(val_active_units=diagnostics["active_units"], val_output_std=round(diagnostics["output_std"], 6))
            row.update({f"val_kl_unit{i}": round(v, 6) for i, v in enumerate(diagnostics["kl_per_unit"])})
        self.epochs.writerow(row)
        self.epoch_file.flush()
        if self.board:
            for name, value in val_means.items():
                self.board.add_scalar(f"val/{name}", value, epoch + 1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.step_file.close()
            self.epoch_file.close()
        if self.board:
            self.board.close()
