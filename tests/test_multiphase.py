"""n phases end to end: K-phase files, import (label levels, multi-Otsu, .npy), the K-phase VAE, and a
3-phase run through every command (import, train, evaluate, synthesize, homogenize, stats); then the
latent-space commands on 3 phases: the PCA of statistics, property prediction and design (closed loop:
the most probable phase solved with the K moduli), latent-vs-pca and the latent prior."""

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


# The three architectures, small: each takes one-hot input and gives K phase probabilities.
SMALL_MODELS = {
    "taesd_vae": dict(width=8, latent_channels=2),
    "resnet_vae": dict(latent_dim=4, layers=[1, 1, 1, 1], base_width=8, fc_hidden=16, image_size=32),
    "texture_vae": dict(latent_dim=4, image_size=32, vgg_layer="pool4", vgg_weights="random", decoder_width=32),
}


@pytest.mark.filterwarnings("ignore:resnet_vae. no pretrained")
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_k_phase_vae_outputs_phase_probabilities_and_starts_at_the_data_shares(name):
    from microlatent.models import build_model

    model = build_model(name, phases=3, **SMALL_MODELS[name]).eval()
    assert model.config["phases"] == 3 and build_model(name, **SMALL_MODELS[name]).config.get("phases") is None
    x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
    model.start_output_at([0.2, 0.5, 0.3])
    recon, mu, _ = model(x)
    assert recon.shape == (2, 3, 32, 32) and mu.shape[0] == 2
    torch.testing.assert_close(recon.sum(1), torch.ones(2, 32, 32))
    bias = model.output_layer().bias.detach()
    torch.testing.assert_close(torch.softmax(bias, 0), torch.tensor([0.2, 0.5, 0.3]))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        model(x[:, :1])


def test_phases_reach_imagenet_networks_as_the_figures_colours_and_every_mix_stays_distinct():
    from matplotlib import colormaps

    from microlatent.losses.style import StyleLoss
    from microlatent.models.common import as_rgb, phase_palette

    for k in (3, 4):
        labels = torch.randint(0, k, (2, 8, 8))
        rgb = as_rgb(torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float())
        expected = torch.tensor(colormaps["viridis"](labels.numpy() / (k - 1))[..., :3], dtype=torch.float32)
        torch.testing.assert_close(rgb, expected.permute(0, 3, 1, 2))  # each phase in its figure colour
        # affinely independent colours: the map from the K-simplex to RGB is one-to-one
        lifted = torch.cat([phase_palette(k), torch.ones(k, 1)], 1)
        assert torch.linalg.matrix_rank(lifted) == k
    grey = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(as_rgb(grey), grey.expand(-1, 3, -1, -1))
    # the style loss compares the same pictures: 0 for identical phases, > 0 when phases 1 and 2 swap
    loss = StyleLoss(vgg_weights="random")
    x = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 32, 32)), 3).permute(0, 3, 1, 2).float()
    assert float(loss(x, x)) == 0.0 and float(loss(x[:, [0, 2, 1]], x)) > 0


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
    run("model", "roundtrip", tmp_path / "run" / "model.pt", "--data", data, "--out", tmp_path / "rt.png", "--n", "2")
    assert (tmp_path / "rt.png").stat().st_size > 0
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


# --------------------------------------------------------------------------------------------
# Property prediction, design, latent-vs-pca and the prior on 3 phases.
# --------------------------------------------------------------------------------------------

MODULI = {"E": (10.0, 1.0, 5.0), "nu": (0.3, 0.3, 0.25)}


def _solve(images):
    from microlatent.properties import homogenize_elastic

    return homogenize_elastic(np.asarray(images), E=MODULI["E"], nu=MODULI["nu"])


@pytest.fixture(scope="module")
def three_phase(tmp_path_factory, train_tiny_model):
    """40 GRF3 images of 32 px homogenized with three moduli, and the tiny VAE of conftest trained on them."""
    from microlatent.properties.storage import homogenize_file

    root = tmp_path_factory.mktemp("three")
    data = root / "seg.h5"
    ((images, labels),) = generate("GRF3", 40, size=32, seed=2).values()
    write_class(data, "seg", images, labels, n_phases=3)
    homogenize_file(data, E=MODULI["E"], nu=MODULI["nu"], thermal=False)
    return data, train_tiny_model(data, root / "run", name="tiny-three"), root


@pytest.fixture(scope="module")
def three_phase_predictor(three_phase):
    """A predictor folder of the 3-phase run: linear and SVR regressors on every feature set and closed loop."""
    from microlatent.design.predictor import fit_property_models

    data, checkpoint, root = three_phase
    result = fit_property_models(
        checkpoint, data, root / "predictor", kinds=("linear", "svr"), n_prior=4, n_mix=4, figure=False
    )
    return result, root / "predictor"


def test_k_phase_pca_encodes_the_pairs_that_determine_every_map_and_decodes_to_labels(tmp_path):
    from microlatent.reconstruction import from_image, statistics_error
    from microlatent.stats import StatisticsPCA, one_hot, two_point
    from microlatent.stats.pca import as_phases, complete_statistics, statistics_pairs

    ((images, _),) = generate("GRF3", 12, size=32, seed=2).values()
    probabilities = one_hot(images, 3, np.float64)
    assert statistics_pairs(2) == [(1, 1)] and statistics_pairs(3) == [(1, 1), (1, 2), (2, 2)]
    pca = StatisticsPCA(12, n_phases=3, svd_solver="full").fit(images)  # every component
    codes = pca.transform(images)
    np.testing.assert_allclose(
        pca.inverse_transform(codes), two_point(probabilities, pairs=statistics_pairs(3)), atol=1e-12
    )
    # the 3 maps give all 9, on square and odd-sized images (f(h', h | r) = f(h, h' | -r), row and column sums)
    for x in (probabilities, probabilities[:, :, :31, :30]):
        maps, full = two_point(x, pairs=statistics_pairs(3)), two_point(x, pairs="all")
        for m, f in zip(maps, full):
            np.testing.assert_allclose(complete_statistics(m, 3), f, atol=1e-12)
            np.testing.assert_allclose(complete_statistics(m, 3, valid=True), f, atol=1e-9)
    loaded = StatisticsPCA.load(pca.save(tmp_path / "pca.npz"))
    assert loaded.n_phases == 3  # (a batch of 3 rounds differently from 12: 1e-16, so not array_equal)
    np.testing.assert_allclose(loaded.transform(images[:3]), codes[:3], rtol=0, atol=1e-12)
    few = StatisticsPCA(11, n_phases=3).fit(images)
    decoded = few.decode(few.transform(images[:2]), steps=200)
    assert decoded.shape == (2, 32, 32) and set(np.unique(decoded)) <= {0, 1, 2}
    rng = np.random.default_rng(0)
    for original, image in zip(images[:2], decoded):
        target = from_image(original.astype(np.int64), n_phases=3)
        shuffled = rng.permutation(original.ravel()).reshape(original.shape)  # same phase fractions, no structure
        assert statistics_error(target, image[None])[0] < 0.2 * statistics_error(target, shuffled[None])[0]
    with pytest.raises(InputError, match="phase labels 0..2"):
        as_phases(np.full((1, 4, 4), 3.0), 3)


def test_k_phase_features_and_closed_loop_labels_are_the_argmax_solved_with_k_moduli(
    three_phase, three_phase_predictor, tiny_data
):
    from microlatent.design.labels import phase_settings
    from microlatent.design.regression import PROPERTY_NAMES, feature_matrix
    from microlatent.evaluation.inference import decode
    from microlatent.models.run import Run
    from microlatent.prior.fit import training_latents

    data, checkpoint, root = three_phase
    labels = read_images(data, "seg")[:3].astype(np.float32)
    small = feature_matrix(labels, "downsampled", latent_shape=(4, 4, 4), n_phases=3).reshape(3, 2, 4, 4)
    for h in (1, 2):  # phases 1 and 2, each area-downsampled (phase 0 is one minus their sum)
        np.testing.assert_allclose(small[:, h - 1], (labels == h).reshape(3, 4, 8, 4, 8).mean(axis=(2, 4)), atol=1e-6)
    result, folder = three_phase_predictor
    meta = result["meta"]
    assert meta["n_phases"] == 3 and meta["phases"]["E"] == list(MODULI["E"]) and meta["pca"]["n_components"] > 0
    assert {row["features"] for row in result["metrics"]} == {"latent", "downsampled", "pca-stats", "decoded"}
    run = Run.load(checkpoint, "cpu")
    with np.load(folder / "fit_data.npz") as fit_data:
        z_loop, y_loop = fit_data["z_loop"], fit_data["y_loop"]
    probabilities = decode(run, z_loop)
    assert probabilities.shape[1] == 3
    solved = _solve(probabilities.argmax(axis=1))
    np.testing.assert_allclose(y_loop, np.stack([solved[p] for p in PROPERTY_NAMES], axis=1), rtol=1e-9)
    mu, _, _, decoded = training_latents(run, data, ("Ex",), limit=4, labels="decoded")
    np.testing.assert_allclose(decoded[:, 0], _solve(decode(run, mu).argmax(axis=1))["Ex"], rtol=1e-9)
    with pytest.raises(DataError, match="3 phases, but the labels' phase properties .* give 2 moduli"):
        phase_settings(tiny_data, ["GRF"], 3)


def test_k_phase_designs_are_what_the_solver_gives_for_their_labels(three_phase, three_phase_predictor):
    from microlatent.design.folder import load_predictor
    from microlatent.design.search import design, design_span
    from microlatent.models.run import Run

    _, checkpoint, _ = three_phase
    predictor, run = load_predictor(three_phase_predictor[1]), Run.load(checkpoint, "cpu")
    result = design(predictor, run, {"Ex": 5.0}, n_designs=2, candidates=4, steps=20, regressor="svr", seed=1)
    for d in result["designs"]:
        assert set(np.unique(d["image"])) <= {0, 1, 2} and sum(d["phase_fractions"]) == pytest.approx(1)
        assert d["achieved"]["Ex"] == pytest.approx(_solve(d["image"])["Ex"], rel=1e-9)
    span = design_span(
        predictor, run, "Ex", n_targets=2, candidates=2, steps=10, regressor="svr", latent="pca", decode_steps=30
    )
    assert set(np.unique(span["images"])) <= {0, 1, 2}
    np.testing.assert_allclose(span["achieved"], _solve(span["images"])["Ex"], rtol=1e-9)


def test_k_phase_latent_vs_pca_scores_labels_over_every_pair(three_phase):
    from microlatent.evaluation.inference import roundtrip
    from microlatent.evaluation.pca_comparison import compare_latents
    from microlatent.evaluation.phases import phase_metrics
    from microlatent.models.run import Run
    from microlatent.stats import one_hot

    data, checkpoint, _ = three_phase
    result = compare_latents(checkpoint, data, limit_per_class=2, steps=30)
    rows = {row["latent"]: row for row in result["rows"]}
    assert rows["vae"]["dimensions"] == 64 and rows["pca-stats"]["dimensions"] == 23  # capped: 24 train images
    test = np.stack([read_images(data, "seg", [int(n[4:-1])])[0] for n in result["names"]]).astype(np.float32)
    inputs, recons = roundtrip(Run.load(checkpoint, "cpu"), list(test))
    expected = phase_metrics(inputs, one_hot(recons.argmax(axis=1), 3, np.float64))["js_labels"]
    np.testing.assert_allclose(result["per_image"]["vae"]["js"], expected, rtol=1e-9)
    assert all(np.isfinite(v).all() for scores in result["per_image"].values() for v in scores.values())


def test_k_phase_prior_realism_is_per_phase_and_targets_are_solved_with_k_moduli(three_phase, tmp_path):
    from scipy.stats import wasserstein_distance

    from microlatent.models.run import Run
    from microlatent.prior import fit_prior
    from microlatent.prior.evaluate import targeted_generation
    from microlatent.prior.fit import generate as sample
    from microlatent.prior.realism import StatisticsSpace, autocorrelation_length, distances

    data, checkpoint, _ = three_phase
    prior = fit_prior(checkpoint, data, tmp_path / "prior", ("Ex",), progress=False, epochs=2, width=16, depth=1)
    assert prior.phases["E"] == list(MODULI["E"])
    run = Run.load(checkpoint, "cpu")
    out = targeted_generation(run, prior, n_targets=2, per_target=3, steps=10, seed=4)["Ex"]
    for j, target in enumerate(out["targets"]):
        images, _, _ = sample(run, prior, 3, targets={"Ex": target}, steps=10, seed=4 + j)
        assert set(np.unique(images)) <= {0, 1, 2}
        np.testing.assert_allclose(out["achieved"][j], _solve(images)["Ex"], rtol=1e-9)
    real = read_images(data, "seg").astype(np.float64)
    space = StatisticsSpace(real[:20], ["seg"] * 20, n_phases=3)
    assert space.pca.pairs == "auto" and space.pca.statistics_shape_ == (3, 32, 32)  # every autocorrelation
    d = distances(space, real[:10], real[20:])
    for h in range(3):
        a, b = real[:10] == h, real[20:] == h
        assert d["vf_per_phase"][h] == pytest.approx(wasserstein_distance(a.mean(axis=(1, 2)), b.mean(axis=(1, 2))))
        assert d["length_per_phase"][h] == pytest.approx(
            wasserstein_distance(autocorrelation_length(a), autocorrelation_length(b))
        )
    assert d["vf"] == pytest.approx(np.mean(d["vf_per_phase"])) and d["frechet"] > 0


def test_three_phases_through_the_design_latent_and_prior_commands(three_phase, tmp_path):
    from microlatent.cli import _register_commands, cli
    from microlatent.data.store import class_phases
    from microlatent.evaluation import encode
    from microlatent.models.run import Run

    _register_commands()
    data, checkpoint, _ = three_phase
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.output

    predictor = tmp_path / "predictor"
    run("design", "fit", checkpoint, "--data", data, "--out", predictor, "--regressor", "mlp", "--regressor", "svr",
        "--hidden", "16,16", "--n", "20")  # fmt: skip
    assert json.loads((predictor / "predictor.json").read_text())["n_phases"] == 3
    for features in ("latent", "downsampled", "pca-stats"):
        out = run("design", "predict", predictor, data, "--features", features, "--n", "2", "--out", tmp_path / "p.csv")
        assert out.count("seg[") == 2
    run("design", "curves", "--checkpoint", checkpoint, "--data", data, "--features", "downsampled",
        "--features", "pca-stats", "--regressor", "linear", "--sizes", "10,all", "--components", "2,4",
        "--out", tmp_path / "curves")  # fmt: skip
    assert (tmp_path / "curves" / "curves.png").is_file()
    out = run("design", "search", checkpoint, "--predictor", predictor, "--target", "Ex=5", "--candidates", "3",
              "--n-designs", "2", "--steps", "10", "--out", tmp_path / "designs")  # fmt: skip
    assert "phases " in out and (tmp_path / "designs" / "designs.png").is_file()
    run("design", "search", checkpoint, "--predictor", predictor, "--span", "2", "--candidates", "2", "--steps", "5",
        "--latent", "pca", "--regressor", "svr", "--decode-steps", "20", "--out", tmp_path / "span")  # fmt: skip
    assert json.loads((tmp_path / "span" / "span.json").read_text())["nrmse"] >= 0
    assert "pca-stats" in run("latent-vs-pca", checkpoint, "--data", data, "--n", "1", "--steps", "20")
    run("model", "encode", checkpoint, data, "--n", "2", "--out", tmp_path / "codes.npz")
    run("model", "decode", checkpoint, tmp_path / "codes.npz", "--out", tmp_path / "decoded.npz")
    with np.load(tmp_path / "codes.npz") as codes, np.load(tmp_path / "decoded.npz") as decoded:
        assert decoded["images"].shape == (2, 3, 32, 32)
        assert np.array_equal(decoded["labels"], decoded["images"].argmax(axis=1))
        assert np.array_equal(codes["mu"], encode(Run.load(checkpoint, "cpu"), list(read_images(data, "seg")[:2]))[0])
    prior = tmp_path / "prior"
    run("prior", "train", checkpoint, "--data", data, "--condition", "Ex", "--out", prior, "--epochs", "2",
        "--width", "16", "--depth", "1")  # fmt: skip
    run("generate", checkpoint, "--prior", prior, "--target", "Ex=5", "--n", "3", "--out", tmp_path / "gen")
    assert class_phases(tmp_path / "gen" / "generated.h5", "generated") == 3
    run("prior", "evaluate", checkpoint, "--prior", prior, "--data", data, "--n", "4", "--steps", "5")
    numbers = json.loads((prior / "evaluation" / "realism.json").read_text())
    assert numbers["settings"]["n_phases"] == 3 and len(numbers["classes"]["seg"]["floor"]["vf_per_phase"]) == 3
    assert (prior / "evaluation" / "samples_seg.png").is_file() and "Ex" in numbers["targeted"]


@pytest.mark.filterwarnings("ignore:resnet_vae. no pretrained")
@pytest.mark.parametrize(
    "name, loss", [("resnet_vae", {"msess": 1.0, "kl": 1e-4}), ("texture_vae", {"style": 1.0, "kl": 1e-4})]
)
def test_every_architecture_trains_and_evaluates_on_three_phases(tmp_path, name, loss):
    from conftest import tiny_training_config

    from microlatent.evaluation.phases import evaluate_phases
    from microlatent.models.run import Run
    from microlatent.training import train

    ((images, labels),) = generate("Voronoi3", 24, size=32, seed=4).values()
    write_class(tmp_path / "v3.h5", "V3", images, labels, n_phases=3)
    model = {"name": name, **SMALL_MODELS[name]}
    config = tiny_training_config(tmp_path / "v3.h5", model=model, loss=loss, optim={"epochs": 1})
    config["model"] = model  # the architecture's own keys only
    train(config, out_dir=tmp_path / "run", progress=False)
    trained = Run.load(tmp_path / "run" / "model.pt", "cpu")
    assert trained.model.n_phases == 3 and trained.config["model"]["phases"] == 3
    result = evaluate_phases({"run": tmp_path / "run" / "model.pt"}, tmp_path / "v3.h5", device="cpu")
    assert all(v >= -1e-9 for v in result["models"]["run"]["excess_cess"])
