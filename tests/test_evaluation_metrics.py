"""Evaluation metrics against their definitions and hand-computed cases."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch

from microlatent.data.generators import generate, lines
from microlatent.errors import InputError
from microlatent.evaluation.latent import most_used_units, traversal_codes
from microlatent.evaluation.lines import count_lines, line_orientation, line_truth
from microlatent.evaluation.metrics import (
    SetMoments,
    autocorrelation_features,
    default_threshold,
    flatten,
    image_mse,
    mean_mse_to_set,
    nearest_neighbours,
    reconstruction_metrics,
    statistics_losses,
    summarize,
    volume_fraction_difference,
    win_matrix,
)
from microlatent.evaluation.texture import GramDistance, stsim2, stsim2_batch, stsim2_terms
from microlatent.losses import terms

LINES_64 = dict(size=64, length=(32, 64), thickness=(2, 3), min_gap=3)  # the hashemi_ssvae_cpu set


# --- win matrix (Cai et al. Fig. 11) ---------------------------------------------------------------


def test_win_matrix_on_constructed_losses():
    losses = {"A": [1.0, 2.0, 3.0, 4.0], "B": [2.0, 2.0, 1.0, 5.0], "C": [0.5, 0.5, 0.5, 0.5]}
    labels, m = win_matrix(losses)
    assert labels == ["A", "B", "C"]
    assert np.isnan(np.diag(m)).all()
    assert m[0, 1] == 0.5  # A < B on samples 0 and 3; the tie on sample 1 counts for neither
    assert m[1, 0] == 0.25  # B < A on sample 2 only
    assert m[0, 2] == 0.0 and m[2, 0] == 1.0
    assert m[1, 2] == 0.0 and m[2, 1] == 1.0


def test_win_matrix_skips_samples_without_a_finite_loss_and_checks_lengths():
    _, m = win_matrix({"A": [1.0, np.nan, 1.0], "B": [2.0, 0.0, 0.0]})
    assert m[0, 1] == 0.5 and m[1, 0] == 0.5
    with pytest.raises(InputError):
        win_matrix({"A": [1.0, 2.0], "B": [1.0]})


# --- volume fraction difference (Hashemi et al. B.1) ------------------------------------------------


def test_volume_fraction_difference_by_hand():
    x = np.zeros((4, 4))
    x[0, :] = 1  # vf 4/16
    r = np.zeros((4, 4))
    r[0, :3] = [0.5, 0.96, 1.0]  # 3 pixels >= 0.5, 2 pixels >= 0.95
    r[3, 3] = 0.49
    assert volume_fraction_difference(x, r, 0.5)[0] == pytest.approx(abs(4 - 3) / 4 * 100)  # 25 %
    assert volume_fraction_difference(x, r, 0.95)[0] == pytest.approx(abs(4 - 2) / 4 * 100)  # 50 %
    more = r.copy()
    more[1:, :] = 0.7  # 3 + 12 pixels >= 0.5: the difference is absolute
    assert volume_fraction_difference(x, more, 0.5)[0] == pytest.approx(abs(4 - 15) / 4 * 100)
    per_sample = volume_fraction_difference(np.stack([x, x]), np.stack([r, r]), [0.5, 0.95])
    np.testing.assert_allclose(per_sample, [25.0, 50.0])
    assert np.isnan(volume_fraction_difference(np.zeros((4, 4)), r, 0.5)[0])  # no phase 1 in the input


def test_threshold_mapping_for_lines():
    # Hashemi et al. threshold dark lines at 0.05: "line where value < 0.05"; our lines are bright.
    assert default_threshold("lines") == 0.95 and default_threshold("GRF") == 0.5 and default_threshold(None) == 0.5
    theirs = np.array([0.0, 0.04, 0.049, 0.051, 0.5, 1.0])  # dark-line convention
    ours = 1.0 - theirs
    line_theirs = theirs < 0.05
    line_ours = ours >= default_threshold("lines")
    np.testing.assert_array_equal(line_theirs, line_ours)


# --- CESS, MSESS, MSE per sample --------------------------------------------------------------------


def test_statistics_losses_by_hand_on_constant_images():
    # input all phase 1: f11 = 1, other pairs 0; a constant reconstruction c has f11 = c^2,
    # f10 = f01 = c (1 - c), f00 = (1 - c)^2 at every offset.
    x = np.ones((1, 8, 8))
    c = 0.5
    r = np.full((1, 8, 8), c)
    losses = statistics_losses(x, r)
    assert losses["cess"][0] == pytest.approx(-math.log(c**2))
    assert losses["msess"][0] == pytest.approx((1 - c**2) ** 2 + 2 * (c * (1 - c)) ** 2 + ((1 - c) ** 2) ** 2)
    assert image_mse(x, r)[0] == pytest.approx(0.25)


def test_per_sample_metrics_equal_the_training_terms():
    rng = np.random.default_rng(0)
    x = (rng.random((3, 16, 16)) > 0.6).astype(np.float64)
    r = np.clip(x * 0.8 + rng.random((3, 16, 16)) * 0.3, 0, 1)
    values = reconstruction_metrics(x, r)
    for i in range(3):
        xi, ri = torch.from_numpy(x[i : i + 1, None]), torch.from_numpy(r[i : i + 1, None])
        assert values["cess"][i] == pytest.approx(terms.cess(ri, xi).item(), rel=1e-10)
        assert values["msess"][i] == pytest.approx(terms.msess(ri, xi).item(), rel=1e-10)
        assert values["mse"][i] == pytest.approx(terms.mse(ri, xi).item(), rel=1e-10)
    np.testing.assert_allclose(values["log_cess"], np.log(values["cess"]))
    assert values["cess"].mean() == pytest.approx(
        terms.cess(torch.from_numpy(r[:, None]), torch.from_numpy(x[:, None])).item()
    )


def test_summarize():
    s = summarize([1.0, 2.0, 3.0, 4.0, np.nan])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["median"] == 2.5 and s["min"] == 1 and s["max"] == 4
    assert s["q25"] == pytest.approx(1.75)
    assert summarize([np.nan])["n"] == 0 and math.isnan(summarize([])["mean"])


# --- statistics space: nearest neighbours, mean distances (Hashemi et al. B, B.3) -------------------


def test_nearest_neighbour_returns_the_right_index_in_chunks_and_in_statistics_space():
    rng = np.random.default_rng(1)
    references = rng.random((30, 12))
    order = rng.permutation(30)[:10]
    queries = references[order] + 1e-3 * rng.standard_normal((10, 12))
    index, distance = nearest_neighbours(queries, references)
    np.testing.assert_array_equal(index, order)
    index_chunked, distance_chunked = nearest_neighbours(queries, [references[:7], references[7:20], references[20:]])
    np.testing.assert_array_equal(index_chunked, order)
    np.testing.assert_allclose(distance_chunked, distance)
    np.testing.assert_allclose(distance, ((queries - references[order]) ** 2).mean(1), atol=1e-12)

    # Periodic shifts leave the autocorrelation unchanged: the nearest image in statistics space is the
    # unshifted original, though in image space it is not.
    ((images, _),) = generate("GRF", 8, size=32, seed=3).values()
    images = images.astype(np.float64)
    shifted = np.stack([np.roll(images[k], (5 + k, 11), (0, 1)) for k in (6, 2, 4)])
    index, distance = nearest_neighbours(autocorrelation_features(shifted), autocorrelation_features(images))
    np.testing.assert_array_equal(index, [6, 2, 4])
    assert distance.max() < 1e-12
    image_index, _ = nearest_neighbours(flatten(shifted), flatten(images))
    assert list(image_index) != [6, 2, 4]


def test_mean_mse_to_set_equals_brute_force():
    rng = np.random.default_rng(2)
    queries, references = rng.random((5, 20)), rng.random((13, 20))
    brute = np.array([[((q - s) ** 2).mean() for s in references] for q in queries]).mean(1)
    np.testing.assert_allclose(mean_mse_to_set(queries, references), brute, rtol=1e-12)
    moments = SetMoments().update(references[:4]).update(references[4:])
    np.testing.assert_allclose(moments.mean_mse(queries), brute, rtol=1e-12)


# --- lines: orientation and count ------------------------------------------------------------------


@pytest.mark.parametrize("params", [LINES_64, dict(size=224)])
@pytest.mark.parametrize("sigma", [0.0, 0.7])
def test_line_count_and_orientation_match_the_labels(params, sigma):
    images, labels = lines(60, seed=4, **params)
    for image, label in zip(images, labels):
        orientation, count = line_truth(label)
        image = ndimage.gaussian_filter(image.astype(np.float64), sigma) if sigma else image
        assert line_orientation(image) == orientation, label
        assert count_lines(image) == count, label


def test_line_count_hand_cases():
    image = np.zeros((20, 20))
    image[2:4, :] = 1
    image[6:8, 5:] = 1
    image[8, 5:] = 0  # a thin crack would not split; here it is simply background
    image[9:11, :15] = 1  # one empty row (8) between lines 2 and 3
    assert line_orientation(image) == "horizontal"
    assert count_lines(image, merge_gap=0) == 3
    assert count_lines(image, merge_gap=1) == 2  # runs separated by one row merge
    assert count_lines(image.T) == count_lines(image) == 2
    stray = np.zeros((20, 20))
    stray[5, 5] = 1  # 1 pixel in a row of 20: below min_fill
    stray[10:12, :] = 1
    assert count_lines(stray) == 1
    assert count_lines(np.zeros((8, 8))) == 0 and line_orientation(np.zeros((8, 8))) is None
    gapped = np.zeros((20, 20))
    gapped[4:6, :8] = 1
    gapped[4:6, 12:] = 1  # a gap along the line does not split it
    assert count_lines(gapped) == 1
    assert line_truth("class=lines; orientation=vertical; n_lines=3") == ("vertical", 3)
    assert line_truth("class=GRF; volume_fraction=0.5") == (None, None)


# --- texture: STSIM-2 and the Gram distance --------------------------------------------------------


@pytest.fixture(scope="module")
def textures():
    ((grf, _),) = generate("GRF", 2, size=64, seed=5).values()
    ((voronoi, _),) = generate("VoronoiSmall", 1, size=64, seed=5).values()
    lines_images, _ = lines(1, seed=5, **LINES_64)
    return {
        "grf": grf.astype(np.float64),
        "voronoi": voronoi[0].astype(np.float64),
        "lines": lines_images[0].astype(np.float64),
    }


def test_stsim2_known_answers(textures):
    x = textures["grf"][0]
    assert stsim2(x, x) == pytest.approx(1.0, abs=1e-12)
    near = stsim2(x, np.roll(x, 1, axis=0))
    shifted = stsim2(x, np.roll(x, (13, 7), axis=(0, 1)))
    assert near > 0.95 and shifted > 0.8
    for other in (textures["lines"], np.full_like(x, x.mean()), textures["voronoi"]):
        assert stsim2(x, other) < shifted
    assert stsim2(x, np.full_like(x, x.mean())) < 0.6
    assert stsim2(x, textures["lines"]) == pytest.approx(stsim2(textures["lines"], x), abs=1e-12)  # symmetric
    batch = stsim2_batch(np.stack([x, x]), np.stack([x, textures["lines"]]))
    np.testing.assert_allclose(batch, [1.0, stsim2(x, textures["lines"])], atol=1e-12)
    term_values = stsim2_terms(x[None], textures["lines"][None])
    assert len(term_values) == 14 + 26  # 12 bands + 2 residuals, 8 cross-scale + 18 cross-orientation
    assert all(0.0 <= v[0] <= 1.0 + 1e-9 for v in term_values.values())
    with pytest.raises(InputError):
        stsim2(np.zeros((16, 16)), np.zeros((16, 16)))


def test_gram_distance_is_the_per_sample_style_loss(textures):
    from microlatent.losses.style import StyleLoss

    x = np.stack([textures["grf"][0], textures["voronoi"]]).astype(np.float32)
    y = np.stack([textures["grf"][1], textures["lines"]]).astype(np.float32)
    distance = GramDistance(vgg_weights="random")
    values = distance(x, y)
    assert distance(x, x) == pytest.approx([0.0, 0.0], abs=1e-12)
    loss = StyleLoss(vgg_weights="random")(torch.from_numpy(y)[:, None], torch.from_numpy(x)[:, None])
    assert values.mean() == pytest.approx(loss.item(), rel=1e-4)
    assert values[1] > values[0]  # Voronoi vs lines is further than GRF vs GRF


# --- latent traversals ------------------------------------------------------------------------------


def test_traversal_codes_vary_one_unit():
    values = np.linspace(-4, 4, 10)
    vector = np.arange(5, dtype=np.float32)
    codes = traversal_codes(vector, 2, values)
    assert codes.shape == (10, 5)
    np.testing.assert_allclose(codes[:, 2], values)
    np.testing.assert_allclose(np.delete(codes, 2, axis=1), np.tile(np.delete(vector, 2), (10, 1)))
    spatial = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    codes = traversal_codes(spatial, 1, values)
    assert codes.shape == (10, 3, 4, 4)
    np.testing.assert_allclose(codes[:, 1], np.broadcast_to(values[:, None, None], (10, 4, 4)))  # uniform channel
    np.testing.assert_allclose(codes[:, [0, 2]], np.broadcast_to(spatial[[0, 2]], (10, 2, 4, 4)))
    mu = np.zeros((6, 3))
    mu[:, 1] = np.arange(6)
    mu[:, 2] = np.arange(6) * 0.1
    assert most_used_units(mu, 2) == [1, 2]
    with pytest.raises(InputError):
        traversal_codes(vector, 5, values)


def test_match_volume_fraction_gives_the_mean_and_undoes_a_logit_shift():
    """The matched reconstruction has exactly the asked mean, keeps the pixels' order, and a
    reconstruction that is its input shifted in logit space comes back to the input."""
    import torch

    from microlatent.evaluation.metrics import match_volume_fraction, matched_excess_cess, statistics_losses

    rng = np.random.default_rng(1)
    noise = torch.as_tensor(rng.normal(size=(5, 1, 24, 24)))
    soft = torch.sigmoid(3 * torch.nn.functional.avg_pool2d(noise, 5, 1, 2, count_include_pad=False))[:, 0].numpy()
    shifted = 1 / (1 + np.exp(-(np.log(soft / (1 - soft)) + rng.normal(0, 1.5, (5, 1, 1)))))
    matched = match_volume_fraction(shifted, soft.mean((1, 2)))
    np.testing.assert_allclose(matched.mean((1, 2)), soft.mean((1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(matched, soft, rtol=0, atol=1e-9)
    assert np.all(np.argsort(matched[0], axis=None, kind="stable") == np.argsort(shifted[0], axis=None, kind="stable"))
    raw = statistics_losses(soft, shifted)["excess_cess"]
    assert np.all(raw > 1e-4) and np.all(matched_excess_cess(soft, shifted) < 1e-6 * raw)
    with pytest.raises(InputError, match="volume fractions"):
        match_volume_fraction(shifted, [0.5, 1.5, 0.2, 0.1, 0.3])


def test_calibrated_excess_cess_removes_a_wrong_contrast_and_volume_fraction_but_not_structure():
    """A reconstruction that is the input passed through sigmoid(a logit + b) calibrates back to ~0;
    one with the wrong structure (white noise for a correlated field) stays far above that;
    calibration never raises the excess."""
    import torch

    from microlatent.evaluation.metrics import calibrated_excess_cess, statistics_losses

    rng = np.random.default_rng(0)
    noise = torch.as_tensor(rng.normal(size=(6, 1, 24, 24)))
    soft = torch.sigmoid(3 * torch.nn.functional.avg_pool2d(noise, 5, 1, 2, count_include_pad=False))[:, 0].numpy()
    distorted = 1 / (1 + np.exp(-(0.5 * np.log(soft / (1 - soft)) + 0.7)))
    raw = statistics_losses(soft, distorted)["excess_cess"]
    fixed = calibrated_excess_cess(soft, distorted)
    assert np.all(raw > 1e-3) and np.all(fixed < 1e-3 * raw)
    white = torch.sigmoid(torch.as_tensor(rng.normal(size=(6, 24, 24)))).numpy()  # no correlation: wrong structure
    binary = (soft > 0.5).astype(np.float64)
    raw_wrong = statistics_losses(binary, white)["excess_cess"]
    fixed_wrong = calibrated_excess_cess(binary, white)
    assert np.all(fixed_wrong <= raw_wrong + 1e-12) and fixed_wrong.min() > 10 * fixed.max()
