"""n phases end to end: K-phase files, import (label levels, multi-Otsu, .npy), the K-phase VAE, and a
3-phase run through every command (import, train, evaluate, synthesize, homogenize, stats)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microlatent.data import generate
from microlatent.data.importing import to_phases
from microlatent.data.store import class_phases, read_images, write_class
from microlatent.errors import DataError, InputError


def test_k_phase_classes_record_k_and_old_files_read_as_two_phases(tmp_path):
    path = tmp_path / "set.h5"
    ((images, labels),) = generate("Voronoi3", 3, size=32, seed=0).values()
    write_class(path, "V3", images, labels, n_phases=3)
    write_class(path, "bin", (images > 0).astype(np.uint8), labels)
    assert class_phases(path, "V3") == 3 and class_phases(path, "bin") == 2
    with h5py.File(path, "r") as f:
        assert f["V3"].attrs["n_phases"] == 3 and "n_phases" not in f["bin"].attrs  # 2-phase groups unchanged
    np.testing.assert_array_equal(read_images(path, "V3"), images)
    with pytest.raises(InputError, match=r"must be 0/1 \(2-phase\)"):
        write_class(path, "bad", images, labels)  # labels 2 in a 2-phase class
    with h5py.File(path, "a") as f:
        f["V3"].attrs["n_phases"] = 2  # a file whose attribute understates its labels
    with pytest.raises(DataError, match="not a 2-phase 0/1 image set"):
        read_images(path, "V3")


def test_label_levels_map_in_order_and_grey_micrographs_split_by_multi_otsu():
    levels = np.array([[0.0, 0.5, 1.0, 0.5]])
    labels, how = to_phases(levels, 3)
    np.testing.assert_array_equal(labels, [[0, 1, 2, 1]])
    assert how == "levels 0=0, 1=0.5, 2=1"
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, size=(64, 64))
    grey = np.array([0.15, 0.5, 0.85])[truth] + rng.normal(0, 0.04, truth.shape)  # three noisy grey levels
    labels, how = to_phases(grey, 3)
    assert how.startswith("multi-otsu cuts") and (labels == truth).mean() > 0.99


def test_k_phase_vae_outputs_phase_probabilities_and_starts_at_the_data_shares():
    from microlatent.models import build_model

    model = build_model("taesd_vae", width=8, latent_channels=2, phases=3).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
    model.start_output_at([0.2, 0.5, 0.3])
    recon, mu, _ = model(x)
    assert recon.shape == (2, 3, 32, 32) and mu.shape == (2, 2, 2, 2)
    torch.testing.assert_close(recon.sum(1), torch.ones(2, 32, 32))
    bias = model.output_layer().bias.detach()
    torch.testing.assert_close(torch.softmax(bias, 0), torch.tensor([0.2, 0.5, 0.3]))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model(x[:, :1])


def test_three_phases_through_every_command(tmp_path):
    from conftest import tiny_training_config

    from microlatent.cli import _register_commands, cli

    _register_commands()
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    # a "segmented micrograph": integer labels 0..2 in a .npy, 40 images of 32 px
    ((images, _),) = generate("GRF3", 40, size=32, seed=2).values()
    np.save(tmp_path / "seg.npy", images.astype(np.int64))
    data = tmp_path / "seg.h5"
    assert "3 phases" in run("data", "import", tmp_path / "seg.npy", "--out", data, "--name", "seg")
    assert "phases" in run("data", "info", data)
    out = run("stats", data, "--out", tmp_path / "stats.png", "--pair", "0,2", "--save", tmp_path / "stats.npz")
    assert "3 phases" in out
    with np.load(tmp_path / "stats.npz") as saved:
        assert [tuple(p) for p in saved["pairs"]] == [(h, k) for h in range(3) for k in range(3)]
        assert saved["statistics"].shape == (1, 9, 32, 32)
    config = tiny_training_config(data, loss={"mse": 1.0, "cess": 1.0, "kl": 1e-4}, optim={"epochs": 1})
    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run("train", tmp_path / "cfg.yaml", "--out", tmp_path / "run")
    report = run("evaluate", tmp_path / "run" / "model.pt", "--out", tmp_path / "eval", "--device", "cpu")
    assert "vf diff 2 %" in report
    numbers = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert numbers["n_phases"] == 3 and len(numbers["models"]["run"]["excess_cess"]) == len(numbers["names"])
    assert all(v >= -1e-9 for v in numbers["models"]["run"]["excess_cess"])  # a KL divergence
    run("synthesize", data, "--out", tmp_path / "syn", "--steps", "50")
    summary = json.loads((tmp_path / "syn" / "summary.json").read_text())
    assert summary  # one reconstruction, of 3 phases
    assert set(np.unique(np.load(next((tmp_path / "syn").glob("*.npy"))))) <= {0, 1, 2}
    out = runner.invoke(cli, ["properties", "homogenize", str(data), "--no-thermal"])
    assert isinstance(out.exception, InputError) and "has 3 phases but E and nu give 2" in str(out.exception)
    run("properties", "homogenize", data, "--E", "10,1,5", "--nu", "0.3,0.3,0.25", "--no-thermal")
    with h5py.File(data, "r") as f:
        values = f["seg"]["homogenized_mechanical"][:, 0, :]
    assert np.isfinite(values).all() and (values[:, 0] > 1).all() and (values[:, 0] < 10).all()
