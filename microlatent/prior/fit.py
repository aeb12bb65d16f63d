"""Fitting a latent prior to a trained VAE, saving and loading it, and sampling microstructures.

A prior folder holds
    prior.pt      the flow network, its optimiser, RNG state and position (``torch.load(weights_only=True)``
                  readable, written atomically after every epoch), the latent normalisation, class
                  names, property names and their training statistics, the VAE's identity
    losses.csv    mean training loss per epoch

``fit_prior(..., resume=True)`` continues from prior.pt to the state an uninterrupted run reaches:
the batch order of an epoch comes from a generator seeded by (seed, epoch), and the global RNG (which
draws posterior samples, path noise and times) is saved and restored with the rest.

    prior = fit_prior("runs/cai/model.pt", "data.h5", "runs/cai/prior", properties=("Ex",))
    latents = prior.sample(64, class_name="GRF", targets={"Ex": 6.0}, seed=0)   # (64, C, h, w)
    images = generate(run, prior, 64, class_name="GRF")                         # (64, H, W) uint8
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from microlatent.errors import DataError, InputError
from microlatent.prior.flow import LatentFlow, flow_matching_loss

FORMAT, VERSION = "microlatent-latent-prior", 1
PRIOR_FILE = "prior.pt"
# latents: "mean" fits the encoder means (what reconstructions decode), "sample" posterior draws mu + sigma * eps
DEFAULTS = {
    "epochs": 400,  # 200 left targeted Ex nRMSE at 0.215 (mean of 4 seeds), 400 reached 0.183 (README)
    "batch_size": 128,
    "lr": 1e-3,
    "width": 64,
    "depth": 4,
    "p_drop": 0.1,
    "seed": 0,
    "latents": "mean",
    "ema": 0.999,  # decay of the exponential moving average of the weights that sampling uses (0: none)
    # labels: what property values each training code is conditioned on. "decoded": the FE solver's
    # properties of the code's own decoded, thresholded image (what sampling that code gives, so a
    # target is met through the decoder's round trip); "data": the file's homogenized labels of the
    # input image (the round trip's error, ~0.2 of the labels' std for a 4 x 4 x 4 latent, then adds to
    # every targeted sample's).
    "labels": "decoded",
}
# CPU: a 4 x 4 x 4 latent of 64 px images trains in 7-13 minutes. GPU: the paper-scale latents
# (4 x 28 x 28 of 224 px images through TAESD's /8 encoder) want a wider, deeper net and more epochs.
# Guidance of the property condition when sampling for targets: measured on the MICRO2D-like 64 px set
# (README, "Generation in latent space"), targeted Ex nRMSE 0.28 at 1, 0.21 at 2, 0.20 at 3, 0.19 at 4,
# 0.21 at 6, with the same diversity; the class condition keeps 1, its most realistic setting.
PROPERTY_GUIDANCE = 3.0
PRESETS = {"cpu": dict(DEFAULTS), "gpu": {**DEFAULTS, "epochs": 1000, "batch_size": 256, "width": 128, "depth": 8}}


@dataclass
class Prior:
    """A fitted latent prior: the flow network, how latents were normalised, what it is conditioned on."""

    net: LatentFlow
    mean: torch.Tensor  # (C,) per-channel mean of the training latents
    std: torch.Tensor  # (C,)
    classes: list
    properties: list
    property_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    property_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    property_range: list = field(default_factory=list)  # [(min, max)] of each property's training labels
    vae: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    phases: dict | None = None  # phase properties of the labels it is conditioned on

    @classmethod
    def load(cls, path) -> Prior:
        """A prior written by :func:`fit_prior` (a folder or its prior.pt); DataError if not one."""
        path = Path(path)
        file = path / PRIOR_FILE if path.is_dir() else path
        if not file.is_file():
            raise DataError(f"{file}: no latent prior here (train one with `microlatent prior train`)")
        saved = _read(file)
        if saved["epoch"] < saved["settings"]["epochs"]:
            raise DataError(
                f"{file}: training stopped at epoch {saved['epoch']} of {saved['settings']['epochs']}; "
                "finish it with `microlatent prior train ... --resume`"
            )
        return cls._from_saved(saved)

    @classmethod
    def _from_saved(cls, saved) -> Prior:
        net = _flow(saved["net_config"])
        net.load_state_dict(saved.get("ema_state_dict") or saved["state_dict"])  # sampling uses the averaged weights
        return cls(
            net=net.eval(),
            mean=saved["mean"],
            std=saved["std"],
            classes=list(saved["classes"]),
            properties=list(saved["properties"]),
            property_mean=np.asarray(saved["property_mean"], dtype=np.float64),
            property_std=np.asarray(saved["property_std"], dtype=np.float64),
            property_range=[tuple(r) for r in saved["property_range"]],
            vae=dict(saved["vae"]),
            settings=dict(saved["settings"]),
            phases=saved.get("phases"),
        )

    def conditions(self, n, class_name=None, targets=None):
        """(classes (n,) long, props (n, P), mask (n, P)) tensors for one request."""
        classes = torch.full((n,), self.net.null_class, dtype=torch.long)
        if class_name is not None:
            if class_name not in self.classes:
                raise InputError(f"class {class_name!r} is not one the prior knows ({', '.join(self.classes)})")
            classes[:] = self.classes.index(class_name)
        props, mask = torch.zeros(n, len(self.properties)), torch.zeros(n, len(self.properties))
        for name, value in (targets or {}).items():
            if name not in self.properties:
                known = ", ".join(self.properties) or "none: train it with --condition"
                raise InputError(f"the prior is not conditioned on {name} (its properties: {known})")
            k = self.properties.index(name)
            props[:, k] = (float(value) - self.property_mean[k]) / self.property_std[k]
            mask[:, k] = 1.0
        return classes, props, mask

    def sample(
        self, n, class_name=None, targets=None, steps=50, guidance=1.0, seed=0, property_guidance=PROPERTY_GUIDANCE
    ) -> np.ndarray:
        """(n, C, h, w) float32 latent codes in the VAE's units (denormalised). ``guidance`` scales the
        class condition, ``property_guidance`` the targets (see :meth:`LatentFlow.sample`)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"the number of samples must be a positive integer, got {n!r}")
        classes, props, mask = self.conditions(n, class_name, targets)
        z = self.net.sample(
            n, classes, props, mask, steps=steps, guidance=guidance, seed=seed, property_guidance=property_guidance
        )
        z = z * self.std[None, :, None, None] + self.mean[None, :, None, None]
        return z.numpy().astype(np.float32)


def _flow(config) -> LatentFlow:
    """The flow network of a saved ``net_config`` (priors saved before the property MLP had a linear map)."""
    return LatentFlow(**{"property_mlp": False, **config})


def _read(file) -> dict:
    """The saved dict of a prior.pt (weights-only loading); DataError in one line if it is not one."""
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{file}: not a readable latent prior ({type(err).__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("version") != VERSION:
        raise DataError(f"{file}: not a microlatent latent prior (version {VERSION})")
    return saved


def generate(
    run,
    prior,
    n,
    class_name=None,
    targets=None,
    steps=50,
    guidance=1.0,
    seed=0,
    threshold=0.5,
    property_guidance=PROPERTY_GUIDANCE,
):
    """(images (n, H, W) uint8 0/1, probabilities (n, H, W) float32, latents): prior samples decoded by
    the run's VAE and thresholded. A K-phase VAE: images of the most probable phase per pixel (0..K-1)
    and probabilities (n, K, H, W)."""
    from microlatent.evaluation.inference import decode, phase_labels

    check_vae(prior, run)
    latents = prior.sample(n, class_name, targets, steps, guidance, seed, property_guidance)
    probabilities = decode(run, latents)
    return phase_labels(probabilities, threshold), probabilities, latents


def check_vae(prior, run):
    want = prior.vae.get("state_dict_sha256")
    if want and run.state_dict_sha256 != want:
        raise DataError(
            f"{os.fspath(run.path)}: not the VAE this prior was trained on (it names {prior.vae.get('path')})"
        )


def training_latents(run, data, properties=(), limit=None, labels="data", progress=None):
    """The run's training split of ``data``, encoded: ``(mu, logvar) (N, C, h, w), class names of each
    image, property values (N, P) (None without properties)``. ``labels="data"`` takes the values from
    the file's homogenized labels; ``"decoded"`` solves each code's decoded, thresholded image
    (``mu`` through the decoder; a K-phase VAE's most probable phase per pixel; phases as the file's
    labels were made, else Cai et al.'s)."""
    from microlatent.data.split import read_split
    from microlatent.design.regression import PROPERTY_NAMES
    from microlatent.evaluation.inference import encode

    unknown = [p for p in properties if p not in PROPERTY_NAMES]
    if unknown:
        raise InputError(f"unknown property {unknown[0]!r} (choose from {', '.join(PROPERTY_NAMES)})")
    if labels not in ("data", "decoded"):
        raise InputError(f"labels must be 'data' or 'decoded', got {labels!r}")
    columns = [PROPERTY_NAMES.index(p) for p in properties]
    if properties and labels == "data":
        from microlatent.design.labels import read_labelled_split

        images, y, _, class_of = read_labelled_split(data, "train", run.split, limit)
        values = y[:, columns]
        images = list(images)
    else:
        samples = read_split(data, "train", run.split, limit_per_class=limit)
        images, class_of, values = samples.images, samples.classes, None
    if not len(images):
        raise DataError(f"{data}: the run's training split holds no images")
    mu, logvar = encode(run, images)
    if properties and labels == "decoded":
        from microlatent.design.closed_loop import decoded_properties
        from microlatent.design.labels import phase_settings

        if progress:
            progress(f"labels: solving the decoded reconstructions of {len(mu)} training codes")
        y, _ = decoded_properties(run, mu, phase_settings(data, sorted(set(class_of)), run.model.n_phases))
        values = y[:, columns]
    return mu, logvar, list(class_of), values


def fit_prior(
    checkpoint,
    data,
    out_dir,
    properties=(),
    resume=False,
    limit=None,
    progress=True,
    stop_after_epochs=None,
    device="cpu",
    **settings,
):
    """Train a flow-matching prior on the latent codes of ``checkpoint``'s training split of ``data``,
    conditioned on each image's class and on ``properties`` (names from PROPERTY_NAMES; needs
    ``homogenized_mechanical`` labels). ``settings``: epochs, batch_size, lr, width, depth, p_drop,
    seed (DEFAULTS; PRESETS has a CPU and a GPU set); ``device``: where the flow network trains
    (auto, cpu, cuda; the VAE encodes on the CPU). Writes ``out_dir`` (see the module docstring);
    returns the :class:`Prior`, or None when ``stop_after_epochs`` (tests: stop as if interrupted after
    that many epochs of this call) ended it."""
    from microlatent.models.run import Run

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown prior setting(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
    out_dir = Path(out_dir)
    file = out_dir / PRIOR_FILE
    saved = None
    if resume:
        if not file.is_file():
            raise DataError(f"{file}: nothing to resume")
        saved = _read(file)
        settings, properties = saved["settings"], tuple(saved["properties"])
        settings.setdefault("labels", "data")  # priors saved before decoded labels existed used the file's
    elif file.exists():
        raise InputError(f"{out_dir} already holds a prior: pass --resume to continue it, or choose another --out")
    settings = {**DEFAULTS, **settings}
    if not 0.0 <= float(settings["ema"]) < 1.0:
        raise InputError(f"ema must be a decay in [0, 1), got {settings['ema']!r}")
    if settings["latents"] not in ("mean", "sample"):
        raise InputError(f"latents must be 'mean' or 'sample', got {settings['latents']!r}")
    if settings["labels"] not in ("data", "decoded"):
        raise InputError(f"labels must be 'data' or 'decoded', got {settings['labels']!r}")
    for key in ("epochs", "batch_size", "width", "depth"):
        if not isinstance(settings[key], (int, np.integer)) or settings[key] < 1:
            raise InputError(f"{key} must be a positive integer, got {settings[key]!r}")
    run = Run.load(checkpoint, "cpu")
    say = (lambda message: tqdm.write(message)) if progress else None
    mu, logvar, class_of, values = training_latents(run, data, tuple(properties), limit, settings["labels"], say)
    classes = sorted(set(class_of)) if saved is None else list(saved["classes"])
    missing = sorted(set(class_of) - set(classes))
    if missing:
        raise DataError(f"{data}: class {missing[0]!r} was not in the data this prior started on")
    mu, sigma = torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar))
    if settings["latents"] == "mean":
        sigma = torch.zeros_like(sigma)
    if saved is None:
        mean, std = mu.mean(dim=(0, 2, 3)), mu.std(dim=(0, 2, 3)).clamp_min(1e-6)
    else:
        mean, std = saved["mean"], saved["std"]
    label = torch.tensor([classes.index(c) for c in class_of], dtype=torch.long)
    P = len(properties)
    phases = None
    if P:
        from microlatent.design.labels import phase_settings

        phases = {k: v for k, v in phase_settings(data, classes, run.model.n_phases).items() if k != "source"}
        p_mean = values.mean(axis=0) if saved is None else np.asarray(saved["property_mean"])
        p_std = values.std(axis=0).clip(1e-12) if saved is None else np.asarray(saved["property_std"])
        props = torch.from_numpy((values - p_mean) / p_std).float()
        p_range = [(float(lo), float(hi)) for lo, hi in zip(values.min(axis=0), values.max(axis=0))]
    else:
        p_mean, p_std, props, p_range = np.zeros(0), np.zeros(0), torch.zeros(len(mu), 0), []

    from microlatent.device import resolve_device, rng_state, set_rng_state

    device = resolve_device(device)
    torch.manual_seed(settings["seed"])
    if saved is None:
        net = LatentFlow(mu.shape[1:], len(classes), P, settings["width"], settings["depth"], settings["p_drop"])
    else:
        net = _flow(saved["net_config"])
    net = net.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings["lr"], weight_decay=0.0)
    ema = _flow(net.config).to(device)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    epoch, losses = 0, []
    if saved is not None:
        net.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved.get("ema_state_dict"):
            ema.load_state_dict(saved["ema_state_dict"])
        epoch, losses = saved["epoch"], list(saved["losses"])
        set_rng_state(saved["rng"], device)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save():
        state = {
            "format": FORMAT,
            "version": VERSION,
            "net_config": net.config,
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            "ema_state_dict": {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()}
            if settings["ema"]
            else None,
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(device),
            "epoch": epoch,
            "losses": losses,
            "settings": settings,
            "mean": mean,
            "std": std,
            "classes": classes,
            "properties": list(properties),
            "property_mean": [float(v) for v in p_mean],
            "property_std": [float(v) for v in p_std],
            "property_range": [list(r) for r in p_range],
            "vae": run.identity(),
            "data": os.path.abspath(data),
            "n_train": len(mu),
            "phases": phases,
        }
        tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, file)
        with open(out_dir / "losses.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "loss"])
            writer.writerows([k + 1, f"{v:.6g}"] for k, v in enumerate(losses))

    bar = tqdm(total=settings["epochs"], initial=epoch, desc="prior", unit="epoch", disable=not progress)
    net.train()
    first = epoch
    while epoch < settings["epochs"]:
        if stop_after_epochs is not None and epoch - first == stop_after_epochs:
            bar.close()
            return None
        order = torch.randperm(len(mu), generator=torch.Generator().manual_seed(settings["seed"] * 100_003 + epoch))
        total = 0.0
        for batch in order.split(settings["batch_size"]):
            z = (mu[batch] + sigma[batch] * torch.randn(mu[batch].shape) - mean[None, :, None, None]) / std[
                None, :, None, None
            ]
            mask = torch.ones(len(batch), P, device=device)
            loss = flow_matching_loss(net, z.to(device), label[batch].to(device), props[batch].to(device), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if settings["ema"]:
                with torch.no_grad():
                    for average, current in zip(ema.parameters(), net.parameters()):
                        average.lerp_(current, 1.0 - settings["ema"])
            total += loss.item() * len(batch)
        losses.append(total / len(mu))
        if not np.isfinite(losses[-1]):
            raise DataError(f"{file}: the prior's loss became {losses[-1]} at epoch {epoch + 1}; last checkpoint kept")
        epoch += 1
        save()
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    net.eval()
    return Prior.load(file)
