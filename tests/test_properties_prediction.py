"""Property prediction from latent codes: metrics against their definitions, regressors against
known maps, the downsampled control against block means, the torch export against predict(), and an
end-to-end run (generated images -> solver labels -> tiny trained VAE -> held-out R^2), CLI included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from microlatent.data import Split
from microlatent.design.folder import load_predictor
from microlatent.design.labels import read_labelled_split
from microlatent.design.predictor import fit_property_models
from microlatent.design.regression import PROPERTY_NAMES, PropertyRegressor, control_shape, downsample
from microlatent.errors import DataError, InputError
from microlatent.evaluation.metrics import mape, r2_per_property

# --------------------------------------------------------------------------------------------
# Metrics and the control.
# --------------------------------------------------------------------------------------------


def test_mape_matches_its_definition_on_a_hand_example():
    # |2-1|/2 = 0.5 and |4-5|/4 = 0.25 -> mean 0.375 = 37.5 %; second column: 10 % and 0 % -> 5 %
    assert mape([2.0, 4.0], [1.0, 5.0]) == pytest.approx(37.5)
    np.testing.assert_allclose(mape([[2.0, 10.0], [4.0, -3.0]], [[1.0, 11.0], [5.0, -3.0]]), [37.5, 5.0])
    from sklearn.metrics import mean_absolute_percentage_error

    rng = np.random.default_rng(0)
    t, p = rng.uniform(1, 3, (20, 3)), rng.uniform(1, 3, (20, 3))
    np.testing.assert_allclose(mape(t, p), 100 * mean_absolute_percentage_error(t, p, multioutput="raw_values"))
    with pytest.raises(InputError, match="undefined"):
        mape([0.0, 1.0], [1.0, 1.0])


def test_r2_is_one_minus_residual_over_total_sum_of_squares():
    # SS_res = 1, SS_tot = 2 -> 0.5; predicting the mean -> 0
    assert r2_per_property([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]) == pytest.approx(0.5)
    np.testing.assert_allclose(r2_per_property([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]], [[2.0, 6.0]] * 3), [0.0, 0.0])


def test_downsampling_control_equals_block_means():
    rng = np.random.default_rng(1)
    images = (rng.random((3, 8, 12)) < 0.4).astype(np.uint8)
    expected = images.reshape(3, 2, 4, 3, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(downsample(images, (2, 3)), expected, atol=1e-7)
    np.testing.assert_allclose(downsample(images[0], 4)[1, 2], images[0, 2:4, 6:9].mean(), atol=1e-7)
    assert control_shape((4, 14, 14)) == (14, 14)  # Cai et al.: 224 px, /16 encoder -> 14 x 14 control
    assert control_shape((64,)) == (8, 8)
    with pytest.raises(InputError, match="cannot area-downsample"):
        downsample(images, (16, 3))


# --------------------------------------------------------------------------------------------
# Regressors on synthetic maps.
# --------------------------------------------------------------------------------------------


def _linear_data(seed=0, n=240, d=12, k=3, noise=0.05):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, k))
    return X, X @ W + 3.0 + noise * rng.normal(size=(n, k))


def _nonlinear_data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 4))
    y = np.c_[np.sin(2 * X[:, 0]) + X[:, 1] ** 2, np.exp(0.6 * X[:, 2]) * np.cos(X[:, 3])]
    return X, y


def test_linear_regression_recovers_a_linear_map():
    X, y = _linear_data()
    reg = PropertyRegressor(kind="linear").fit(X[:160], y[:160])
    r2 = r2_per_property(y[160:], reg.predict(X[160:]))
    assert (r2 > 0.95).all() and reg.score(X[160:], y[160:]) > 0.99
    assert reg.predict(X[:5]).shape == (5, 3)


def test_svr_beats_linear_regression_on_a_nonlinear_map():
    X, y = _nonlinear_data()
    train, test = slice(0, 220), slice(220, None)
    svr = PropertyRegressor(kind="svr").fit(X[train], y[train])
    lin = PropertyRegressor(kind="linear").fit(X[train], y[train])
    r2_svr, r2_lin = r2_per_property(y[test], svr.predict(X[test])), r2_per_property(y[test], lin.predict(X[test]))
    assert (r2_svr > 0.85).all(), r2_svr
    assert (r2_svr > r2_lin + 0.2).all(), (r2_svr, r2_lin)


def test_mlp_learns_a_nonlinear_map_and_defaults_to_cais_architecture():
    assert PropertyRegressor().hidden_layer_sizes == (1000, 1000, 100)
    X, y = _nonlinear_data(seed=2, n=400)
    mlp = PropertyRegressor(kind="mlp", hidden_layer_sizes=(64, 64), random_state=0).fit(X[:320], y[:320])
    assert mlp.score(X[320:], y[320:]) > 0.85
    lin = PropertyRegressor(kind="linear").fit(X[:320], y[:320])
    assert mlp.score(X[320:], y[320:]) > lin.score(X[320:], y[320:]) + 0.2


def test_gradient_boosting_learns_a_nonlinear_map_and_refuses_a_torch_export():
    X, y = _nonlinear_data(seed=5, n=400)
    gbr = PropertyRegressor(kind="gbr").fit(X[:320], y[:320])
    lin = PropertyRegressor(kind="linear").fit(X[:320], y[:320])
    assert gbr.score(X[320:], y[320:]) > lin.score(X[320:], y[320:]) + 0.2
    with pytest.raises(InputError, match="cannot guide a gradient search"):
        gbr.to_torch()


@pytest.mark.parametrize("kind", ["linear", "svr", "mlp"])
def test_torch_export_matches_predict_and_has_correct_gradients(kind):
    X, y = _nonlinear_data(seed=3, n=120)
    reg = PropertyRegressor(kind=kind, hidden_layer_sizes=(16, 8)).fit(X, y)
    net = reg.to_torch(torch.float64)
    x = torch.tensor(X[:7], requires_grad=True)
    out = net(x)
    np.testing.assert_allclose(out.detach().numpy(), reg.predict(X[:7]), rtol=1e-9, atol=1e-9)
    out[:, 1].sum().backward()
    h = 1e-6  # central differences of predict() along input 2
    step = np.zeros_like(X[:7])
    step[:, 2] = h
    numeric = (reg.predict(X[:7] + step)[:, 1] - reg.predict(X[:7] - step)[:, 1]) / (2 * h)
    np.testing.assert_allclose(x.grad[:, 2].numpy(), numeric, rtol=1e-4, atol=1e-6)


def test_single_output_shapes_and_input_errors():
    X, y = _linear_data(k=1)
    reg = PropertyRegressor(kind="svr").fit(X.reshape(len(X), 3, 4), y[:, 0])  # (N, ...) inputs are flattened
    assert reg.predict(X[:4]).shape == (4,)
    with pytest.raises(InputError, match="features per sample"):
        reg.predict(X[:4, :5])
    with pytest.raises(InputError, match="not fitted"):
        PropertyRegressor().predict(X)
    with pytest.raises(InputError, match="kind must be"):
        PropertyRegressor(kind="forest").fit(X, y)
    with pytest.raises(InputError, match="finite"):
        PropertyRegressor(kind="linear").fit(X, np.where(np.arange(len(y))[:, None] == 3, np.nan, y))


# --------------------------------------------------------------------------------------------
# End to end: generated images, solver labels, a tiny trained VAE.
# --------------------------------------------------------------------------------------------

SIZE, PER_CLASS, CLASSES = 32, 60, ("GRF", "AngEllipse")


def make_labelled_set(path):
    """120 images of 32 x 32 (two MICRO2D-like classes with varying volume fraction), homogenized."""
    from microlatent.data import generate
    from microlatent.data.store import write_class
    from microlatent.properties.storage import homogenize_file

    for kind in CLASSES:
        ((images, labels),) = generate(kind, PER_CLASS, size=SIZE, seed=1).values()
        write_class(path, kind, images, labels)
    homogenize_file(path, thermal=False)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory, train_tiny_model):
    root = tmp_path_factory.mktemp("props")
    data = make_labelled_set(root / "set.h5")
    checkpoint = train_tiny_model(data, root / "run")
    return data, checkpoint, root


@pytest.fixture(scope="module")
def fitted(setup):
    """`microlatent design fit` on the tiny setup (all regressors; a smaller MLP to keep it quick)."""
    from microlatent.cli.design import design

    data, checkpoint, root = setup
    out = root / "predictor"
    result = CliRunner().invoke(
        design, ["fit", str(checkpoint), "--data", str(data), "--out", str(out), "--hidden", "256,256,32"]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out, result.output


def _metric(rows, set_name, features, regressor, prop):
    (row,) = [
        r
        for r in rows
        if (r["set"], r["features"], r["regressor"], r["property"]) == (set_name, features, regressor, prop)
    ]
    return float(row["r2"]), float(row["mape"])


def test_latent_predictor_of_ex_beats_the_mean_on_held_out_images(setup, fitted):
    import csv

    out, output = fitted
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for kind in ("mlp", "svr"):
        r2, err = _metric(rows, "labels", "latent", kind, "Ex")
        assert r2 > 0.5, (kind, r2)
        assert 0 < err < 60
    # the table is printed with every feature kind and every regressor
    for word in ("latent", "downsampled", "pca-stats", "mlp", "linear", "svr", "gbr", "R2 Ex", "MAPE% nu_yx"):
        assert word in output
    r2_pca, _ = _metric(rows, "labels", "pca-stats", "svr", "Ex")  # the classical latent learns Ex too
    assert r2_pca > 0.5, r2_pca
    meta = json.loads((out / "predictor.json").read_text())
    assert meta["latent_shape"] == [4, 4, 4] and meta["control_shape"] == [4, 4]
    assert meta["pca"]["n_components"] == 64 and 0 < meta["pca"]["explained_variance"] <= 1
    assert meta["split"]["split_fractions"] == [0.6, 0.1, 0.3]
    assert meta["n_train"] == 72 and meta["n_test"] == 36  # the training split: 60/10/30 of 60 per class
    assert meta["phases"]["E"] == [10.0, 1.0] and meta["properties"] == list(PROPERTY_NAMES)
    assert (out / "pred_vs_true.png").stat().st_size > 10_000


def test_reported_metrics_match_a_refit_on_the_same_split(setup, fitted):
    """The CSV's numbers are what the saved regressors give on the test split (R^2 and MAPE recomputed)."""
    from microlatent.design.regression import latent_codes
    from microlatent.models.run import Run

    data, checkpoint, _ = setup
    out, _ = fitted
    predictor = load_predictor(out)
    images, y, names, _ = read_labelled_split(data, "test", Split(fractions=(0.6, 0.1, 0.3)))
    model = Run.load(checkpoint, "cpu")
    pred = predictor.regressor("svr", "latent").predict(latent_codes(model, images).reshape(len(images), -1))
    import csv

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    r2, err = _metric(rows, "labels", "latent", "svr", "Gxy")
    assert r2_per_property(y, pred)[2] == pytest.approx(r2, abs=1e-5)
    assert mape(y, pred)[2] == pytest.approx(err, rel=1e-5)
    # the images were never seen in training: the train and test splits are disjoint
    train_names = set(read_labelled_split(data, "train", Split(fractions=(0.6, 0.1, 0.3)))[2])
    assert not train_names & set(names)


def test_predict_command_prints_the_saved_regressors_predictions(setup, fitted, tmp_path):
    from microlatent.cli.design import design
    from microlatent.models.run import Run

    data, checkpoint, _ = setup
    out, _ = fitted
    images = read_labelled_split(data, "test", Split(fractions=(0.6, 0.1, 0.3)))[0][:5]
    np.save(tmp_path / "five.npy", images)
    csv_path = tmp_path / "pred.csv"
    result = CliRunner().invoke(
        design, ["predict", str(out), str(tmp_path / "five.npy"), "--regressor", "svr", "--out", str(csv_path)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    printed = np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=range(1, 6))
    expected = load_predictor(out).predict_images(images, Run.load(checkpoint, "cpu"), kind="svr")
    np.testing.assert_allclose(printed, expected, rtol=1e-5)
    assert printed.shape == (5, 5) and "Ex" in result.output
    # the PCA latent: the saved PCA and regressor give what the fit reported for the same test images
    result = CliRunner().invoke(
        design,
        [
            "predict",
            str(out),
            str(tmp_path / "five.npy"),
            "--regressor",
            "svr",
            "--features",
            "pca-stats",
            "--out",
            str(csv_path),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    with np.load(out / "predictions.npz") as saved:
        np.testing.assert_allclose(
            np.loadtxt(csv_path, delimiter=",", skiprows=1, usecols=range(1, 6)), saved["pca-stats_svr"][:5], rtol=1e-5
        )


def test_predict_split_is_the_split_the_predictor_was_scored_on(setup, fitted):
    """--split test on the HDF5 file takes the model's split seed and fractions (60/10/30 here, not the
    default 80/10/10): the images printed are the predictor's test images."""
    from microlatent.cli.design import design

    data, _, _ = setup
    out, _ = fitted
    result = CliRunner().invoke(design, ["predict", str(out), str(data), "--split", "test", "--regressor", "linear"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    printed = {line.split()[0] for line in result.output.splitlines()[1:] if "[" in line}
    expected = set(read_labelled_split(data, "test", Split(fractions=(0.6, 0.1, 0.3)))[2])
    assert printed == expected and len(expected) == json.loads((out / "predictor.json").read_text())["n_test"]


def test_a_different_checkpoint_is_refused(setup, fitted, tmp_path):
    from microlatent.models import load_model, save_model
    from microlatent.models.run import Run

    _, checkpoint, _ = setup
    out, _ = fitted
    model = load_model(checkpoint)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_model(model, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not the model this predictor was fitted on"):
        load_predictor(out).check_run(Run.load(tmp_path / "other.pt", "cpu"))


def test_unlabelled_file_says_to_homogenize_first(setup, tmp_path):
    from microlatent.data import generate
    from microlatent.data.store import write_class

    _, checkpoint, _ = setup
    ((images, labels),) = generate("GRF", 10, size=SIZE, seed=0).values()
    write_class(tmp_path / "bare.h5", "GRF", images, labels)
    with pytest.raises(
        DataError,
        match=r"no homogenized_mechanical labels; run `microlatent properties homogenize "
        r".*bare\.h5` first",
    ):
        fit_property_models(checkpoint, tmp_path / "bare.h5", tmp_path / "out", kinds=("linear",))
    with pytest.raises(DataError, match="not a predictor folder"):
        load_predictor(tmp_path)


# --------------------------------------------------------------------------------------------
# Storage: skops, never pickles; files stay inside the folder.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "svr", "mlp"])
def test_saved_regressor_predicts_exactly_as_the_fitted_one(kind, tmp_path):
    from microlatent.design.folder import load_regressor, save_regressor

    X, y = _nonlinear_data(seed=4, n=80)
    reg = PropertyRegressor(kind=kind, hidden_layer_sizes=(8,)).fit(X, y)
    save_regressor(reg, tmp_path / "r.skops")
    np.testing.assert_array_equal(load_regressor(tmp_path / "r.skops").predict(X), reg.predict(X))


def test_a_skops_file_naming_a_foreign_type_is_refused_before_it_is_built(tmp_path):
    import collections

    import skops.io as sio

    from microlatent.design.folder import load_regressor

    sio.dump(collections.Counter(a=1), tmp_path / "evil.skops")  # any type outside sklearn/NumPy/ours
    with pytest.raises(DataError, match=r"refusing to load type collections\.Counter"):
        load_regressor(tmp_path / "evil.skops")


def test_pickles_and_paths_outside_the_folder_are_refused(setup, fitted, tmp_path):
    import pickle

    from microlatent.design.folder import load_regressor

    (tmp_path / "r.joblib").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="pickles .* are refused"):
        load_regressor(tmp_path / "r.joblib")
    out, _ = fitted
    meta = json.loads((out / "predictor.json").read_text())
    assert all(name.endswith(".skops") for name in meta["regressors"].values())
    for name in ("../../evil.skops", "/tmp/evil.skops", "sub/x.skops", ".."):
        predictor = load_predictor(out)
        predictor.meta["regressors"]["latent_linear"] = name
        with pytest.raises(DataError, match="not a plain file name inside the folder"):
            predictor.regressor("linear", "latent")
    old = dict(meta, version=1)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "predictor.json").write_text(json.dumps(old))
    with pytest.raises(DataError, match="refit"):
        load_predictor(tmp_path / "old")
