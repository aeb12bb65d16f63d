"""``microlatent sweep``: a Bayesian hyperparameter sweep (Optuna) over a config's ``sweep`` section."""

from pathlib import Path

import click

from microlatent.cli.train import _DEVICE, _SET


@click.command()
@click.argument("config")
@click.option(
    "--trials",
    type=click.IntRange(min=0),
    default=None,
    help="Finished trials the study should hold, counted over all workers (default: the config's "
    "sweep.trials, else 25). 0: only write the reports of an existing study.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs per trial (default: sweep.epochs, else 5). best.yaml keeps the config's optim.epochs.",
)
@click.option(
    "--storage",
    default=None,
    metavar="URL",
    help="Optuna storage: an SQLAlchemy URL (sqlite:///sweep.db, postgresql://user@host/db) or an "
    "SQLite file path. Default: <out>/study.db. Workers that share it share the study.",
)
@click.option("--study", "study_name", default=None, help="Study name (default: the config's name).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Sweep folder: trials/, best.yaml, plots (default runs/<config name>-sweep).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the TPE sampler, for a repeatable one-worker sweep (default: random). "
    "Parallel workers must not share a seed.",
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Progress bars of each trial's training."
)
@_SET
@_DEVICE
def sweep(config, trials, epochs, storage, study_name, out, seed, progress, overrides, device):
    """Search CONFIG's hyperparameters (its sweep section) with Optuna: TPE sampling, median pruning
    on the per-epoch validation loss; write the best as a ready training config (best.yaml).

    Run the same command in several processes or on several machines (same --storage and --study)
    to share one study; run it again to resume an interrupted sweep.
    """
    from microlatent.training import Interrupted, load_config
    from microlatent.training.sweep import sweep as run_sweep

    cfg = load_config(config, overrides)
    if device:
        cfg["train"]["device"] = device
    out = out or Path("runs") / f"{cfg['name']}-sweep"
    try:
        study, reports = run_sweep(
            cfg, out, trials=trials, epochs=epochs, storage=storage, study_name=study_name, seed=seed, progress=progress
        )
    except Interrupted as stop:
        raise click.ClickException(
            f"sweep {stop}\n(that trial counts as failed; the study is saved in its storage: "
            "run the same command again to continue the sweep)"
        ) from None
    states = {}
    for trial in study.trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    click.echo(f"study {study.study_name!r}: {', '.join(f'{n} {s}' for s, n in sorted(states.items())) or 'no trials'}")
    for name, where in reports.items():
        click.echo(f"{name:17s} {where}")
    if isinstance(reports.get("best.yaml"), Path):
        click.echo(f"train the best config with: microlatent train {reports['best.yaml']}")
