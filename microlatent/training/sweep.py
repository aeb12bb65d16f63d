"""Bayesian hyperparameter sweeps with Optuna: TPE sampling, median pruning on the per-epoch
validation loss, a study in a database that several workers share and that an interrupted sweep
resumes. Cai et al. (section 3.4) ran 25 trials of 5 epochs per model, then trained the best for 30.

The search space is the config's ``sweep`` section (see ``microlatent.training.config``). A sweep
folder holds

    study.db               the Optuna study (SQLite), unless --storage names another database
    trials/<study>-NNNN/   each trial's run folder, written by ``train()`` (epochs.csv, model.pt, ...)
    trials.csv             one row per trial: number, state, value, parameters, run folder, error
    best.yaml              the best trial's config: a ready training config with the original
                           optim.epochs and no sweep section (``microlatent train best.yaml``)
    history.png            optimisation history; intermediate.png: per-epoch values, pruned trials end
                           early; importances.png: parameter importances (needs >= 2 finished trials)

Workers: every process (or machine) that runs the same command with the same --storage and --study
joins the study; each stops once the study holds ``trials`` finished (complete or pruned) trials, so
the total may exceed it by up to the number of workers minus one. A killed worker's trial is marked
failed when its heartbeat goes stale (storage heartbeats, 60 s).
"""

from __future__ import annotations

import copy
import csv
import gc
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
import yaml

from microlatent.data.loading import training_datasets
from microlatent.errors import DataError, InputError
from microlatent.training import distributed
from microlatent.training.config import check_sweep, set_dotted
from microlatent.training.loop import NonFiniteLoss, train

FINISHED = ("COMPLETE", "PRUNED")


class SweepResult(NamedTuple):
    study: "optuna.Study"  # noqa: F821
    reports: dict  # file name -> its path, or why it was not written (e.g. importances need 2 complete trials)


def sweep(
    config: dict,
    out_dir,
    trials: int | None = None,
    epochs: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    progress: bool = False,
):
    """Run (or join, or resume) the study of ``config``'s sweep section; write the sweep folder.
    Returns SweepResult(study, reports).

    trials: finished trials the study should hold (default: sweep.trials); 0 only writes the reports.
    epochs: epochs per trial (default: sweep.epochs). storage: an SQLAlchemy URL or a path of an SQLite
    file (default: <out_dir>/study.db). study_name: default the config's name. seed: of the TPE sampler
    (default: random; parallel workers need different seeds, or none).
    """
    try:
        import optuna
    except ImportError:
        raise InputError("microlatent sweep needs Optuna: pip install optuna") from None
    if distributed.launched():
        raise InputError(
            "run sweep workers as separate processes (one per GPU: CUDA_VISIBLE_DEVICES=N), not under torchrun"
        )
    spec = check_sweep(config)
    if spec is None:
        raise InputError(f"config {config['name']!r} has no sweep section (a search space: sweep.params)")
    trials = spec["trials"] if trials is None else trials
    epochs = spec["epochs"] if epochs is None else epochs
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study_name = study_name or config["name"]
    if len(training_datasets(config["data"])[1]) == 0:  # the data is there (generated if asked for) before any trial
        raise InputError(
            f"{config['data']['path']}: the validation split is empty, and a sweep minimises a validation loss"
        )

    # constant_liar: parallel workers do not all propose the point next to the best running trial
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec["startup_trials"], constant_liar=True)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=spec["startup_trials"], n_warmup_steps=spec["warmup_epochs"] + 1
    )
    study = optuna.create_study(
        storage=open_storage(storage or out_dir / "study.db"),
        study_name=study_name,
        direction="minimize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    space = {"params": spec["params"], "metric": spec["metric"], "epochs": epochs}
    if "space" not in study.user_attrs:
        if list((out_dir / "trials").glob(f"{study_name}-*")) and not study.trials:
            raise InputError(
                f"{out_dir / 'trials'} holds trial folders of another study named {study_name!r}: "
                "choose another --out or --study"
            )
        study.set_user_attr("space", _plain(space))
    elif study.user_attrs["space"] != _plain(space):
        raise InputError(
            f"study {study_name!r} was started with another search space, metric or --epochs "
            f"({study.user_attrs['space']}); use another --study (or --out) for this one"
        )

    def objective(trial):
        values = {key: _suggest(trial, key, dist) for key, dist in spec["params"].items()}
        run = out_dir / "trials" / f"{study_name}-{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        last = {}

        def report(epoch, train_means, val_means):
            value = val_means[spec["metric"].removeprefix("val_")]
            last["value"] = value
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"{spec['metric']} is {value} after epoch {epoch}")
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{spec['metric']} {value:.4g} after epoch {epoch}: worse than the median")

        try:
            train(trial_config(config, values, epochs), run, progress=progress, on_epoch_end=report)
        except NonFiniteLoss as err:  # these hyperparameters diverge: a bad region for the sampler to learn
            trial.set_user_attr("error", str(err))
            raise optuna.TrialPruned(str(err)) from None
        except (InputError, torch.cuda.OutOfMemoryError) as err:  # e.g. a width the model refuses, or too big a batch
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        return last["value"]

    def after_trial(study, trial):
        write_reports(study, config, out_dir, plots=False)

    remaining = trials - len(_finished(study))
    if remaining > 0:
        study.optimize(
            objective,
            n_trials=remaining,
            catch=(InputError, torch.cuda.OutOfMemoryError),
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=_states(FINISHED)), after_trial],
        )
    return SweepResult(study, write_reports(study, config, out_dir))


def open_storage(storage):
    """An Optuna RDBStorage for an SQLAlchemy URL, or for an SQLite file given as a path."""
    import optuna

    url = str(storage) if "://" in str(storage) else f"sqlite:///{Path(storage).resolve()}"
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=60, grace_period=180)
        except Exception as err:  # an unknown scheme, a file that is not a database, a server that is down
            first = " ".join(str(err).split())[:200]
            raise DataError(
                f"--storage {storage}: cannot open it as an Optuna database ({type(err).__name__}: {first})"
            ) from None


def trial_config(config: dict, values: dict, epochs: int | None = None) -> dict:
    """``config`` with each dotted key of ``values`` set (``{"optim.lr": 3e-4, "loss.cess.weight": 2}``),
    without its sweep section, and with optim.epochs = epochs when given."""
    result = copy.deepcopy(config)
    for key, value in values.items():
        set_dotted(result, key, value)
    result["sweep"] = None
    if epochs is not None:
        result["optim"]["epochs"] = epochs
    return result


def best_config(study, config: dict) -> dict | None:
    """The best complete trial's training config (the original optim.epochs, no sweep section), or None."""
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return None
    best = min(complete, key=lambda t: t.value)
    result = trial_config(config, best.params)
    del result["sweep"]
    return result


def write_reports(study, config, out_dir, plots=True):
    """trials.csv and best.yaml, and with ``plots`` the PNGs; returns {name: path or why it is missing}."""
    out_dir = Path(out_dir)
    written = {"trials.csv": _write_table(study, out_dir / "trials.csv")}
    best = best_config(study, config)
    if best is None:
        written["best.yaml"] = "no complete trial yet"
    else:
        trial = min((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
        header = (
            f"# Best of {len(_finished(study))} finished trials of study {study.study_name!r}: trial "
            f"{trial.number}, "
            f"{study.user_attrs.get('space', {}).get('metric', 'value')} = {trial.value:.6g} after "
            f"{study.user_attrs.get('space', {}).get('epochs', '?')} epochs.\n"
            f"# Train it with: microlatent train {out_dir / 'best.yaml'}\n"
        )
        (out_dir / "best.yaml").write_text(header + yaml.safe_dump(best, sort_keys=False))
        written["best.yaml"] = out_dir / "best.yaml"
    if plots:
        written.update(write_plots(study, out_dir))
    return written


def write_plots(study, out_dir):
    """history.png, intermediate.png and importances.png in out_dir; {name: path, or why it was skipped}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as views

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    metric = study.user_attrs.get("space", {}).get("metric", "objective")
    plots = {
        "history.png": (views.plot_optimization_history, 1),
        "intermediate.png": (views.plot_intermediate_values, 1),
        "importances.png": (views.plot_param_importances, 2),
    }
    result = {}
    for name, (plot, needed) in plots.items():
        if len(complete) < needed:
            result[name] = f"needs {needed} complete trial{'s' * (needed > 1)}, the study has {len(complete)}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            # e.g. importances of a parameter that never varied
            result[name] = f"skipped: {err}"
            continue
        if name != "importances.png":
            axes.set_ylabel(metric)
            axes.set_xlabel("epoch" if name == "intermediate.png" else "trial")
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(Path(out_dir) / name, dpi=120)
        plt.close(figure)
        result[name] = Path(out_dir) / name
    return result


def _suggest(trial, key, spec):
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, spec["choices"])
    suggest = trial.suggest_float if spec["type"] == "float" else trial.suggest_int
    options = {k: spec[k] for k in ("log", "step") if k in spec}
    return suggest(key, spec["low"], spec["high"], **options)


def _write_table(study, path):
    names = sorted({name for t in study.trials for name in t.params})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", "value", "epochs_reported", *names, "run", "error"])
        for t in study.trials:
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    len(t.intermediate_values),
                    *[t.params.get(name, "") for name in names],
                    t.user_attrs.get("run", ""),
                    t.user_attrs.get("error", ""),
                ]
            )
    return path


def _finished(study):
    return study.get_trials(deepcopy=False, states=_states(FINISHED))


def _states(names):
    from optuna.trial import TrialState

    return tuple(TrialState[name] for name in names)


def _plain(value):
    """value as the storage gives it back (JSON: tuples become lists)."""
    import json

    return json.loads(json.dumps(value))
