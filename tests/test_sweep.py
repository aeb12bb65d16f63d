"""Hyperparameter sweeps: the train() epoch hook, the sweep section's checks, a tiny Optuna study that
prunes, survives diverging trials, resumes from its storage and writes a ready training config."""

import csv

import pytest
import torch
import yaml
from conftest import tiny_training_config

from microlatent.errors import InputError
from microlatent.models import build_model, load_model
from microlatent.training import DEFAULTS, load_config, shipped_configs, train
from microlatent.training.config import check_sweep, merge

optuna = pytest.importorskip("optuna")

from microlatent.training.sweep import open_storage, sweep, trial_config, write_plots  # noqa: E402


def tiny_config(data, params=None, **sweep):
    params = params or {
        "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "model.width": {"type": "categorical", "choices": [4, 8]},
    }
    return tiny_training_config(
        data, optim={"epochs": 6}, train={"max_steps_per_epoch": 2}, sweep={"params": params, **sweep}
    )


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_epoch_hook_sees_each_epoch_and_may_stop_the_run_after_its_checkpoint(tiny_data, tmp_path):
    config = tiny_config(tiny_data)
    config["optim"]["epochs"] = 2
    seen = []
    train(config, tmp_path / "whole", progress=False, on_epoch_end=lambda *args: seen.append(args))
    assert [epoch for epoch, _, _ in seen] == [1, 2]
    logged = rows(tmp_path / "whole" / "epochs.csv")
    assert [means["loss"] for _, _, means in seen] == pytest.approx([float(r["val_loss"]) for r in logged], rel=1e-12)
    assert set(seen[0][1]) == set(seen[0][2]) == {"loss", "mse", "kl"}

    class Stop(Exception):
        pass

    def stop_after_first(epoch, train_means, val_means):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "stopped", progress=False, on_epoch_end=stop_after_first)
    saved = torch.load(tmp_path / "stopped" / "checkpoint.pt", weights_only=True)["extra"]
    assert (saved["epoch"], saved["batch_index"]) == (1, 0) and not (tmp_path / "stopped" / "model.pt").exists()
    train(config, tmp_path / "stopped", resume=True, progress=False)  # and the run resumes exactly
    whole, resumed = load_model(tmp_path / "whole" / "model.pt"), load_model(tmp_path / "stopped" / "model.pt")
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"params": {"optim.lrr": {"type": "float", "low": 0.1, "high": 1}}}, r"'optim.lrr' is not a config key"),
        ({"params": {"optim": {"type": "float", "low": 0.1, "high": 1}}}, r"'optim' is a section"),
        ({"params": {"optim.batch_size": {"type": "float", "low": 2, "high": 8}}}, r"'optim.batch_size' must be int"),
        ({"params": {"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, r"log: true needs low > 0"),
        ({"params": {"optim.lr": {"type": "float", "low": 1}}}, r"optim.lr.high must be a number"),
        ({"params": {"optim.lr": {"type": "float", "low": 1, "high": 0.1}}}, r"low \(1\) must not exceed high"),
        ({"params": {"model.width": {"type": "categorical", "choices": []}}}, r"choices must be a non-empty list"),
        ({"params": {"model.width": {"type": "choice", "choices": [8]}}}, r"type: float, int or categorical"),
        ({"params": {"model.width": {"type": "int", "low": 4, "high": 8, "lo": 1}}}, r"unknown option 'lo'"),
        (
            {"params": {"loss.mse.weight": {"type": "float", "low": 1, "high": 2}}},
            r"'loss.mse' is 1.0 in this config, "
            r"not a mapping",
        ),
        ({"params": {"name": {"type": "categorical", "choices": ["a"]}}}, r"not a config key a sweep can vary"),
        ({"params": {}}, r"params must be a non-empty mapping"),
        (
            {"params": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "metric": "val_cess"},
            r"metric must be one "
            r"of val_loss, "
            r"val_mse, val_kl",
        ),
        ({"params": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "trails": 3}, r"unknown key 'trails'"),
        (
            {"params": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}, "epochs": 0},
            r"epochs must be an integer "
            r">= 1",
        ),
    ],
)
def test_a_bad_sweep_section_is_an_error_naming_the_file_and_key(tmp_path, section, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"loss": {"mse": 1.0, "kl": 1e-4}, "sweep": section}, sort_keys=False))
    with pytest.raises(InputError, match=rf"bad.yaml: sweep.*{message}"):
        load_config(path)


def test_shipped_search_spaces_are_valid_and_build_their_models():
    with_sweep = [name for name in shipped_configs() if load_config(name)["sweep"]]
    assert {
        "cai_mse",
        "cai_mse_cess",
        "cai_cess_finetune",
        "cai_cess_crop_finetune",
        "cai_style",
        "cai_mse_cpu",
    } <= set(with_sweep)
    config = load_config("cai_mse", ["sweep.trials=3"])  # --set reaches the free-form sweep section
    assert check_sweep(config)["trials"] == 3 and check_sweep(config)["epochs"] == 5
    for name in with_sweep:
        config = load_config(name)
        for end in ("low", "high"):
            values = {
                key: spec["choices"][-1 if end == "high" else 0] if spec["type"] == "categorical" else spec[end]
                for key, spec in config["sweep"]["params"].items()
            }
            trial = trial_config(config, values, epochs=5)
            assert trial["optim"]["epochs"] == 5 and trial["sweep"] is None
            assert merge(DEFAULTS, trial) == trial  # still a valid config
            if name.endswith("_cpu"):
                model = dict(trial["model"])
                build_model(model.pop("name"), **model)


def test_a_sweep_runs_resumes_and_writes_a_ready_training_config(tiny_data, tmp_path):
    from click.testing import CliRunner

    from microlatent.cli.sweep import sweep as sweep_command

    config = tiny_config(tiny_data, trials=3, epochs=2)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    out, storage = tmp_path / "sweep", tmp_path / "studies.db"
    result = CliRunner().invoke(
        sweep_command,
        [str(tmp_path / "tiny.yaml"), "--out", str(out), "--storage", str(storage), "--seed", "1", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "train the best config with" in result.output and storage.exists() and not (out / "study.db").exists()
    study = optuna.load_study(study_name="tiny", storage=open_storage(storage))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert all(
        len(rows(out / "trials" / f"tiny-{n:04d}" / "epochs.csv")) == 2 for n in range(3)
    )  # --epochs of the sweep
    assert len(rows(out / "trials.csv")) == 3
    best = load_config(out / "best.yaml")
    assert best["sweep"] is None and best["optim"]["epochs"] == 6  # the config's own epochs, not the trials'
    assert (
        best["optim"]["lr"] == study.best_params["optim.lr"]
        and best["model"]["width"] == study.best_params["model.width"]
    )
    for plot in ("history.png", "intermediate.png", "importances.png"):
        assert (out / plot).stat().st_size > 10_000

    # run again: the study resumes from its storage and only adds the missing trial
    study, reports = sweep(config, out, trials=4, storage=str(storage), progress=False)
    assert len(study.trials) == 4 and (out / "trials" / "tiny-0003" / "model.pt").exists()
    with pytest.raises(InputError, match="another search space, metric or --epochs"):
        sweep(config, out, trials=5, epochs=3, storage=str(storage))
    # importances need two complete trials: a one-trial study has no importances plot, and says why
    one = optuna.create_study(study_name="one", storage=open_storage(storage))
    one.enqueue_trial({"optim.lr": 1e-3})
    one.optimize(lambda trial: trial.suggest_float("optim.lr", 1e-4, 1e-2, log=True), n_trials=1)
    (tmp_path / "one_plots").mkdir()
    skipped = write_plots(one, tmp_path / "one_plots")
    assert (
        "needs 2 complete trials" in skipped["importances.png"]
        and not (tmp_path / "one_plots" / "importances.png").exists()
    )
    assert (tmp_path / "one_plots" / "history.png").exists()


def test_worse_trials_are_pruned_and_diverging_trials_do_not_stop_the_sweep(tiny_data, tmp_path):
    params = {"loss.mse": {"type": "categorical", "choices": [1.0, 100.0, 1.0e39]}}
    config = tiny_config(tiny_data, params, startup_trials=1, warmup_epochs=0)
    out = tmp_path / "sweep"
    out.mkdir()
    study = optuna.create_study(study_name="tiny", storage=open_storage(out / "study.db"))
    for weight in (1.0, 100.0, 1.0e39):  # a good trial; one 100 times worse; one whose loss overflows
        study.enqueue_trial({"loss.mse": weight})
    study, reports = sweep(config, out, trials=3, epochs=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    complete, worse, diverged = study.trials
    assert len(complete.intermediate_values) == 3 and list(worse.intermediate_values) == [1]
    run = out / "trials" / "tiny-0001"
    assert len(rows(run / "epochs.csv")) == 1 and (run / "checkpoint.pt").exists() and not (run / "model.pt").exists()
    assert "loss became inf" in diverged.user_attrs["error"]
    assert load_config(reports["best.yaml"])["loss"]["mse"] == 1.0
    table = rows(out / "trials.csv")
    assert [r["state"] for r in table] == ["COMPLETE", "PRUNED", "PRUNED"] and "loss became inf" in table[2]["error"]
