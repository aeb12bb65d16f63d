"""2-point statistics against the definition, computed by explicit loops over pixels."""

import itertools
import sys

import numpy as np
import pytest
import torch

from microlatent.errors import InputError
from microlatent.stats import TwoPointStatistics, offsets, two_point, volume_fraction


def loop_statistics(phases, periodic, pairs):
    """f(h, h'|r) = sum over valid x of m(h, x) m(h', x + r) / number of valid x, by brute force."""
    _, height, width = phases.shape
    ry, rx = offsets((height, width), periodic)
    out = np.zeros((len(pairs), len(ry), len(rx)))
    for k, (h, h2) in enumerate(pairs):
        for i, dy in enumerate(ry):
            for j, dx in enumerate(rx):
                total = count = 0
                for y, x in itertools.product(range(height), range(width)):
                    y2, x2 = y + dy, x + dx
                    if periodic:
                        y2, x2 = y2 % height, x2 % width
                    elif not (0 <= y2 < height and 0 <= x2 < width):
                        continue
                    total += phases[h, y, x] * phases[h2, y2, x2]
                    count += 1
                out[k, i, j] = total / count
    return out


SHAPES = [(5, 5), (4, 4), (4, 6), (7, 4)]  # odd, even, non-square both ways


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("periodic", [True, False])
def test_two_phase_matches_definition(shape, periodic):
    rng = np.random.default_rng(1)
    x = rng.random((3, *shape))
    all_pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    got = two_point(x, periodic=periodic, pairs="all")
    assert got.shape == (3, 4, *(shape if periodic else (2 * shape[0] - 1, 2 * shape[1] - 1)))
    for n in range(3):
        expected = loop_statistics(np.stack([1 - x[n], x[n]]), periodic, all_pairs)
        np.testing.assert_allclose(got[n], expected, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("periodic", [True, False])
def test_three_phase_matches_definition(shape, periodic):
    rng = np.random.default_rng(2)
    phases = rng.dirichlet([1, 1, 1], size=(2, *shape)).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    pairs = [(h, k) for h in range(3) for k in range(3)]
    got = two_point(phases, periodic=periodic, pairs="all")
    for n in range(2):
        np.testing.assert_allclose(got[n], loop_statistics(phases[n], periodic, pairs), atol=1e-12)
    explicit = two_point(phases, periodic=periodic, pairs=[(2, 0), (1, 1)])
    np.testing.assert_allclose(explicit, got[:, [6, 4]], atol=1e-12)


def test_binary_image_volume_fraction_at_zero_offset():
    rng = np.random.default_rng(3)
    x = (rng.random((4, 16, 12)) < 0.3).astype(np.uint8)
    for periodic in (True, False):
        stats = two_point(x, periodic=periodic)
        centre = stats[:, :, stats.shape[2] // 2, stats.shape[3] // 2]
        np.testing.assert_allclose(centre[:, 1], x.mean(axis=(1, 2)), rtol=1e-6)
        np.testing.assert_allclose(centre[:, 0], 1 - x.mean(axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("periodic", [True, False])
def test_all_pairs_sum_to_one_at_every_offset(periodic):
    rng = np.random.default_rng(4)
    x = rng.random((2, 9, 11))
    stats = two_point(x, periodic=periodic, pairs="all")
    np.testing.assert_allclose(stats.sum(axis=1), 1.0, atol=1e-12)
    phases = rng.dirichlet([1, 2, 3, 4], size=(2, 6, 5)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(two_point(phases, periodic=periodic, pairs="all").sum(axis=1), 1.0, atol=1e-12)


def test_non_periodic_constant_image_gives_constant_map():
    stats = two_point(np.full((7, 10), 0.37), periodic=False, pairs="all")
    np.testing.assert_allclose(stats[0, 3], 0.37**2, atol=1e-12)
    np.testing.assert_allclose(stats[0, 1], 0.37 * 0.63, atol=1e-12)


def test_periodic_statistics_are_translation_invariant_and_non_periodic_are_not():
    rng = np.random.default_rng(5)
    x = (rng.random((1, 12, 12)) < 0.5).astype(float)
    shifted = np.roll(x, (3, -5), axis=(1, 2))
    np.testing.assert_allclose(two_point(x), two_point(shifted), atol=1e-12)
    assert np.abs(two_point(x, periodic=False) - two_point(shifted, periodic=False)).max() > 1e-3


def test_single_line_has_the_expected_autocorrelation():
    """A horizontal line of thickness t on an H x W periodic image: S(ry, rx) = max(t - |ry|, 0) / H."""
    height, width, thickness = 20, 16, 3
    x = np.zeros((height, width))
    x[5 : 5 + thickness] = 1
    stats = two_point(x)[0, 1]
    ry, _ = offsets((height, width))
    expected = np.clip(thickness - np.abs(ry), 0, None)[:, None] / height * np.ones((1, width))
    np.testing.assert_allclose(stats, expected, atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
def test_crop_keeps_the_central_offsets(periodic):
    rng = np.random.default_rng(6)
    x = rng.random((2, 10, 9))
    full = two_point(x, periodic=periodic, pairs="all")
    for crop in (1, 4, 5, (3, 6)):
        kh, kw = (crop, crop) if isinstance(crop, int) else crop
        got = two_point(x, periodic=periodic, pairs="all", crop=crop)
        top, left = full.shape[2] // 2 - kh // 2, full.shape[3] // 2 - kw // 2
        np.testing.assert_allclose(got, full[:, :, top : top + kh, left : left + kw], atol=1e-12)
        ry, rx = offsets((10, 9), periodic, crop)
        assert (len(ry), len(rx)) == (kh, kw) and (0 in ry) and ry[kh // 2] == 0 and rx[kw // 2] == 0


def test_numpy_and_torch_types_and_shapes():
    x = np.random.default_rng(7).random((8, 8))
    out64 = two_point(x)
    assert isinstance(out64, np.ndarray) and out64.dtype == np.float64 and out64.shape == (1, 2, 8, 8)
    out32 = two_point(x.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, atol=1e-6)
    tensor = torch.tensor(x, dtype=torch.float32)
    out = two_point(tensor[None, None])
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (1, 2, 8, 8)
    np.testing.assert_allclose(out.numpy(), out64, atol=1e-6)
    assert two_point(torch.tensor(x)).dtype == torch.float64
    assert two_point(np.ones((4, 4), dtype=bool)).dtype == np.float32
    assert two_point(tensor.half()).dtype == torch.float32


def test_chunked_batches_match_one_at_a_time(monkeypatch):
    import sys

    module = sys.modules["microlatent.stats.correlation"]

    rng = np.random.default_rng(8)
    x = rng.random((5, 8, 6))
    whole = two_point(x, periodic=False, pairs="all")
    monkeypatch.setattr(module, "_CHUNK_BYTES", 1)  # force one image per chunk
    monkeypatch.setattr(module, "_CHUNK_BYTES_CPU", 1)
    np.testing.assert_allclose(two_point(x, periodic=False, pairs="all"), whole, atol=1e-14)
    tensor = torch.tensor(x, requires_grad=True)
    with_grad = two_point(tensor, periodic=False, pairs="all", validate=False)
    assert with_grad.requires_grad
    np.testing.assert_allclose(with_grad.detach().numpy(), whole, atol=1e-14)


def test_float32_non_periodic_maps_are_accurate_at_offsets_with_few_pairs(monkeypatch):
    """Corner offsets have a single pair; float32 FFT roundoff divided by 1 must not show there."""
    x = (np.random.default_rng(11).random((2, 64, 64)) < 0.4).astype(np.float32)
    f32 = two_point(x, periodic=False, pairs="all")
    f64 = two_point(x.astype(np.float64), periodic=False, pairs="all")
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, f64, atol=1e-6)
    corner = x[:, 0, 0] * x[:, -1, -1]  # f(1,1 | r = (-(H-1), -(W-1))): the one pair is x[H-1,W-1], x[0,0]
    np.testing.assert_allclose(f32[:, 3, 0, 0], corner, atol=1e-6)
    # Grey (non-binary) float32 input, and binary images too large to round sums exactly, take the
    # float64 path: just as accurate at the corners.
    grey = np.random.default_rng(13).random((2, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(
        two_point(grey, periodic=False, pairs="all"),
        two_point(grey.astype(np.float64), periodic=False, pairs="all"),
        atol=1e-6,
    )
    module = sys.modules["microlatent.stats.correlation"]
    monkeypatch.setattr(module, "_WHOLE_NUMBER_MAX_PIXELS", 16)
    np.testing.assert_allclose(two_point(x, periodic=False, pairs="all"), f64, atol=1e-6)


@pytest.mark.parametrize("crop", [31, 32, (9, 40)])
def test_cropped_non_periodic_maps_need_less_padding_and_stay_accurate_in_float32(crop):
    """A crop is padded only as far as its largest offset, and summed in float32 when every kept offset
    pairs enough pixels: it must still match the float64 full map, cropped."""
    x = (np.random.default_rng(12).random((3, 64, 50)) < 0.4).astype(np.float32)
    full = two_point(x.astype(np.float64), periodic=False, pairs="all")
    got = two_point(x, periodic=False, pairs="all", crop=crop)
    kh, kw = (crop, crop) if isinstance(crop, int) else crop
    top, left = full.shape[2] // 2 - kh // 2, full.shape[3] // 2 - kw // 2
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, full[:, :, top : top + kh, left : left + kw], atol=2e-6)
    three = np.stack([1 - x, x * 0.5, x * 0.5], axis=1)
    got3 = two_point(three, periodic=False, pairs="all", crop=crop)
    full3 = two_point(three.astype(np.float64), periodic=False, pairs="all")
    np.testing.assert_allclose(got3, full3[:, :, top : top + kh, left : left + kw], atol=2e-6)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("n_phases", [2, 3])
def test_gradients_match_finite_differences(periodic, n_phases):
    generator = torch.Generator().manual_seed(9)
    shape = (2, 5, 4) if n_phases == 2 else (1, 3, 4, 5)
    x = torch.rand(shape, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: two_point(t, periodic=periodic, pairs="all", validate=False), (x,))
    assert torch.autograd.gradcheck(lambda t: two_point(t, periodic=periodic, crop=3, validate=False), (x,))


def test_volume_fraction():
    x = np.zeros((2, 4, 5))
    x[0, :2] = 1
    np.testing.assert_allclose(volume_fraction(x), [0.5, 0.0])
    phases = np.stack([1 - x, x], axis=1)
    np.testing.assert_allclose(volume_fraction(phases), [[0.5, 0.5], [1.0, 0.0]])


def test_estimator_transform_and_flatten():
    x = np.random.default_rng(10).random((3, 6, 6))
    estimator = TwoPointStatistics(pairs="all", crop=3, flatten=True)
    assert estimator.fit(x) is estimator
    features = estimator.transform(x)
    assert features.shape == (3, 4 * 9)
    np.testing.assert_allclose(features, two_point(x, pairs="all", crop=3).reshape(3, -1))
    assert estimator.set_params(flatten=False).fit_transform(x).shape == (3, 4, 3, 3)


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.zeros((2, 2, 2, 2, 2)), {}, "got shape (2, 2, 2, 2, 2)"),
        (np.full((4, 4), 1.5), {}, "must lie in [0, 1]"),
        (np.full((4, 4), np.nan), {}, "NaN"),
        (np.zeros((4, 4)), {"pairs": "some"}, "pairs must be"),
        (np.zeros((4, 4)), {"pairs": [(0, 2)]}, "outside 0..1"),
        (np.zeros((4, 4)), {"crop": 5}, "larger than"),
        (np.zeros((4, 4)), {"crop": 0}, "positive integer"),
        (np.array(["a", "b"]), {}, "numeric"),
    ],
)
def test_bad_input_gives_one_line_errors(x, kwargs, message):
    with pytest.raises(InputError) as info:
        two_point(x, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_probabilities_that_do_not_sum_to_one_and_complex_input_are_refused():
    from microlatent.errors import InputError

    rng = np.random.default_rng(0)
    probabilities = rng.random((2, 3, 8, 8))
    with pytest.raises(InputError, match="must sum to 1 at every pixel"):
        two_point(probabilities)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert two_point(probabilities, pairs="all").sum(axis=1) == pytest.approx(1.0, abs=1e-6)
    for complex_input in (np.zeros((8, 8), np.complex64), torch.zeros(8, 8, dtype=torch.complex64)):
        with pytest.raises(InputError, match="complex"):
            two_point(complex_input)


def test_an_output_larger_than_memory_is_refused_with_its_size(monkeypatch):
    from microlatent.stats import correlation

    monkeypatch.setattr(correlation, "_available_memory", lambda: 1000)
    with pytest.raises(
        InputError,
        match=r"the statistics \(4, 2, 16, 16\) would take 0.02 MiB and 0.00 MiB is "
        r"available",
    ):
        two_point(np.zeros((4, 16, 16)))
