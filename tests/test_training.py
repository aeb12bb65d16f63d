"""The training loop: learning, exact resume, interruption, finetuning, config checking."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import tiny_training_config

from microlatent.errors import DataError, InputError
from microlatent.losses import CompositeLoss
from microlatent.models import load_model
from microlatent.training import Interrupted, load_config, train


def tiny_config(data, **changes):
    config = tiny_training_config(data)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    return config


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("augment", [None, ["roll", "dihedral"]])
def test_resumed_run_matches_uninterrupted_run(tiny_data, tmp_path, augment):
    """Also with augmentation: its draws follow (seed, epoch, batch), so a resumed run sees the same images."""
    config = tiny_config(tiny_data, data__augment=augment)
    train(config, tmp_path / "whole", progress=False)
    with pytest.raises(Interrupted):
        train(config, tmp_path / "split", stop_after_steps=3, progress=False)  # mid-epoch 1 (4 batches/epoch)
    with pytest.raises(InputError, match="already holds a run"):
        train(config, tmp_path / "split", progress=False)
    train(config, tmp_path / "split", resume=True, progress=False)
    whole, split = load_model(tmp_path / "whole" / "model.pt"), load_model(tmp_path / "split" / "model.pt")
    for (name, a), b in zip(whole.state_dict().items(), split.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    whole_epochs, split_epochs = rows(tmp_path / "whole" / "epochs.csv"), rows(tmp_path / "split" / "epochs.csv")
    assert [float(r["val_loss"]) for r in whole_epochs] == pytest.approx(
        [float(r["val_loss"]) for r in split_epochs], rel=1e-6
    )
    assert [float(r["train_loss"]) for r in whole_epochs] == pytest.approx(
        [float(r["train_loss"]) for r in split_epochs], rel=1e-6
    )
    assert len(rows(tmp_path / "split" / "steps.csv")) == len(rows(tmp_path / "whole" / "steps.csv"))
    metadata = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert metadata["model"] == whole.config and metadata["parameters"] == sum(p.numel() for p in whole.parameters())
    if augment:  # the augmentation is applied: the same run without it ends elsewhere
        train(tiny_config(tiny_data), tmp_path / "plain", progress=False)
        plain = load_model(tmp_path / "plain" / "model.pt")
        assert any(not torch.allclose(a, b) for a, b in zip(whole.state_dict().values(), plain.state_dict().values()))


def test_sigterm_checkpoints_and_the_run_resumes(tiny_data, tmp_path):
    config = tiny_config(tiny_data, optim__epochs=200)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "microlatent", "train", str(config_path), "--out", str(run)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (run / "steps.csv").exists() or len(rows(run / "steps.csv")) < 3:
        time.sleep(0.2)
        assert time.time() < deadline and process.poll() is None, process.stderr.read() if process.poll() else "timeout"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "resume with --resume" in stderr
    saved = torch.load(run / "checkpoint.pt", weights_only=True)["extra"]
    assert saved["step"] >= 3
    # finish quickly: the resumed run keeps its own config, so shorten it in the checkpoint's config
    saved_ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    saved_ckpt["extra"]["config"]["optim"]["epochs"] = saved["epoch"] + 1
    torch.save(saved_ckpt, run / "checkpoint.pt")
    with pytest.raises(InputError, match="optim.epochs = 200 where the run has"):
        train(config, run, resume=True, progress=False)  # a resume with another config is refused, not ignored
    config["optim"]["epochs"] = saved["epoch"] + 1
    train(config, run, resume=True, progress=False)
    assert (run / "model.pt").exists()


def test_finetuning_starts_from_the_checkpoint_weights(tiny_data, tmp_path):
    train(tiny_config(tiny_data, optim__epochs=1), tmp_path / "base", progress=False)
    base = load_model(tmp_path / "base" / "model.pt")
    config = tiny_config(
        tiny_data, optim__epochs=1, optim__lr=1e-12, train__init_from=str(tmp_path / "base" / "model.pt")
    )
    config["loss"] = {"cess": 1.0, "kl": 1e-4}
    train(config, tmp_path / "tuned", progress=False)
    tuned = load_model(tmp_path / "tuned" / "model.pt")
    for a, b in zip(base.state_dict().values(), tuned.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)
    config["model"]["width"] = 16  # the checkpoint's width is 8: refused, never trained as 8 and recorded as 16
    with pytest.raises(InputError, match="width = 8 but the config asks for model.width = 16"):
        train(config, tmp_path / "wider", progress=False)
    config["model"]["name"] = "resnet_vae"
    with pytest.raises(InputError, match="holds a taesd_vae model"):
        train(config, tmp_path / "wrong", progress=False)


def test_a_file_without_images_is_refused_before_anything_is_trained(tmp_path):
    import h5py

    h5py.File(tmp_path / "empty.h5", "w").close()
    with pytest.raises(DataError, match="no training images"):
        train(tiny_config(tmp_path / "empty.h5"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()


def _steps(run):
    return [int(r["step"]) for r in rows(run / "steps.csv")]


def test_sigkill_at_random_points_resumes_exactly_without_duplicate_rows(tiny_data, tmp_path):
    """Fault injection: SIGKILL the training process at random moments (checkpoints every ~0.05 s, so
    some kills land inside a checkpoint write), resume each time; the final weights and logs equal
    those of an uninterrupted run, steps.csv has every step once, and no temporary file is left."""
    import random

    config = tiny_config(tiny_data, optim__epochs=4, train__checkpoint_every_s=0.05)
    train(config, tmp_path / "whole", progress=False)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for attempt in range(6):
        command = [sys.executable, "-m", "microlatent", "train", str(config_path), "--out", str(run)]
        if (run / "checkpoint.pt").exists():
            command.append("--resume")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = len(_steps(run)) if (run / "steps.csv").exists() else 0
        wait_rows = start + rng.randint(1, 6)
        deadline = time.time() + 60
        while process.poll() is None and time.time() < deadline:
            if (run / "steps.csv").exists() and len(_steps(run)) >= wait_rows:
                time.sleep(rng.uniform(0, 0.05))
                process.kill()
                kills += 1
                break
            time.sleep(0.005)
        process.wait(timeout=60)
        if process.returncode == 0:
            break
    else:
        train(config, run, resume=True, progress=False)
    assert kills >= 2
    whole, killed = load_model(tmp_path / "whole" / "model.pt"), load_model(run / "model.pt")
    for (name, a), b in zip(whole.state_dict().items(), killed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)
    assert _steps(run) == _steps(tmp_path / "whole")
    assert [r["epoch"] for r in rows(run / "epochs.csv")] == ["1", "2", "3", "4"]
    assert not list(run.glob("*.tmp*"))


@pytest.mark.parametrize(
    "loss",
    [
        {"mse": 1.0},
        {"msess": 1.0},
        {"cess": 1.0},
        {"cess": {"weight": 1.0, "crop": 9}},
        {"mse": 10.0, "cess": 1.0},
    ],
    ids=["mse", "msess", "cess", "cess_crop", "mse+cess"],
)
def test_each_loss_is_driven_well_below_its_start(tiny_data, tmp_path, loss):
    """Train loss after 160 steps is at most half way between its start and its floor (the loss of a
    perfect reconstruction: 0 for MSE and MSESS, the statistics' entropy for CESS)."""
    config = tiny_config(tiny_data, optim__epochs=40, optim__lr=3e-3, optim__batch_size=2, data__classes=["GRF"])
    config["loss"] = loss
    config["schedule"] = {"name": "constant", "period_epochs": 1, "min_lr": 0.0}
    train(config, tmp_path / "run", progress=False)
    steps = rows(tmp_path / "run" / "steps.csv")
    start = sum(float(r["loss"]) for r in steps[:2]) / 2
    end = sum(float(r["loss"]) for r in steps[-2:]) / 2
    from microlatent.data import MicrostructureDataset

    images = torch.stack([item["image"] for item in MicrostructureDataset(tiny_data, classes=["GRF"])])
    floor = CompositeLoss(loss)(images, images)[0].item()
    assert end < floor + 0.5 * (start - floor), (start, end, floor)


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(InputError, match=r"bad.yaml: unknown key 'optim.lrr'"):
        load_config(bad)
    bad.write_text("optim:\n  epochs: many\n")
    with pytest.raises(InputError, match=r"'optim.epochs' must be int"):
        load_config(bad)
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(DataError, match="no shipped config of that name"):
        load_config("no_such_config")
    with pytest.raises(InputError, match="--set expects key=value"):
        load_config("cai_mse_cpu", ["optim.epochs"])
    toml = tmp_path / "run.toml"
    toml.write_text('name = "t"\n[optim]\nepochs = 3\n[loss]\ncess = 1.0\n')
    config = load_config(toml, ["loss.kl=1e-3"])
    assert config["optim"]["epochs"] == 3 and config["loss"] == {"cess": 1.0, "kl": 1e-3}
    # An override inside a term's options keeps its other options (it once dropped msess's weight and pairs).
    shipped = load_config("hashemi_ssvae_cpu")["loss"]["msess"]
    config = load_config("hashemi_ssvae_cpu", ["loss.msess.indicator_sigma=0.25"])
    assert config["loss"]["msess"] == {**shipped, "indicator_sigma": 0.25} and "weight" in shipped


def test_every_shipped_config_builds_its_model_and_loss():
    from microlatent.models import build_model
    from microlatent.training import shipped_configs

    names = shipped_configs()
    assert {
        "cai_mse",
        "cai_mse_cess",
        "cai_cess_finetune",
        "cai_cess_crop_finetune",
        "cai_style",
        "hashemi_ssvae",
        "hashemi_data_space",
        "texture_vae",
    } <= set(names)
    for name in names:
        config = load_config(name)
        model_config = dict(config["model"])
        if not name.endswith("_cpu"):
            continue  # paper-scale models are large; their keys are checked by the _cpu variants
        build_model(model_config.pop("name"), **model_config)
        assert CompositeLoss(config["loss"]).names
