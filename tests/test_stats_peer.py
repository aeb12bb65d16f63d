"""microlatent's 2-point statistics against independent code: scipy.signal.correlate (direct sums, no
FFT; always runs) and PyMKS 0.4.1 ``two_point_stats`` (skipped unless PyMKS is installed).

Conventions mapped here:
- microlatent: f(h, h'|r) = sum_x m(h, x) m(h', x + r) / n(r); maps centred, offset r at
  [H'//2 + ry, W'//2 + rx]; periodic H x W, non-periodic (2H-1) x (2W-1).
- scipy.signal.correlate(b, a, mode="full")[k] = sum_x a(x) b(x + k - (N-1)) along each axis: the raw
  non-periodic sum S(r) at index r + (H-1), which is exactly microlatent's non-periodic layout.
  Periodic: correlate(b wrapped by np.pad(mode="wrap") with H//2 before and H-1-H//2 after, a,
  mode="valid")[j] = sum_x a(x) b((x + j - H//2) mod H): offset j - H//2 at index j, microlatent's
  periodic layout.
- PyMKS: two_point_stats(m_h, m_h') = f(h, h'|r) (same order), fftshifted and cut to offsets -c..c with
  c = min(cutoff, int((min(H, W) - 1) / 2)), i.e. microlatent's maps with crop=2c+1.
"""

import warnings

import numpy as np
import pytest
import scipy.signal
import torch

from microlatent.stats import offsets, two_point
from microlatent.stats.peers import import_pymks

ALL_PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1)]
# Odd, even, non-square both ways, a single row and a single column.
SHAPES = [(12, 17), (9, 8), (16, 16), (1, 7), (6, 1)]


def phases_of(x):
    """(N, H, W) phase-1 probabilities -> (N, 2, H, W) probabilities of phases 0 and 1."""
    return np.stack([1.0 - x, x], axis=1)


def counts(height, width, periodic):
    """Number of pixel pairs n(r) at each offset of microlatent's map."""
    if periodic:
        return np.full((height, width), float(height * width))
    ry, rx = offsets((height, width), periodic=False)
    return ((height - np.abs(ry))[:, None] * (width - np.abs(rx))[None, :]).astype(float)


def scipy_raw_sum(a, b, periodic):
    """S(r) = sum_x a(x) b(x + r) over valid x (wrapping when periodic), by direct summation, laid out
    as microlatent lays out its maps."""
    height, width = a.shape
    if not periodic:
        return scipy.signal.correlate(b, a, mode="full", method="direct")
    wrapped = np.pad(b, ((height // 2, height - 1 - height // 2), (width // 2, width - 1 - width // 2)), mode="wrap")
    return scipy.signal.correlate(wrapped, a, mode="valid", method="direct")


def scipy_two_point(phases, periodic, pairs):
    """(N, C, H, W) phase probabilities -> (N, K, H', W') statistics, by scipy direct correlation."""
    _, _, height, width = phases.shape
    n = counts(height, width, periodic)
    return np.stack([np.stack([scipy_raw_sum(image[h], image[k], periodic) / n for h, k in pairs]) for image in phases])


# ---------------------------------------------------------------------------------------------------
# scipy.signal.correlate (always runs)
# ---------------------------------------------------------------------------------------------------


def test_scipy_mapping_on_two_pixels():
    """The mapping itself, on a hand-checkable case: pixels (1, 2) and (2, 4) of a 4 x 6 image set give
    raw sums 2 at offset (0, 0), 1 at (1, 2) and (-1, -2), and 0 everywhere else, periodic or not."""
    a = np.zeros((4, 6))
    a[1, 2] = a[2, 4] = 1.0
    for periodic in (True, False):
        raw = scipy_raw_sum(a, a, periodic)
        ry, rx = (list(axis) for axis in offsets(a.shape, periodic))
        expected = np.zeros_like(raw)
        expected[ry.index(0), rx.index(0)] = 2  # each pixel with itself
        expected[ry.index(1), rx.index(2)] = 1  # x = (1, 2), x + r = (2, 4)
        expected[ry.index(-1), rx.index(-2)] = 1  # x = (2, 4), x + r = (1, 2)
        np.testing.assert_array_equal(raw, expected)
        # and microlatent puts the same sums in the same places
        np.testing.assert_allclose(
            two_point(a, periodic=periodic, pairs=[(1, 1)])[0, 0] * counts(4, 6, periodic), expected, atol=1e-12
        )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("periodic", [True, False])
def test_two_phase_matches_scipy_correlate(shape, periodic):
    rng = np.random.default_rng(10)
    x = rng.random((3, *shape))
    got = two_point(x, periodic=periodic, pairs="all")
    expected = scipy_two_point(phases_of(x), periodic, ALL_PAIRS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # "auto" is the (0,0) and (1,1) maps of "all"
    np.testing.assert_array_equal(two_point(x, periodic=periodic, pairs="auto"), got[:, [0, 3]])


@pytest.mark.parametrize("periodic", [True, False])
def test_binary_images_match_scipy_correlate(periodic):
    """Binary images, cross pairs in both orders (f01(r) = f10(-r), which is not f10(r) in general)."""
    rng = np.random.default_rng(11)
    x = (rng.random((4, 13, 10)) < 0.4).astype(np.float64)
    got = two_point(x, periodic=periodic, pairs=[(0, 1), (1, 0)])
    expected = scipy_two_point(phases_of(x), periodic, [(0, 1), (1, 0)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    if not periodic:  # non-periodic windows differ, so the test can tell the two orders apart
        assert not np.allclose(got[:, 0], got[:, 1])
    # (periodic 2-phase cross maps are equal: f01(r) = vf - S(r)/HW = f10(r) as S(r) = S(-r); the
    # 3-phase tests below tell the orders apart there)


@pytest.mark.parametrize("periodic", [True, False])
def test_three_phase_matches_scipy_correlate(periodic):
    rng = np.random.default_rng(12)
    phases = rng.dirichlet([1, 1, 1], size=(2, 11, 14)).transpose(0, 3, 1, 2)  # (N, 3, H, W)
    pairs = [(0, 2), (2, 0), (1, 1), (2, 1)]
    got = two_point(phases, periodic=periodic, pairs=pairs)
    np.testing.assert_allclose(got, scipy_two_point(phases, periodic, pairs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_float32_matches_scipy_correlate(periodic, as_tensor):
    """float32 input (ndarray or tensor) against float64 direct sums. FFT roundoff is a fixed absolute
    error in the raw sums, so it is compared per pixel of the image: |diff| * n(r) / (H W)."""
    rng = np.random.default_rng(13)
    x = (rng.random((3, 24, 31)) < 0.4).astype(np.float32)
    arg = torch.from_numpy(x) if as_tensor else x
    got = two_point(arg, periodic=periodic, pairs="all")
    got = got.numpy() if as_tensor else got
    assert got.dtype == np.float32
    expected = scipy_two_point(phases_of(x.astype(np.float64)), periodic, ALL_PAIRS)
    n = counts(24, 31, periodic)
    assert np.max(np.abs(got - expected) * n / (24 * 31)) < 1e-6


@pytest.mark.parametrize("periodic", [True, False])
def test_crop_matches_scipy_correlate(periodic):
    rng = np.random.default_rng(14)
    x = rng.random((2, 10, 13))
    full = scipy_two_point(phases_of(x), periodic, ALL_PAIRS)
    for crop in (1, 5, (4, 7)):
        kh, kw = (crop, crop) if np.isscalar(crop) else crop
        got = two_point(x, periodic=periodic, pairs="all", crop=crop)
        top, left = full.shape[-2] // 2 - kh // 2, full.shape[-1] // 2 - kw // 2
        np.testing.assert_allclose(got, full[..., top : top + kh, left : left + kw], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# PyMKS (optional)
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pymks():
    module, note = import_pymks()
    if module is None:
        pytest.skip(note)
    return module


def pymks_maps(pymks, phases, periodic, pairs, cutoff=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.stack(
            [
                np.asarray(pymks.two_point_stats(phases[:, h], phases[:, k], periodic_boundary=periodic, cutoff=cutoff))
                for h, k in pairs
            ],
            axis=1,
        )


def pymks_crop(shape, cutoff=None):
    largest = int((min(shape) - 1) / 2)
    return 2 * (largest if cutoff is None else min(cutoff, largest)) + 1


@pytest.mark.parametrize("shape", [(12, 17), (9, 8), (16, 16), (15, 11)])
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("pairs", ["auto", "all"])
def test_two_phase_matches_pymks(pymks, shape, periodic, pairs):
    rng = np.random.default_rng(20)
    x = rng.random((3, *shape))
    pair_list = ALL_PAIRS if pairs == "all" else [(0, 0), (1, 1)]
    expected = pymks_maps(pymks, phases_of(x), periodic, pair_list)
    got = two_point(x, periodic=periodic, pairs=pairs, crop=pymks_crop(shape))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
def test_binary_cross_matches_pymks_with_cutoff(pymks, periodic):
    rng = np.random.default_rng(21)
    x = (rng.random((4, 20, 25)) < 0.4).astype(np.float64)
    pairs = [(0, 1), (1, 0)]
    for cutoff in (0, 3, 9):
        expected = pymks_maps(pymks, phases_of(x), periodic, pairs, cutoff=cutoff)
        got = two_point(x, periodic=periodic, pairs=pairs, crop=pymks_crop(x.shape[1:], cutoff))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("periodic", [True, False])
def test_three_phase_matches_pymks(pymks, periodic):
    rng = np.random.default_rng(22)
    phases = rng.dirichlet([1, 2, 3], size=(2, 14, 11)).transpose(0, 3, 1, 2)
    pairs = [(0, 0), (1, 2), (2, 1), (2, 2)]
    expected = pymks_maps(pymks, phases, periodic, pairs)
    got = two_point(phases, periodic=periodic, pairs=pairs, crop=pymks_crop((14, 11)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_float32_224_matches_pymks(pymks):
    """The benchmark's case at full size, float32 in: per-pixel error (|diff| * n(r) / HW) stays at
    float32 roundoff over the offsets PyMKS keeps, periodic and not."""
    rng = np.random.default_rng(23)
    x = (rng.random((2, 224, 224)) < 0.4).astype(np.float32)
    keep = pymks_crop((224, 224))
    for periodic in (True, False):
        expected = pymks_maps(pymks, phases_of(x.astype(np.float64)), periodic, ALL_PAIRS)
        got = two_point(x, periodic=periodic, pairs="all", crop=keep)
        n = counts(224, 224, periodic)
        top = n.shape[0] // 2 - keep // 2
        n = n[top : top + keep, top : top + keep]
        assert np.max(np.abs(got - expected) * n / 224**2) < 1e-6
