"""`microlatent reproduce`: every seed trained and evaluated, the comparison built from the seeds' own
reports, and a second call that resumes instead of retraining."""

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microlatent.cli import _register_commands, cli
from microlatent.errors import InputError
from microlatent.evaluation.reproduce import reproduce
from microlatent.models import load_checkpoint

TINY = (
    "optim.epochs=1",
    "train.max_steps_per_epoch=2",
    "data.generate.n=30",
    "model.layers=[1,1,1,1]",
    "model.base_width=8",
    "model.fc_hidden=32",
    "optim.batch_size=8",
)


def test_reproduce_hashemi_end_to_end_and_resumes(tmp_path, recwarn):
    overrides = (*TINY, f"data.path={tmp_path / 'lines.h5'}")
    out = tmp_path / "hashemi"
    path = reproduce("hashemi", out, seeds=2, device="cpu", overrides=overrides)
    result = json.loads((out / "reproduce.json").read_text())
    assert result["seeds"] == 2 and set(result["training_minutes"]) == {"ssvae", "data_space", "ssvae_finetune"}
    rows = {r["measure"]: r for r in result["rows"]}
    orientation = rows["SS-VAE finetuned from the data-space model: orientation right"]
    per_seed = [json.loads((out / f"seed{s}" / "report" / "metrics.json").read_text()) for s in range(2)]
    expected = [m["lines"]["models"]["ssvae_finetune"]["orientation_accuracy"] for m in per_seed]
    assert orientation["seeds"] == pytest.approx(expected)
    assert orientation["mean"] == pytest.approx(np.mean(expected))
    assert orientation["sd"] == pytest.approx(np.std(expected, ddof=1), nan_ok=True)
    wins = rows["SS-VAE finetuned beats data-space in statistics space (share of test images, excess CESS)"]
    w = per_seed[0]["win_matrix"]
    finetuned, data_space = w["models"].index("ssvae_finetune"), w["models"].index("data_space")
    assert wins["seeds"][0] == pytest.approx(w["matrix"][finetuned][data_space])
    scratch = rows["SS-VAE from scratch: line count right"]
    assert scratch["seeds"] == pytest.approx([m["lines"]["models"]["ssvae"]["count_accuracy"] for m in per_seed])
    # the finetune starts from its seed's data-space model
    start = load_checkpoint(out / "seed1" / "ssvae_finetune" / "model.pt")
    assert start["extra"]["config"]["train"]["init_from"] == str(out / "seed1" / "data_space" / "model.pt")
    # the seeds really differ in training
    assert (out / "seed0" / "ssvae" / "config.yaml").read_text() != (
        out / "seed1" / "ssvae" / "config.yaml"
    ).read_text()
    text = path.read_text()
    assert text.startswith("# Hashemi") and "targets met" in text
    assert "| SS-VAE finetuned from the data-space model: line count right |" in text

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("seed*/*/model.pt")}
    reproduce("hashemi", out, seeds=2, device="cpu", overrides=overrides)  # finished: nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed*/*/model.pt")} == stamps

    # another config than the finished runs': refused, not reported as this config's numbers
    with pytest.raises(InputError, match=r"ssvae was trained with loss = .* delete that run") as e:
        reproduce("hashemi", out, seeds=2, device="cpu", overrides=(*overrides, "loss.clamp=7"))
    assert "\n" not in str(e.value)
    # a run deleted and retrained: that seed's report and extra measures are redone, the other seed's kept
    report = {s: (out / f"seed{s}" / "report" / "metrics.json").stat().st_mtime_ns for s in range(2)}
    shutil.rmtree(out / "seed1" / "ssvae")
    reproduce("hashemi", out, seeds=2, device="cpu", overrides=overrides)
    assert (out / "seed1" / "ssvae" / "model.pt").exists()
    assert (out / "seed0" / "report" / "metrics.json").stat().st_mtime_ns == report[0]
    assert (out / "seed1" / "report" / "metrics.json").stat().st_mtime_ns > report[1]


def test_reproduce_refuses_bad_arguments_in_one_line(tmp_path):
    with pytest.raises(InputError, match="unknown paper"):
        reproduce("nosuch", tmp_path)
    with pytest.raises(InputError, match="seeds"):
        reproduce("cai", tmp_path, seeds=0)
    _register_commands()
    result = CliRunner().invoke(cli, ["reproduce", "nosuch"])
    assert result.exit_code == 2 and "nosuch" in result.output


def test_texture_nearest_neighbour_accuracy_against_brute_force(tmp_path, recwarn):
    from microlatent.data import Split, generate, read_split
    from microlatent.data.store import write_class
    from microlatent.evaluation.metrics import autocorrelation_features
    from microlatent.evaluation.reproduce import _texture_extra
    from microlatent.models import build_model, save_model

    data = tmp_path / "two.h5"
    for kind in ("GRF", "VoronoiLarge"):
        ((images, labels),) = generate(kind, 20, size=32, seed=3).values()
        write_class(data, kind, images, labels)
    model = build_model("texture_vae", latent_dim=4, image_size=32, vgg_weights="random", decoder_width=16)
    # The 1-NN reference and test images come from the split the model was trained on (seed 5 here).
    save_model(model, tmp_path / "model.pt", extra={"config": {"data": {"size": None, "split_seed": 5}}})
    extra = _texture_extra({"texture_vae": tmp_path / "model.pt"}, data, tmp_path)

    train, test = read_split(data, "train", Split(seed=5), limit_per_class=40), read_split(data, "test", Split(seed=5))
    reference = autocorrelation_features(np.stack(train.images).astype(float))
    real = autocorrelation_features(np.stack(test.images).astype(float))
    nearest = [int(np.argmin(((reference - f) ** 2).sum(1))) for f in real]
    expected = np.mean([train.classes[k] == c for k, c in zip(nearest, test.classes)])
    assert extra["nn_accuracy_real"] == pytest.approx(expected)
    from microlatent.evaluation.reproduce import PAPERS

    assert set(extra) == set(PAPERS["texture"].extra_keys)
    assert 0.0 <= extra["nn_accuracy_recon"] <= 1.0


def test_cai_calibration_measures_against_direct_computation(tmp_path):
    """The volume-fraction error is that of the reconstructions the model gives on its test split; the
    calibrated excess CESS is never above the raw one."""
    from microlatent.data import Split, generate, read_split
    from microlatent.data.store import write_class
    from microlatent.evaluation.inference import roundtrip
    from microlatent.evaluation.metrics import statistics_losses
    from microlatent.evaluation.reproduce import _cai_extra
    from microlatent.models import build_model, save_model
    from microlatent.models.run import Run

    data = tmp_path / "two.h5"
    for kind in ("GRF", "VoronoiLarge"):
        ((images, labels),) = generate(kind, 20, size=32, seed=3).values()
        write_class(data, kind, images, labels)
    torch.manual_seed(0)
    model = build_model("taesd_vae", width=8, depth=1, latent_channels=2)
    save_model(model, tmp_path / "model.pt", extra={"config": {"data": {"size": None, "split_seed": 5}}})
    extra = _cai_extra({"m": tmp_path / "model.pt"}, data, tmp_path)

    inputs, recons = roundtrip(Run.load(tmp_path / "model.pt", "cpu"), read_split(data, "test", Split(seed=5)).images)
    vf_error = np.median(np.abs(recons.mean((1, 2)) - inputs.mean((1, 2)))) * 100
    assert extra["vf_error"]["m"] == pytest.approx(vf_error)
    raw = np.median(statistics_losses(inputs, recons)["excess_cess"])
    assert 0 <= extra["calibrated"]["m"] <= raw
    shift = 1 / (1 + (1 - recons) / recons * np.exp(-extra_shift(recons, inputs)))  # sigmoid(logit + b)
    assert extra["matched"]["m"] == pytest.approx(np.median(statistics_losses(inputs, shift)["excess_cess"]), rel=1e-6)
    assert extra["matched_win"] == {} and extra["matched_change"] == {}  # no "mse" model to compare with
    from microlatent.evaluation.reproduce import PAPERS

    assert set(extra) == set(PAPERS["cai"].extra_keys)  # a stored extra.json missing one is recomputed
    extra = _cai_extra({"mse": tmp_path / "model.pt", "m": tmp_path / "model.pt"}, data, tmp_path)
    assert extra["matched_win"]["m"] == 0.0 and extra["matched_change"]["m"] == pytest.approx(0.0)  # a model vs itself


def extra_shift(recons, inputs):
    """The logit shift b per image that gives each reconstruction its input's mean, by SciPy's brentq."""
    from scipy.optimize import brentq

    logits = np.log(recons) - np.log1p(-recons)
    return np.array(
        [
            brentq(lambda b, z=z, v=v: float(np.mean(1 / (1 + np.exp(-(z + b))))) - v, -50, 50, xtol=1e-14)
            for z, v in zip(logits, inputs.mean((1, 2)))
        ]
    )[:, None, None]


@pytest.mark.parametrize("suffix", ["_cpu", ""])
def test_every_finetune_run_has_the_model_and_data_of_the_run_it_starts_from(suffix):
    """A finetune in a paper's runs keeps its start's architecture (training refuses another) and must see
    the same images, or its test split would hold images its start trained on."""
    from microlatent.evaluation.reproduce import PAPERS
    from microlatent.training import load_config

    pairs = 0
    for spec in PAPERS.values():
        names = {label: name for label, name, _ in spec.runs}
        for _, name, init_label in spec.runs:
            if init_label:
                tuned, start = load_config(name + suffix), load_config(names[init_label] + suffix)
                assert tuned["model"] == start["model"], name
                assert tuned["data"] == start["data"], name
                pairs += 1
    assert pairs >= 3  # cai's two finetunes and hashemi's
