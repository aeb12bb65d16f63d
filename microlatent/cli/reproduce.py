"""``microlatent reproduce hashemi|cai|texture``: a paper's experiments, several seeds, ours beside theirs."""

from pathlib import Path

import click


@click.command()
@click.argument("paper", type=click.Choice(["hashemi", "cai", "texture"]))
@click.option(
    "--scale",
    type=click.Choice(["cpu", "paper"]),
    default="cpu",
    show_default=True,
    help="cpu: the _cpu configs (minutes on 2 cores each); paper: the papers' configs (GPU, real data).",
)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds 0..N-1.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the runs and reports [default: outputs/reproduce/PAPER-SCALE].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value of every config, e.g. --set optim.epochs=2.",
)
def reproduce(paper, scale, seeds, out, device, overrides):
    """Train PAPER's configs for each seed, evaluate them on the test split, and write reproduce.md: our
    numbers (mean ± sd over the seeds) beside the paper's. Run it again to continue after an interruption."""
    from microlatent.evaluation.reproduce import reproduce as run

    out = out or Path("outputs/reproduce") / f"{paper}-{scale}"
    path = run(paper, out, scale=scale, seeds=seeds, device=device, overrides=overrides, log=click.echo)
    click.echo(path.read_text().split("\n\n")[1])
    click.echo(f"comparison: {path} (numbers: {path.with_name('reproduce.json')})")
