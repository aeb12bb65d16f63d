"""``microlatent train | finetune | encode | decode | reconstruct``."""

from pathlib import Path

import click
import numpy as np
import torch

from microlatent.data.sources import load_images
from microlatent.errors import DataError, InputError

_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="Override a config value, e.g. --set optim.epochs=5 --set loss.kl=1e-3 (repeatable).")
_DEVICE = click.option("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the config's train.device).")
_OUT = click.option("--out", type=click.Path(path_type=Path), default=None,
                    help="Run folder (default runs/<config name>).")


@click.command()
@click.argument("config")
@_SET
@_OUT
@_DEVICE
@click.option("--resume", is_flag=True, help="Continue the interrupted or finished run in --out from its checkpoint.")
def train(config, overrides, out, device, resume):
    """Train a model from CONFIG (a YAML/TOML file or a shipped config's name, see `microlatent configs`)."""
    _run(config, overrides, out, device, resume)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("config")
@_SET
@_OUT
@_DEVICE
@click.option("--resume", is_flag=True, help="Continue an interrupted finetuning run in --out.")
def finetune(checkpoint, config, overrides, out, device, resume):
    """Start from CHECKPOINT's weights and train with CONFIG (e.g. an MSE model finetuned with CESS)."""
    _run(config, (*overrides, f"train.init_from={checkpoint}"), out, device, resume)


@click.command()
def configs():
    """List the configs that ship with microlatent."""
    from microlatent.training.config import load_config, shipped_configs

    for name in shipped_configs():
        cfg = load_config(name)
        click.echo(f"{name:32s} {cfg['model']['name']:12s} loss {', '.join(cfg['loss'])}")


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".npz with mu, logvar and names.")
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) to encode (default all).")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="all", show_default=True)
@click.option("--n", "limit", type=click.IntRange(min=1), default=None, help="At most this many images per class.")
@_DEVICE
def encode(checkpoint, source, out, classes, split, limit, device):
    """Encode the microstructures in SOURCE (HDF5, image, folder or .npy) to latent means and log-variances."""
    model, device = _model(checkpoint, device)
    names, mu, logvar = [], [], []
    for batch, batch_names in _batches(source, model, classes, split, limit):
        with torch.no_grad():
            m, lv = model.encode(batch.to(device))
        mu.append(m.cpu().numpy())
        logvar.append(lv.cpu().numpy())
        names.extend(batch_names)
    _save_npz(out, mu=np.concatenate(mu), logvar=np.concatenate(logvar), names=np.array(names))
    click.echo(f"wrote {out}: {len(names)} latent codes of shape {mu[0].shape[1:]}")


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("latents", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help=".npz of decoded images (N, H, W); a PNG grid beside it.")
@click.option("--threshold", type=float, default=None, help="Also threshold the decoded probabilities at this value.")
@_DEVICE
def decode(checkpoint, latents, out, threshold, device):
    """Decode latent codes (the 'mu' array of an `encode` .npz) back to microstructures."""
    model, device = _model(checkpoint, device)
    try:
        z = torch.from_numpy(np.load(latents)["mu"]).float()
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{latents}: not an .npz with a 'mu' array ({err})") from None
    with torch.no_grad():
        images = torch.cat([model.decode(chunk.to(device)).cpu() for chunk in z.split(64)])[:, 0].numpy()
    if threshold is not None:
        images = (images > threshold).astype(np.float32)
    _save_npz(out, images=images)
    from microlatent.plotting import plot_images_with_statistics

    figure = plot_images_with_statistics(images[:12], [f"decoded {i}" for i in range(min(12, len(images)))],
                                         Path(out).with_suffix(".png"))
    click.echo(f"wrote {out} ({images.shape}) and {figure}")


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="PNG figure; an .npz of reconstructions beside it.")
@click.option("--class", "classes", multiple=True, help="HDF5 input: class(es) (default all).")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True)
@click.option("--n", "limit", type=click.IntRange(min=1), default=2, show_default=True, help="Images per class.")
@_DEVICE
def reconstruct(checkpoint, source, out, classes, split, limit, device):
    """Reconstruct microstructures through the model and draw inputs and reconstructions with their statistics."""
    from microlatent.plotting import plot_reconstructions

    model, device = _model(checkpoint, device)
    inputs, recons, names = [], [], []
    for batch, batch_names in _batches(source, model, classes, split, limit):
        with torch.no_grad():
            recon, _, _ = model(batch.to(device))
        inputs.append(batch[:, 0].numpy())
        recons.append(recon[:, 0].cpu().numpy())
        names.extend(batch_names)
    inputs, recons = np.concatenate(inputs), np.concatenate(recons)
    plot_reconstructions(inputs, {Path(checkpoint).parent.name or "model": recons}, names, out)
    _save_npz(Path(out).with_suffix(".npz"), inputs=inputs, reconstructions=recons, names=np.array(names))
    click.echo(f"wrote {out}")


def _run(config, overrides, out, device, resume):
    from microlatent.training import Interrupted, load_config, train as train_run

    cfg = load_config(config, overrides)
    if device:
        cfg["train"]["device"] = device
    out = out or Path("runs") / cfg["name"]
    try:
        run = train_run(cfg, out, resume=resume)
    except Interrupted as stop:
        raise click.ClickException(str(stop)) from None
    click.echo(f"done: {run / 'model.pt'}")


def _model(checkpoint, device):
    """The checkpoint's model in eval mode on the device, with ``trained_size``: the image side its
    training config resized to (None: as stored)."""
    from microlatent.models import load_checkpoint, load_model
    from microlatent.training import resolve_device

    device = resolve_device(device or "auto")
    model = load_model(checkpoint).to(device).eval()
    extra = load_checkpoint(checkpoint).get("extra") or {}
    model.trained_size = ((extra.get("config") or {}).get("data") or {}).get("size")
    return model, device


def _batches(source, model, classes, split, limit, batch_size=32):
    """(N, 1, H, W) float tensors of SOURCE's images, resized to what the model was trained on."""
    images, names = load_images(source, classes=classes or None, split=split, limit=limit)
    size = model.trained_size
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if len({im.shape for im in chunk}) > 1:
            raise InputError(f"{source}: images of different sizes cannot be batched")
        batch = torch.from_numpy(np.stack(chunk))[:, None]
        if size and batch.shape[-1] != size:
            batch = torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
        yield batch, names[start : start + batch_size]


def _save_npz(path, **arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
