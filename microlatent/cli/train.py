"""``microlatent train | finetune | configs``: training runs from configs."""

from pathlib import Path

import click

_SET = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optim.epochs=5 --set loss.kl=1e-3 (repeatable).",
)
_DEVICE = click.option(
    "--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the config's train.device)."
)
_OUT = click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Run folder (default runs/<config name>)."
)


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


def _run(config, overrides, out, device, resume):
    from microlatent.training import Interrupted, load_config
    from microlatent.training import train as train_run

    cfg = load_config(config, overrides)
    if device:
        cfg["train"]["device"] = device
    out = out or Path("runs") / cfg["name"]
    try:
        run = train_run(cfg, out, resume=resume)
    except Interrupted as stop:
        raise click.ClickException(str(stop)) from None
    click.echo(f"done: {run / 'model.pt'}")
