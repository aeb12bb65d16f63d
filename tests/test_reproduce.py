"""`microlatent reproduce`: every seed trained and evaluated, the comparison built from the seeds' own
reports, and a second call that resumes instead of retraining."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from microlatent.cli import _register_commands, cli
from microlatent.errors import InputError
from microlatent.evaluation.reproduce import reproduce

TINY = ("optim.epochs=1", "train.max_steps_per_epoch=2", "data.generate.n=30", "model.layers=[1,1,1,1]",
        "model.base_width=8", "model.fc_hidden=32", "optim.batch_size=8")


def test_reproduce_hashemi_end_to_end_and_resumes(tmp_path, recwarn):
    overrides = (*TINY, f"data.path={tmp_path / 'lines.h5'}")
    out = tmp_path / "hashemi"
    path = reproduce("hashemi", out, seeds=2, device="cpu", overrides=overrides)
    result = json.loads((out / "reproduce.json").read_text())
    assert result["seeds"] == 2 and set(result["training_minutes"]) == {"ssvae", "data_space"}
    rows = {r["measure"]: r for r in result["rows"]}
    orientation = rows["SS-VAE: orientation right"]
    per_seed = [json.loads((out / f"seed{s}" / "report" / "metrics.json").read_text()) for s in range(2)]
    expected = [m["lines"]["models"]["ssvae"]["orientation_accuracy"] for m in per_seed]
    assert orientation["seeds"] == pytest.approx(expected)
    assert orientation["mean"] == pytest.approx(np.mean(expected))
    assert orientation["sd"] == pytest.approx(np.std(expected, ddof=1), nan_ok=True)
    wins = rows["SS-VAE beats data-space in statistics space (share of test images, excess CESS)"]
    w = per_seed[0]["win_matrix"]
    assert wins["seeds"][0] == pytest.approx(w["matrix"][w["models"].index("ssvae")][w["models"].index("data_space")])
    # the seeds really differ in training
    assert (out / "seed0" / "ssvae" / "config.yaml").read_text() != (out / "seed1" / "ssvae" / "config.yaml").read_text()
    text = path.read_text()
    assert text.startswith("# Hashemi") and "targets met" in text and "| SS-VAE: line count right |" in text

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("seed*/*/model.pt")}
    reproduce("hashemi", out, seeds=2, device="cpu", overrides=overrides)  # finished: nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed*/*/model.pt")} == stamps


def test_reproduce_refuses_bad_arguments_in_one_line(tmp_path):
    with pytest.raises(InputError, match="unknown paper"):
        reproduce("nosuch", tmp_path)
    with pytest.raises(InputError, match="seeds"):
        reproduce("cai", tmp_path, seeds=0)
    _register_commands()
    result = CliRunner().invoke(cli, ["reproduce", "nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output
