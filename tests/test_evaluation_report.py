"""The evaluation report end to end on tiny models: files, figures, and JSON numbers that equal a
recomputation from the checkpoints."""

import csv
import json
import os
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from filelock import FileLock

from microlatent.cli.evaluate import checkpoint_labels, compare, evaluate
from microlatent.data.dataset import split_indices
from microlatent.data.generators import generate, lines
from microlatent.data.store import read_images, write_class
from microlatent.errors import DataError, InputError
from microlatent.evaluation import roundtrip, write_report
from microlatent.evaluation.lines import count_lines
from microlatent.evaluation.metrics import (
    autocorrelation_features,
    flatten,
    reconstruction_metrics,
    volume_fraction_difference,
    win_matrix,
)
from microlatent.models import build_model, save_model
from microlatent.models.run import Run

SIZE = 32
LINES_32 = dict(size=SIZE, n_lines=(1, 3), length=(16, 32), thickness=(1, 2), min_gap=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # Under pytest-xdist the workers share one report (built once, under a lock) instead of each
    # building its own: the report is the slow part of this module.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "evaluation_report"
        with FileLock(f"{root}.lock"):
            if not (root / "done").exists():
                _build(root)
                (root / "done").touch()
    else:
        root = tmp_path_factory.mktemp("evaluation_report")
        _build(root)
    data, out = root / "tiny.h5", root / "report"
    checkpoints = {name: root / "runs" / f"tiny_{name}" / "model.pt" for name in ("mse", "cess")}
    return {
        "data": data,
        "checkpoints": checkpoints,
        "out": out,
        "report": out / "report.html",
        "json": json.loads((out / "metrics.json").read_text()),
    }


def _build(root):
    root.mkdir(parents=True, exist_ok=True)
    data = root / "tiny.h5"
    images, labels = lines(20, seed=0, **LINES_32)
    write_class(data, "lines", images, labels)
    ((images, labels),) = generate("GRF", 20, size=SIZE, seed=0).values()
    write_class(data, "GRF", images, labels)
    checkpoints = {}
    for k, name in enumerate(("mse", "cess")):
        torch.manual_seed(k)
        model = build_model("taesd_vae", width=8, depth=1, latent_channels=3, stages=2)
        config = {
            "name": f"tiny_{name}",
            "data": {"path": str(data), "size": SIZE, "split_seed": 0, "split_fractions": [0.7, 0.15, 0.15]},
            "loss": {name: 1.0, "kl": 1e-4},
        }
        path = root / "runs" / f"tiny_{name}" / "model.pt"
        path.parent.mkdir(parents=True)
        save_model(model, path, extra={"config": config})
        checkpoints[name] = path
    report = write_report(
        checkpoints,
        data,
        root / "report",
        device="cpu",
        vgg_weights="random",
        overfit_samples=6,
        grid_per_class=1,
        traversal_units=2,
    )
    assert report == root / "report" / "report.html"


def _split(data, cls):
    return split_indices(20, cls, "test", (0.7, 0.15, 0.15), seed=0)


def test_report_files_and_figures_exist(setup):
    out, results = setup["out"], setup["json"]
    assert setup["report"].stat().st_size > 1000
    for name in ("report.md", "per_sample.csv", "summary.csv"):
        assert (out / name).stat().st_size > 100
    paths = [figure["path"] for figure in results["figures"]]
    for path in paths:
        assert (out / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert path in (out / "report.html").read_text() and path in (out / "report.md").read_text()
    names = {p.split("/")[-1] for p in paths}
    for expected in (
        "grid_lines.png",
        "grid_GRF.png",
        "cess_hist.png",
        "log_cess_hist.png",
        "win_matrix.png",
        "outliers_mse.png",
        "line_counts.png",
        "overfitting_cess.png",
        "traversal_mse.png",
        "latent_samples_cess.png",
        "texture_hist.png",
        "vf_diff_hist.png",
    ):
        assert expected in names
    markdown = (out / "report.md").read_text()
    for heading in (
        "## All samples",
        "## Win matrix (excess CESS)",
        "## Latent diagnostics",
        "## Per class",
        "## Lines",
        "## Overfitting check",
    ):
        assert heading in markdown


def test_report_samples_are_the_training_split(setup):
    results = setup["json"]
    expected = [f"{c}[{i}]" for c in ("GRF", "lines") for i in _split(setup["data"], c)]
    assert [s["name"] for s in results["samples"]] == expected
    assert results["meta"]["split_fractions"] == [0.7, 0.15, 0.15]
    assert results["meta"]["vf_thresholds"] == {"lines": 0.95, "GRF": 0.5}


def test_json_numbers_equal_recomputation(setup):
    results, data = setup["json"], setup["data"]
    images = np.concatenate([read_images(data, c, _split(data, c)) for c in ("GRF", "lines")]).astype(np.float32)
    classes = [s["class"] for s in results["samples"]]
    for label, checkpoint in setup["checkpoints"].items():
        inputs, recons = roundtrip(Run.load(checkpoint, "cpu"), list(images))
        per_sample = results["per_sample"][label]
        thresholds = [0.95 if c == "lines" else 0.5 for c in classes]
        for key, values in reconstruction_metrics(inputs, recons, threshold=thresholds).items():
            np.testing.assert_allclose(per_sample[key], values, rtol=1e-9, atol=1e-15, err_msg=key)
        vf = volume_fraction_difference(inputs, recons, thresholds)
        np.testing.assert_allclose(np.array(per_sample["vf_diff"], dtype=float), vf, rtol=1e-12, equal_nan=True)
        summary = results["summary"][label]
        assert summary["all"]["cess"]["median"] == pytest.approx(np.median(per_sample["cess"]), rel=1e-12)
        assert summary["all"]["cess"]["mean"] == pytest.approx(np.mean(per_sample["cess"]), rel=1e-12)
        grf = [i for i, c in enumerate(classes) if c == "GRF"]
        assert summary["by_class"]["GRF"]["mse"]["median"] == pytest.approx(np.median(np.array(per_sample["mse"])[grf]))
        positions = results["lines"]["positions"]
        counted = [count_lines(recons[i]) for i in positions]
        assert results["lines"]["models"][label]["lines_counted"] == counted
        assert all(0.0 <= v <= 1.0 for v in per_sample["stsim2"])
    labels, matrix = win_matrix({k: v["cess"] for k, v in results["per_sample"].items()})
    assert results["win_matrix"]["models"] == labels
    np.testing.assert_allclose(np.array(results["win_matrix"]["matrix"], dtype=float), matrix, equal_nan=True)
    # the headline is the win matrix's row of each model against the first, and the median change
    headline = results["headline"]
    first = headline["reference"]
    assert first == labels[0]
    for key in ("excess_cess", "js_binary"):
        _, scores = win_matrix({k: v[key] for k, v in results["per_sample"].items()})
        for c in headline["scores"][key]["comparisons"]:
            assert c["win_share"] == scores[labels.index(c["model"]), 0]
            mine, ref = (np.median(results["per_sample"][k][key]) for k in (c["model"], first))
            assert c["median_change"] == pytest.approx((mine - ref) / ref)
    medians = {k: np.median(v["js_binary"]) for k, v in results["per_sample"].items()}
    assert headline["best"] == min(medians, key=medians.get)
    markdown = (setup["out"] / "report.md").read_text().splitlines()
    assert markdown[2].startswith("**Lower = 2-point statistics") and "beats" in markdown[3]


def test_overfitting_numbers_equal_brute_force(setup):
    results, data = setup["json"], setup["data"]
    entry = results["overfitting"]["mse"]
    model = Run.load(setup["checkpoints"]["mse"], "cpu")
    split = {c: split_indices(20, c, "train", (0.7, 0.15, 0.15), seed=0) for c in ("GRF", "lines")}
    train = np.concatenate([read_images(data, c, split[c]) for c in ("GRF", "lines")]).astype(np.float64)
    assert entry["train"]["reference_n"] == len(train) and entry["train"]["n"] == 6
    drawn = np.stack(
        [read_images(data, name.split("[")[0], int(name.split("[")[1][:-1])) for name in entry["train"]["names"]]
    ).astype(np.float32)
    _, recons = roundtrip(model, list(drawn))
    image = np.array([[((r - t) ** 2).mean() for t in flatten(train)] for r in flatten(recons)]).mean(1)
    stats = np.array(
        [[((r - t) ** 2).mean() for t in autocorrelation_features(train)] for r in autocorrelation_features(recons)]
    ).mean(1)
    np.testing.assert_allclose(entry["train"]["image"], image, rtol=1e-9)
    np.testing.assert_allclose(entry["train"]["stats"], stats, rtol=1e-9)


def test_lines_nearest_training_image_in_statistics_space(setup):
    results, data = setup["json"], setup["data"]
    section = results["lines"]
    train_idx = split_indices(20, "lines", "train", (0.7, 0.15, 0.15), seed=0)
    train = read_images(data, "lines", train_idx).astype(np.float64)
    test = read_images(data, "lines", _split(data, "lines")).astype(np.float64)
    distances = ((autocorrelation_features(test)[:, None] - autocorrelation_features(train)[None]) ** 2).mean(-1)
    assert section["nearest_train"] == [f"lines[{train_idx[k]}]" for k in distances.argmin(1)]
    assert section["input_count_accuracy"] == 1.0  # the counter is right on the originals


def test_cli_evaluate_a_vector_latent_model_and_compare_errors(setup, tmp_path):
    # a ResNet VAE (vector latent, Hashemi et al.'s kind) through `microlatent evaluate`
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no pretrained ResNet weights: fine here
        model = build_model(
            "resnet_vae", latent_dim=4, layers=[1, 1, 1, 1], base_width=4, image_size=SIZE, fc_hidden=16
        )
    checkpoint = tmp_path / "runs" / "tiny_resnet" / "model.pt"
    checkpoint.parent.mkdir(parents=True)
    save_model(
        model,
        checkpoint,
        extra={
            "config": {
                "name": "tiny_resnet",
                "data": {"path": str(setup["data"]), "split_fractions": [0.7, 0.15, 0.15]},
            }
        },
    )
    runner = CliRunner()
    result = runner.invoke(
        evaluate,
        [
            str(checkpoint),
            "--out",
            str(tmp_path / "one"),
            "--no-texture",
            "--overfit-samples",
            "0",
            "--class",
            "lines",
            "--n",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert list(results["per_sample"]) == ["tiny_resnet"]  # label from the run folder; data from the checkpoint
    assert results["meta"]["n_samples"] == 2 and "stsim2" not in results["per_sample"]["tiny_resnet"]
    assert (tmp_path / "one" / "figures" / "traversal_tiny_resnet.png").exists()
    with open(tmp_path / "one" / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[0]["cess"]) == pytest.approx(results["per_sample"]["tiny_resnet"]["cess"][0])
    result = runner.invoke(
        compare, [str(checkpoint), str(checkpoint), "--label", "only-one", "--out", str(tmp_path / "two")]
    )
    assert isinstance(result.exception, InputError)


def test_the_report_renders_again_from_metrics_json_alone(setup, tmp_path):
    """Measuring writes metrics.json; the report is rendered from that file only, so a copy of the
    folder without models or data renders to the same bytes."""
    import shutil

    from microlatent.evaluation import render_report

    copy = tmp_path / "copy"
    shutil.copytree(setup["out"], copy)
    rendered = ("report.md", "report.html", "per_sample.csv", "summary.csv")
    for name in rendered:
        (copy / name).unlink()
    render_report(copy)
    for name in rendered:
        assert (copy / name).read_bytes() == (setup["out"] / name).read_bytes(), name
    (copy / "metrics.json").write_text('{"samples": []}')
    with pytest.raises(DataError, match="not an evaluation's metrics"):
        render_report(copy)


def test_checkpoint_labels(tmp_path):
    labels = checkpoint_labels(["runs/a/model.pt", "runs/a/model.pt", "x/best.pt"])
    assert list(labels) == ["a", "a-2", "best"]
    assert list(checkpoint_labels(["p.pt", "q.pt"], ["P", "Q"])) == ["P", "Q"]


def test_metrics_do_not_depend_on_the_chunk_size(setup):
    from microlatent.data import Split, read_split
    from microlatent.evaluation.report import _evaluate_model

    samples = read_split(setup["data"], "test", Split(fractions=(0.7, 0.15, 0.15)))
    model = Run.load(setup["checkpoints"]["cess"], "cpu")
    truth = [(None, None)] * len(samples)
    run = _evaluate_model(
        model,
        samples,
        {"GRF": 0.5, "lines": 0.95},
        truth,
        np.zeros(0, dtype=np.int64),
        None,
        keep={0, 5},
        n_outliers=2,
        chunk=4,
    )
    per_sample = setup["json"]["per_sample"]["cess"]
    for key in ("cess", "excess_cess", "js_binary", "msess", "mse", "vf_diff"):
        np.testing.assert_allclose(
            run["values"][key], np.array(per_sample[key], dtype=float), rtol=1e-9, equal_nan=True
        )
    assert sorted(run["kept"]) == [0, 5]
    assert [i for i, _, _ in run["outliers"]] == list(
        np.argsort(-np.array(per_sample["excess_cess"]), kind="stable")[:2]
    )


def test_markdown_carries_no_raw_html_from_labels_or_cells(setup):
    import copy

    from microlatent.evaluation.render import _markdown

    evil = "<img src=x onerror=alert(1)>|x"
    results = copy.deepcopy(setup["json"])
    results["meta"]["models"] = {evil: m for m in results["meta"]["models"].values()}
    results["figures"][0]["caption"] = evil
    text = _markdown(results, [("Table " + evil, evil, ["model " + evil], [[evil]])])
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;\\|x" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ") and "&lt;img" in line]
    assert table_rows and all(line.count(" | ") == line.count("|") - line.count("\\|") - 2 for line in table_rows)


def test_latent_vs_pca_scores_both_latents_on_the_test_split(setup, capsys):
    from microlatent.cli import main
    from microlatent.evaluation.metrics import statistics_losses
    from microlatent.evaluation.pca_comparison import compare_latents

    checkpoint = setup["checkpoints"]["mse"]
    result = compare_latents(checkpoint, setup["data"], limit_per_class=2, steps=200)
    rows = {row["latent"]: row for row in result["rows"]}
    assert rows["vae"]["dimensions"] == 3 * 8 * 8 and rows["pca-stats"]["dimensions"] == 27  # capped: 28 train images
    names = result["names"]
    assert names == [f"{c}[{i}]" for c in ("GRF", "lines") for i in _split(setup["data"], c)[:2]]
    # the VAE's scores are those of its thresholded reconstructions, recomputed here
    images = np.concatenate([read_images(setup["data"], c, _split(setup["data"], c)[:2]) for c in ("GRF", "lines")])
    inputs, recons = roundtrip(Run.load(checkpoint, "cpu"), list(images.astype(np.float32)))
    expected = statistics_losses(inputs.astype(np.float64), (recons >= 0.5).astype(np.float64))["js"]
    np.testing.assert_allclose(result["per_image"]["vae"]["js"], expected, rtol=1e-9)
    # the PCA codes decode to images far closer in statistics than random ones of the same volume fraction
    rng = np.random.default_rng(0)
    random = (rng.random(inputs.shape) < inputs.mean(axis=(1, 2), keepdims=True)).astype(np.float64)
    assert np.median(result["per_image"]["pca-stats"]["js"]) < 0.5 * np.median(statistics_losses(inputs, random)["js"])
    main(["latent-vs-pca", str(checkpoint), "--data", str(setup["data"]), "--n", "1", "--steps", "50"])
    out = capsys.readouterr().out
    assert "pca-stats" in out and "median JS" in out and "closer in statistics (JS) on" in out
