"""Tests of microlatent.properties against answers known independently of the solver:
exact laminate formulas, homogeneous images, Voigt/Reuss and Hashin-Shtrikman bounds, symmetry,
and an independently assembled scipy.sparse direct solve (own element matrices, 3x3 quadrature,
explicit periodic DOF numbering, one node fixed, stress averaging)."""

from __future__ import annotations

import json
import zlib

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from microlatent.errors import DataError, InputError
from microlatent.properties import (
    elasticity_matrix,
    fem,
    hashin_shtrikman_elastic,
    hashin_shtrikman_thermal,
    homogenize_elastic,
    homogenize_thermal,
    isotropic_moduli,
    laminate_elastic,
    laminate_thermal,
    voigt_reuss_elastic,
    voigt_reuss_thermal,
)
from microlatent.properties.sparse import sparse_elastic, sparse_thermal

F64 = dict(dtype=np.float64, tol=1e-10)
KEYS = ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")
CASES = [  # (E, nu, plane)
    ((10.0, 1.0), (0.3, 0.3), "stress"),
    ((10.0, 1.0), (0.3, 0.3), "strain"),
    ((3.0, 50.0), (0.2, 0.45), "stress"),
    ((3.0, 50.0), (0.2, 0.45), "strain"),
]


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def random_layers(n_layers, other, rng, stacking):
    """A laminate image: a random 0/1 sequence of unit layers, repeated ``other`` times."""
    seq = (rng.random(n_layers) < 0.5).astype(np.uint8)
    seq[0], seq[-1] = 0, 1  # both phases present
    image = np.tile(seq, (other, 1))  # (other, n_layers): depends on axis 1 = y
    return image if stacking == "y" else image.T


def random_discs(n, radius, count, rng):
    x, y = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
    image = np.zeros((n, n), np.uint8)
    for cx, cy in rng.random((count, 2)) * n:
        dx = (x - cx + n / 2) % n - n / 2
        dy = (y - cy + n / 2) % n - n / 2
        image[dx * dx + dy * dy < radius * radius] = 1
    return image


# --------------------------------------------------------------------------------------------
# The laminate formulas themselves (independent of the FE code).
# --------------------------------------------------------------------------------------------


def test_laminate_formula_matches_reference_numbers():
    # REFERENCES.md: f = 0.5, E = 10 / 1, nu = 0.3, plane stress, layers stacked along y.
    lam = laminate_elastic(0.5)
    assert lam["Ex"] == pytest.approx(5.5, rel=1e-12)
    assert lam["nu_xy"] == pytest.approx(0.3, rel=1e-12)
    assert lam["Ey"] == pytest.approx(1.93475, abs=5e-6)
    assert lam["Gxy"] == pytest.approx(0.69930, abs=5e-6)
    assert lam["nu_yx"] == pytest.approx(0.10553, abs=5e-6)


@pytest.mark.parametrize("f", [0.0, 0.1, 0.37, 0.5, 0.9, 1.0])
def test_laminate_general_formula_equals_closed_form(f):
    E, nu = (10.0, 1.0), 0.3
    mean_e = (1 - f) * E[0] + f * E[1]
    mean_inv_e = (1 - f) / E[0] + f / E[1]
    ey = 1 / ((1 - nu**2) * mean_inv_e + nu**2 / mean_e)
    g = [e / (2 * (1 + nu)) for e in E]
    gxy = 1 / ((1 - f) / g[0] + f / g[1])
    y = laminate_elastic(f, E, (nu, nu), stacking="y")
    x = laminate_elastic(f, E, (nu, nu), stacking="x")
    assert (y["Ex"], y["Ey"], y["Gxy"], y["nu_xy"], y["nu_yx"]) == pytest.approx(
        (mean_e, ey, gxy, nu, nu * ey / mean_e), rel=1e-13
    )
    assert (x["Ey"], x["Ex"], x["Gxy"], x["nu_yx"], x["nu_xy"]) == pytest.approx(
        (mean_e, ey, gxy, nu, nu * ey / mean_e), rel=1e-13
    )
    t = laminate_thermal(f, (10.0, 1.0), "y")
    assert (t["kx"], t["ky"]) == pytest.approx(((1 - f) * 10 + f, 1 / ((1 - f) / 10 + f)), rel=1e-14)


# --------------------------------------------------------------------------------------------
# FE solver vs exact answers.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("E,nu,plane", CASES)
@pytest.mark.parametrize("stacking", ["y", "x"])
def test_laminates_exact(E, nu, plane, stacking):
    rng = np.random.default_rng(zlib.crc32(repr((stacking, plane, nu)).encode()))  # deterministic
    images = [random_layers(n, other, rng, stacking) for n, other in ((12, 10), (7, 5), (2, 9))]
    for image in images:
        f = image.mean()
        got = homogenize_elastic(image, E=E, nu=nu, plane=plane, **F64)
        ref = laminate_elastic(f, E, nu, stacking=stacking, plane=plane)
        assert rel(got["C"], ref["C"]) < 1e-10
        for key in KEYS:
            assert got[key] == pytest.approx(ref[key], rel=1e-10, abs=1e-12), key


@pytest.mark.parametrize("stacking", ["y", "x"])
def test_laminates_exact_thermal(stacking):
    rng = np.random.default_rng(3)
    k = (10.0, 1.0)
    for n, other in ((12, 10), (5, 3)):
        image = random_layers(n, other, rng, stacking)
        got = homogenize_thermal(image, k=k, **F64)
        ref = laminate_thermal(image.mean(), k, stacking)
        assert rel(got["K"], ref["K"]) < 1e-10


def test_axis_convention_axis0_is_x():
    image = np.zeros((16, 16), np.uint8)
    image[:, 8:] = 1  # a[i, j] depends on j (axis 1 = y): layers stacked along y
    got = homogenize_elastic(image, **F64)
    assert got["Ex"] == pytest.approx(5.5, rel=1e-12)  # <E> along the layers, x = axis 0
    assert got["Ey"] == pytest.approx(1.934746284, rel=1e-9)
    assert homogenize_thermal(image, **F64)["kx"] == pytest.approx(5.5, rel=1e-12)


@pytest.mark.parametrize("E,nu,plane", CASES)
def test_homogeneous_images_return_phase_constants(E, nu, plane):
    images = np.stack([np.zeros((9, 7), np.uint8), np.ones((9, 7), np.uint8)])
    for dtype in (np.float64, np.float32):
        got = homogenize_elastic(images, E=E, nu=nu, plane=plane, dtype=dtype)
        for p in (0, 1):
            D = elasticity_matrix(E[p], nu[p], plane)
            assert rel(got["C"][p], D) < (1e-14 if dtype == np.float64 else 1e-6)
            assert got["Gxy"][p] == pytest.approx(E[p] / (2 * (1 + nu[p])), rel=1e-6)
            assert got["nu_xy"][p] == pytest.approx(nu[p] if plane == "stress" else nu[p] / (1 - nu[p]), rel=1e-6)
        assert (got["iterations"] == 0).all() and got["converged"].all()
    therm = homogenize_thermal(images, k=(4.0, 0.5), dtype=np.float64)
    assert therm["K"][0] == pytest.approx(4.0 * np.eye(2), rel=1e-14)
    assert therm["K"][1] == pytest.approx(0.5 * np.eye(2), rel=1e-14)


def test_voigt_reuss_bounds_and_spd_random_images():
    rng = np.random.default_rng(0)
    images = np.stack([(rng.random((24, 20)) < p).astype(np.uint8) for p in (0.1, 0.3, 0.5, 0.7, 0.9)])
    f = images.mean(axis=(1, 2))
    for E, nu, plane in CASES:
        got = homogenize_elastic(images, E=E, nu=nu, plane=plane, dtype=np.float64)
        bounds = voigt_reuss_elastic(f, E, nu, plane)
        C, S = got["C"], got["S"]
        assert np.abs(C - np.swapaxes(C, 1, 2)).max() < 1e-12 * np.abs(C).max()
        assert (np.linalg.eigvalsh(C) > 0).all()
        scale = np.abs(C).max()
        assert (np.linalg.eigvalsh(bounds["voigt"] - C) > -1e-10 * scale).all()  # C* <= <C>
        mean_s = np.linalg.inv(bounds["reuss"])  # <S>
        assert (np.linalg.eigvalsh(mean_s - S) > -1e-10 * np.abs(S).max()).all()  # S* <= <S>
    therm = homogenize_thermal(images, dtype=np.float64)
    lo, hi = voigt_reuss_thermal(f)
    eig = np.linalg.eigvalsh(therm["K"])
    assert (eig >= lo[:, None] - 1e-10).all() and (eig <= hi[:, None] + 1e-10).all()


def test_hashin_shtrikman_bounds_isotropic_images():
    rng = np.random.default_rng(1)
    images = np.stack(
        [random_discs(64, 5, c, rng) for c in (10, 25)]
        + [1 - random_discs(64, 5, c, rng) for c in (25, 40)]
        + [(rng.random((64, 64)) < 0.5).astype(np.uint8)]
    )
    f = images.mean(axis=(1, 2))
    for plane in ("stress", "strain"):
        got = homogenize_elastic(images, plane=plane, dtype=np.float64)
        kappa, mu = isotropic_moduli(got["C"])
        hs = hashin_shtrikman_elastic(f, plane=plane)
        assert (hs["bulk"][0] <= kappa).all() and (kappa <= hs["bulk"][1]).all()
        assert (hs["shear"][0] <= mu).all() and (mu <= hs["shear"][1]).all()
    therm = homogenize_thermal(images, dtype=np.float64)
    lo, hi = hashin_shtrikman_thermal(f)
    k_iso = np.trace(therm["K"], axis1=1, axis2=2) / 2
    assert (lo <= k_iso).all() and (k_iso <= hi).all()


def test_bounds_ordering():
    f = np.linspace(0, 1, 11)
    hs = hashin_shtrikman_elastic(f)
    vr = voigt_reuss_elastic(f)
    kv, mv = isotropic_moduli(vr["voigt"])
    kr, mr = isotropic_moduli(vr["reuss"])
    assert (hs["bulk"][0] <= hs["bulk"][1] + 1e-12).all() and (hs["bulk"][1] <= kv + 1e-12).all()
    assert (hs["shear"][0] <= hs["shear"][1] + 1e-12).all() and (hs["shear"][0] >= mr - 1e-12).all()
    assert hs["bulk"][0][[0, -1]] == pytest.approx(hs["bulk"][1][[0, -1]])  # pure phases: equal


# --------------------------------------------------------------------------------------------
# Against the independent sparse direct solve.
# --------------------------------------------------------------------------------------------


def test_sparse_reference_is_exact_on_a_laminate():
    image = random_layers(8, 6, np.random.default_rng(5), "y")
    ref = laminate_elastic(image.mean())
    assert rel(sparse_elastic(image)["C"], ref["C"]) < 1e-12


@pytest.mark.parametrize("shape", [(8, 8), (12, 10), (5, 7)])
@pytest.mark.parametrize("E,nu,plane", CASES)
def test_matches_sparse_direct_solve(shape, E, nu, plane):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    image = (rng.random(shape) < 0.45).astype(np.uint8)
    got = homogenize_elastic(image, E=E, nu=nu, plane=plane, **F64)
    ref = sparse_elastic(image, E=E, nu=nu, plane=plane)
    assert rel(got["C"], ref["C"]) < 1e-10
    for key in KEYS:
        assert got[key] == pytest.approx(ref[key], rel=1e-10)


def test_matches_sparse_direct_solve_64x64_default_tolerance():
    # At the default tol = 1e-6 the energy form makes the error ~tol^2.
    image = random_discs(64, 6, 18, np.random.default_rng(4))
    got = homogenize_elastic(image, dtype=np.float64)
    ref = sparse_elastic(image)
    assert rel(got["C"], ref["C"]) < 1e-10
    assert homogenize_thermal(image, dtype=np.float64)["K"] == pytest.approx(sparse_thermal(image)["K"], rel=1e-10)


@pytest.mark.parametrize("shape", [(8, 8), (12, 10)])
def test_thermal_matches_sparse_direct_solve(shape):
    rng = np.random.default_rng(7)
    image = (rng.random(shape) < 0.5).astype(np.uint8)
    got = homogenize_thermal(image, k=(10.0, 1.0), **F64)
    ref = sparse_thermal(image, k=(10.0, 1.0))
    assert rel(got["K"], ref["K"]) < 1e-10


def test_float32_close_to_float64_and_iterations():
    rng = np.random.default_rng(11)
    images = np.stack([(rng.random((64, 64)) < 0.5).astype(np.uint8), random_discs(64, 6, 20, rng)])
    lo = homogenize_elastic(images)  # float32 default
    hi = homogenize_elastic(images, dtype=np.float64)
    # ~20 CG iterations at contrast 10, plus ~12 of the float32 correction solve (iterative refinement)
    assert lo["converged"].all() and (lo["iterations"] <= 40).all()
    assert (lo["residual"] <= 1e-6).all()  # the true (float64) residual, not float32 CG's own estimate
    for key in KEYS:
        assert lo[key] == pytest.approx(hi[key], rel=1e-5)
    tlo, thi = homogenize_thermal(images), homogenize_thermal(images, dtype=np.float64)
    assert tlo["K"] == pytest.approx(thi["K"], rel=1e-5)


# --------------------------------------------------------------------------------------------
# Symmetries, batching, API.
# --------------------------------------------------------------------------------------------


def test_transpose_swaps_axes_and_a_stack_equals_its_images():
    rng = np.random.default_rng(2)
    images = (rng.random((4, 12, 10)) < 0.4).astype(np.uint8)
    batch = homogenize_elastic(images, **F64)
    small = {"C": np.stack([homogenize_elastic(image, **F64)["C"] for image in images])}
    single = homogenize_elastic(images[2], **F64)
    transposed = homogenize_elastic(np.swapaxes(images, 1, 2), **F64)
    assert batch["C"] == pytest.approx(small["C"], rel=1e-12)
    assert single["Ex"] == pytest.approx(batch["Ex"][2], rel=1e-12)
    assert isinstance(single["Ex"], float) and single["C"].shape == (3, 3)
    assert transposed["Ex"] == pytest.approx(batch["Ey"], rel=1e-10)
    assert transposed["nu_xy"] == pytest.approx(batch["nu_yx"], rel=1e-10)
    assert transposed["Gxy"] == pytest.approx(batch["Gxy"], rel=1e-10)
    # Periodic shift does not change anything.
    shifted = homogenize_elastic(np.roll(images, (3, 5), axis=(1, 2)), **F64)
    assert shifted["C"] == pytest.approx(batch["C"], rel=1e-10)
    # bool / float input.
    assert homogenize_thermal(images.astype(bool), **F64)["K"] == pytest.approx(
        homogenize_thermal(images.astype(np.float32), **F64)["K"], rel=1e-12
    )


def test_reference_preconditioner_inverts_homogeneous_operator():
    ke, fe = fem.element_matrices(elasticity_matrix(1.0, 0.3))
    coeff = np.ones((1, 1, 6, 5))
    op = fem.PeriodicPixelOperator(coeff, ke[None], fe[None], elasticity_matrix(1.0, 0.3)[None], ke, dtype=np.float64)
    u = np.random.default_rng(0).standard_normal((2, 1, 1, 6, 5))
    u -= u.mean(axis=(-2, -1), keepdims=True)
    assert op.precondition(op.apply(u)) == pytest.approx(u, abs=1e-12)


def test_bad_input():
    good = np.zeros((8, 8))
    with pytest.raises(InputError, match="binary"):
        homogenize_elastic(np.full((8, 8), 0.5))
    with pytest.raises(InputError, match="shape"):
        homogenize_elastic(np.zeros((2, 2, 8, 8)))
    with pytest.raises(InputError, match="Young"):
        homogenize_elastic(good, E=(10.0, 0.0))
    with pytest.raises(InputError, match="Poisson"):
        homogenize_elastic(good, nu=(0.3, 0.5), plane="strain")
    with pytest.raises(InputError, match="plane"):
        homogenize_elastic(good, plane="3d")
    with pytest.raises(InputError, match="one number per phase"):
        homogenize_elastic(good, E=10.0)
    with pytest.raises(InputError, match="same number of phases"):
        homogenize_elastic(good, E=(10.0, 1.0, 5.0))
    with pytest.raises(InputError, match="phase indices 0..2"):  # a label 3 with three materials
        homogenize_elastic(np.full((8, 8), 3), E=(10.0, 1.0, 5.0), nu=(0.3, 0.3, 0.2))
    with pytest.raises(InputError, match="one volume fraction per phase"):
        laminate_elastic(0.5, E=(10.0, 1.0, 5.0), nu=(0.3, 0.3, 0.2))
    with pytest.raises(InputError, match="conductivities"):
        homogenize_thermal(good, k=(1.0, -1.0))
    with pytest.raises(InputError, match="dtype"):
        homogenize_thermal(good, dtype=np.int32)
    with pytest.raises(InputError, match="fraction"):
        laminate_elastic(1.5)
    with pytest.raises(InputError, match="stacking"):
        laminate_thermal(0.5, stacking="z")
    assert homogenize_elastic(np.zeros((0, 8, 8)))["C"].shape == (0, 3, 3)


def test_non_convergence_warns_and_stores_nan_not_a_number():
    image = (np.random.default_rng(0).random((16, 16)) < 0.5).astype(np.uint8)
    for dtype in (np.float64, np.float32):  # float32 is retried in float64 first, which fails too
        with pytest.warns(RuntimeWarning, match="did not converge"):
            got = homogenize_elastic(image, max_iter=2, dtype=dtype)
        assert not got["converged"] and got["residual"] > 1e-6
        assert np.isnan(got["C"]).all() and np.isnan(got["Ex"]) and np.isnan(got["Gxy"])


@pytest.mark.parametrize("rows", [16, 27, 64, 100])
def test_256_px_laminates_in_the_default_float32_match_the_exact_formulas(rows):
    """The case that wrote Ex = -8310: float32 CG diverged on 256 px laminates. Images that do not
    converge in float32 are solved again in float64; every value must be the exact laminate's."""
    images = np.zeros((2, 256, 256), dtype=np.uint8)
    images[0, 40 : 40 + rows, :] = 1  # layers across axis 0 ...
    images[1] = images[0].T  # ... and the same laminate transposed
    got = homogenize_elastic(images)  # default dtype (float32), E = (10, 1)
    assert got["converged"].all()
    fraction = rows / 256
    for i, stacking in enumerate(("x", "y")):
        exact = laminate_elastic(fraction, stacking=stacking)
        for key in ("Ex", "Ey", "Gxy"):
            assert got[key][i] == pytest.approx(exact[key], rel=1e-6), (stacking, key)


@pytest.mark.parametrize("E", [(1.0, 1e6), (1e6, 1.0)], ids=["stiff-layers", "soft-layers"])
def test_256_px_laminates_at_contrast_1e6_in_the_default_float32_match_the_exact_formulas(E):
    images = np.zeros((2, 256, 256), dtype=np.uint8)
    images[0, 40:104, :] = 1
    images[1] = images[0].T
    got = homogenize_elastic(images, E=E)
    k = homogenize_thermal(images, k=E)
    assert got["converged"].all() and k["converged"].all()
    for i, stacking in enumerate(("x", "y")):
        exact = laminate_elastic(64 / 256, E, stacking=stacking)
        for key in ("Ex", "Ey", "Gxy", "nu_xy"):
            assert got[key][i] == pytest.approx(exact[key], rel=1e-6), (stacking, key)
        exact_k = laminate_thermal(64 / 256, E, stacking=stacking)
        assert (k["kx"][i], k["ky"][i]) == pytest.approx((exact_k["kx"], exact_k["ky"]), rel=1e-6)


def test_solver_settings_are_checked():
    image = np.zeros((8, 8))
    for tol in (10, 0.01, 0, -1, float("nan")):
        with pytest.raises(InputError, match=r"tol must be a number in \(0, 0.001\]"):
            homogenize_elastic(image, tol=tol)
    for max_iter in (0, -3, 2.5):
        with pytest.raises(InputError, match="max_iter must be a positive integer"):
            homogenize_thermal(image, max_iter=max_iter)


# --------------------------------------------------------------------------------------------
# HDF5 filling (resumable) and the command line.
# --------------------------------------------------------------------------------------------


@pytest.fixture
def h5file(tmp_path):
    from microlatent.data.store import write_class

    rng = np.random.default_rng(0)
    path = tmp_path / "set.h5"
    write_class(path, "A", (rng.random((7, 16, 16)) < 0.4).astype(np.uint8), [str(i) for i in range(7)])
    write_class(path, "B", (rng.random((3, 12, 10)) < 0.6).astype(np.uint8), ["b"] * 3)
    return path


def test_homogenize_file_layout_and_values(h5file):
    from microlatent.data.store import property_instructions, read_images, read_property
    from microlatent.properties.storage import homogenize_file

    summary = homogenize_file(h5file, chunk=3, dtype=np.float64)
    assert summary == {"A": {"rows": 7, "computed": 7, "skipped": 0}, "B": {"rows": 3, "computed": 3, "skipped": 0}}
    mech = read_property(h5file, "A", "homogenized_mechanical")
    therm = read_property(h5file, "A", "homogenized_thermal")
    assert mech.shape == (7, 6, 5) and therm.shape == (7, 6, 2)
    assert np.isfinite(mech[:, 0]).all() and np.isnan(mech[:, 1:]).all() and np.isnan(therm[:, 1:]).all()
    ref = homogenize_elastic(read_images(h5file, "A"), dtype=np.float64)
    assert mech[:, 0] == pytest.approx(np.stack([ref[k] for k in ("Ex", "nu_xy", "Ey", "nu_yx", "Gxy")], -1), rel=1e-12)
    text = property_instructions(h5file, "A", "homogenized_mechanical")
    assert "[Ex, nu_xy, Ey, nu_yx, Gxy]" in text and "E = 10, nu = 0.3" in text and "axis 0" in text
    assert "kx = K11" in property_instructions(h5file, "B", "homogenized_thermal")
    # A second run has nothing to do.
    assert homogenize_file(h5file, dtype=np.float64)["A"]["computed"] == 0


def test_homogenize_file_resumes_after_interruption(h5file, monkeypatch):
    from microlatent.data.store import read_property
    from microlatent.properties import storage

    calls = {"n": 0}
    real = storage.homogenize_thermal

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "homogenize_thermal", flaky)
    with pytest.raises(KeyboardInterrupt):
        storage.homogenize_file(h5file, classes=["A"], chunk=3, dtype=np.float64)
    partial = read_property(h5file, "A", "homogenized_thermal")
    assert np.isfinite(partial[:3, 0]).all() and np.isnan(partial[3:, 0]).all()  # chunk 1 kept
    mech_partial = read_property(h5file, "A", "homogenized_mechanical")
    assert np.isfinite(mech_partial[:3, 0]).all()
    monkeypatch.setattr(storage, "homogenize_thermal", real)
    seen = []
    real_elastic = storage.homogenize_elastic
    monkeypatch.setattr(
        storage, "homogenize_elastic", lambda images, **kw: seen.append(len(images)) or real_elastic(images, **kw)
    )
    summary = storage.homogenize_file(h5file, classes=["A"], chunk=3, dtype=np.float64)
    assert summary["A"]["computed"] == 4 and sum(seen) == 4  # only the unfinished rows
    full = read_property(h5file, "A", "homogenized_thermal")
    assert full[:3] == pytest.approx(partial[:3], nan_ok=True)
    assert np.isfinite(full[:, 0]).all()


def test_homogenize_file_refuses_foreign_or_changed_datasets(h5file):
    from microlatent.data.store import read_property, write_property
    from microlatent.properties.storage import homogenize_file

    write_property(h5file, "A", "homogenized_mechanical", np.ones((7, 6, 5)), "MICRO2D labels")
    with pytest.raises(DataError, match="--overwrite"):
        homogenize_file(h5file, classes=["A"])
    assert (read_property(h5file, "A", "homogenized_mechanical") == 1).all()  # untouched
    with h5py.File(h5file) as f:
        assert "homogenized_thermal" not in f["A"]  # nothing was started
    homogenize_file(h5file, classes=["A"], overwrite=True, thermal=False)
    with h5py.File(h5file) as f:
        assert json.loads(f["A"]["homogenized_mechanical"].attrs["microlatent_settings"])["E"] == [10.0, 1.0]
    assert homogenize_file(h5file, classes=["A"], thermal=False)["A"]["computed"] == 0  # resumes
    assert homogenize_file(h5file, classes=["A"], thermal=False, overwrite=True)["A"]["computed"] == 7
    with pytest.raises(DataError, match="other settings"):
        homogenize_file(h5file, classes=["A"], E=(10.0, 2.0), thermal=False)
    with pytest.raises(DataError, match="no class"):
        homogenize_file(h5file, classes=["Nope"])


def test_cli_homogenize_and_homogenize_image(h5file, tmp_path):
    from microlatent.cli.properties import homogenize, properties
    from microlatent.data.store import property_instructions

    runner = CliRunner()
    result = runner.invoke(
        homogenize, [str(h5file), "--classes", "B", "--chunk", "2", "--E1", "2", "--plane-strain", "--k1", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "3 images computed" in result.output
    text = property_instructions(h5file, "B", "homogenized_mechanical")
    assert "plane strain" in text and "E = 2, nu = 0.3" in text
    assert "k = 3" in property_instructions(h5file, "B", "homogenized_thermal")

    npy = tmp_path / "one.npy"
    np.save(npy, np.tile(np.array([0, 0, 1, 1], np.float32), (8, 2)))  # (8, 8): layers along y
    result = runner.invoke(properties, ["homogenize-image", str(npy), "--float64"])
    assert result.exit_code == 0, result.output
    assert "5.5" in result.output and "Ex" in result.output

    np.save(npy, np.full((8, 8), 0.5, np.float32))
    result = runner.invoke(properties, ["homogenize-image", str(npy)])
    assert isinstance(result.exception, InputError)


# --------------------------------------------------------------------------------------------
# Three phases.
# --------------------------------------------------------------------------------------------

E3, NU3, K3 = (10.0, 1.0, 4.0), (0.3, 0.25, 0.35), (10.0, 1.0, 3.0)


@pytest.mark.parametrize("stacking", ["x", "y"])
def test_three_phase_laminate_matches_the_exact_formula(stacking):
    """Layers of 3 phases (widths 10, 14, 8 of 32 px) against the closed-form K-phase laminate, in the
    default float32 solve, elastic and thermal, both orientations."""
    profile = np.repeat([0, 1, 2], [10, 14, 8])
    image = np.tile(profile[None, :], (32, 1)) if stacking == "y" else np.tile(profile[:, None], (1, 32))
    fractions = [10 / 32, 14 / 32, 8 / 32]
    got = homogenize_elastic(image, E=E3, nu=NU3)
    want = laminate_elastic(fractions, E=E3, nu=NU3, stacking=stacking)
    np.testing.assert_allclose(got["C"], want["C"], rtol=1e-6, atol=1e-6 * np.abs(want["C"]).max())
    got_k = homogenize_thermal(image, k=K3)
    want_k = laminate_thermal(fractions, k=K3, stacking=stacking)
    assert got_k["kx"] == pytest.approx(want_k["kx"], rel=1e-6) and got_k["ky"] == pytest.approx(want_k["ky"], rel=1e-6)


def test_three_phase_random_image_matches_an_independent_sparse_solve():
    image = np.random.default_rng(5).integers(0, 3, size=(12, 10))
    got = homogenize_elastic(image, E=E3, nu=NU3, dtype=np.float64, tol=1e-10)
    np.testing.assert_allclose(got["C"], sparse_elastic(image, E=E3, nu=NU3)["C"], rtol=1e-8)
    got_k = homogenize_thermal(image, k=K3, dtype=np.float64, tol=1e-10)
    np.testing.assert_allclose(got_k["K"], sparse_thermal(image, k=K3)["K"], rtol=1e-8)
    # a 3-phase image whose third phase is absent gives the 2-phase answer
    binary = (image > 0).astype(np.uint8)
    two = homogenize_elastic(binary, E=E3[:2], nu=NU3[:2], dtype=np.float64, tol=1e-10)["C"]
    three = homogenize_elastic(binary, E=E3, nu=NU3, dtype=np.float64, tol=1e-10)["C"]
    np.testing.assert_allclose(three, two, rtol=1e-10)
