"""Effective (homogenized) elastic and thermal properties of periodic 2-phase pixel images.

Conventions (shared by every function here)
-------------------------------------------
- An image ``a`` is an array ``(H, W)`` of 0/1 (phase index per pixel), a periodic unit cell of
  unit-square pixels. **Array axis 0 is x and axis 1 is y** (MICRO2D's convention): ``a[i, j]``
  occupies ``[i, i + 1] x [j, j + 1]``. So ``Ex`` is the modulus along the rows index ``i``; a
  laminate whose layers are stacked along y (``a[i, j]`` depends on ``j`` only, i.e. horizontal
  stripes when the array is printed, interfaces parallel to x) has ``Ex = <E>``.
- Stiffness and compliance in Voigt notation ``[xx, yy, xy]`` with **engineering** shear strain
  ``gxy = 2 exy``: ``sigma = C eps``, ``eps = S sigma``, ``S = C^-1``.
- Engineering constants from the compliance: ``Ex = 1/S11``, ``nu_xy = -S12/S11``,
  ``Ey = 1/S22``, ``nu_yx = -S12/S22``, ``Gxy = 1/S33`` (indices 1-based). In plane strain these
  are the in-plane (2D) constants of the 3 x 3 problem: a homogeneous phase gives
  ``Ex = E / (1 - nu^2)`` and ``nu_xy = nu / (1 - nu)``; in plane stress ``Ex = E``, ``nu_xy = nu``.
- Phase ``p`` has Young's modulus ``E[p]`` and Poisson ratio ``nu[p]`` (isotropic); moduli come out
  in the unit of ``E`` (the default, Cai et al. 2025 / MICRO2D: phase 0 E = 10 GPa, phase 1
  E = 1 GPa, both nu = 0.3, so GPa). Conductivities ``k[p]`` (default 10 and 1, any unit, e.g.
  W/(m K)); the effective conductivity comes out in the same unit.

Discretisation: as MICRO2D's labels (Abaqus CPS4 / DC2D4), one bilinear 4-node element per pixel,
full 2 x 2 integration, periodic boundary conditions, three (two) macroscopic load cases giving the
full effective tensor. Plane stress by default; ``plane="strain"`` for plane strain.
Solver: matrix-free conjugate gradients preconditioned by the FFT of a homogeneous reference medium
(:mod:`microlatent.properties.fem`); ~20 iterations at contrast 10.
"""

from __future__ import annotations

import warnings

import numpy as np

from microlatent.errors import InputError
from microlatent.properties import fem

DEFAULT_E = (10.0, 1.0)
DEFAULT_NU = (0.3, 0.3)
DEFAULT_K = (10.0, 1.0)
_PLANES = ("stress", "strain")
# One image per CG solve: solving 16 64 px images together cost 1.25-1.45x more per image (CPU time,
# float32 and float64, 64 and 128 px) than one at a time, as a batch iterates until its slowest image
# converges; 4 together was no faster than 1. So no batching is offered.


# --------------------------------------------------------------------------------------------
# Materials.
# --------------------------------------------------------------------------------------------


def _check_plane(plane: str) -> str:
    if plane not in _PLANES:
        raise InputError(f"plane must be 'stress' or 'strain', got {plane!r}")
    return plane


def _per_phase(values, name: str) -> tuple[float, ...]:
    """One finite number per phase (at least two), as floats."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be one number per phase (phase 0, phase 1, ...), got {values!r}") from None
    if arr.ndim != 1 or len(arr) < 2:
        raise InputError(f"{name} must be one number per phase (at least two: phase 0, phase 1, ...), got {values!r}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} must be finite, got {tuple(arr.tolist())}")
    return tuple(float(v) for v in arr)


def check_elastic_phases(E, nu, plane: str = "stress") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validate phase elastic constants: one positive modulus and one Poisson ratio per phase (as many
    of each), ratios in (-1, 1) for plane stress or (-1, 0.5) for plane strain (positive-definite
    material). Returns floats."""
    plane = _check_plane(plane)
    E = _per_phase(E, "E")
    nu = _per_phase(nu, "nu")
    if len(E) != len(nu):
        raise InputError(f"E and nu must give the same number of phases, got {len(E)} and {len(nu)}")
    if min(E) <= 0:
        raise InputError(f"Young's moduli must be > 0 (voids are not supported), got E = {E}")
    high = 1.0 if plane == "stress" else 0.5
    for v in nu:
        if not -1.0 < v < high:
            raise InputError(f"Poisson ratio must be in (-1, {high:g}) for plane {plane}, got nu = {nu}")
    return E, nu


def check_conductivities(k) -> tuple[float, ...]:
    """Validate phase conductivities: one positive number per phase."""
    k = _per_phase(k, "k")
    if min(k) <= 0:
        raise InputError(f"conductivities must be > 0, got k = {k}")
    return k


def two_phases(values, name: str):
    """``values`` unchanged if it holds two phases; InputError for a formula that exists only for two."""
    if len(values) != 2:
        raise InputError(f"{name}: this formula is for 2 phases, got {len(values)}")
    return values


def elasticity_matrix(E: float, nu: float, plane: str = "stress") -> np.ndarray:
    """Isotropic 2D elasticity matrix ``D`` (3, 3), Voigt ``[xx, yy, xy]`` with engineering shear.

    Plane stress: ``E / (1 - nu^2) [[1, nu, 0], [nu, 1, 0], [0, 0, (1 - nu) / 2]]``.
    Plane strain: ``E / ((1 + nu)(1 - 2 nu)) [[1 - nu, nu, 0], [nu, 1 - nu, 0], [0, 0, (1 - 2 nu) / 2]]``.
    Units of ``E``.
    """
    plane = _check_plane(plane)
    if plane == "stress":
        f = E / (1.0 - nu * nu)
        return f * np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, 0.5 * (1.0 - nu)]])
    f = E / ((1.0 + nu) * (1.0 - 2.0 * nu))
    return f * np.array([[1.0 - nu, nu, 0.0], [nu, 1.0 - nu, 0.0], [0.0, 0.0, 0.5 - nu]])


def engineering_constants(C) -> dict:
    """Engineering constants from stiffness ``C`` (..., 3, 3) (Voigt, engineering shear).

    Returns ``{"S", "Ex", "Ey", "Gxy", "nu_xy", "nu_yx"}``; ``S = C^-1`` (..., 3, 3), the rest (...).
    ``Ex = 1/S11, nu_xy = -S12/S11, Ey = 1/S22, nu_yx = -S12/S22, Gxy = 1/S33``.
    """
    C = np.asarray(C, dtype=np.float64)
    S = np.linalg.inv(C)
    return {
        "S": S,
        "Ex": 1.0 / S[..., 0, 0],
        "Ey": 1.0 / S[..., 1, 1],
        "Gxy": 1.0 / S[..., 2, 2],
        "nu_xy": -S[..., 0, 1] / S[..., 0, 0],
        "nu_yx": -S[..., 0, 1] / S[..., 1, 1],
    }


# --------------------------------------------------------------------------------------------
# Input checks.
# --------------------------------------------------------------------------------------------


def as_phase_images(images, n_phases: int = 2) -> tuple[np.ndarray, bool]:
    """``images`` (N, H, W) or (H, W) of phase indices 0 .. n_phases - 1 (bool, int or float holding
    whole numbers) -> (uint8 (N, H, W), was_2d)."""
    try:
        arr = np.asarray(images)
    except (TypeError, ValueError) as err:
        raise InputError(f"images must be an array of phase indices, got {type(images).__name__} ({err})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"images must be a numeric array of phase indices, got dtype {arr.dtype}")
    single = arr.ndim == 2
    if arr.ndim not in (2, 3):
        raise InputError(f"images must have shape (N, H, W) or (H, W), got {arr.shape}")
    if single:
        arr = arr[None]
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise InputError(f"images must have at least one pixel per side, got shape {arr.shape[1:]}")
    if arr.dtype != np.bool_ and arr.size:
        bad = (arr != np.round(arr)) | (arr < 0) | (arr > n_phases - 1)
        if bad.any():
            where = tuple(int(v) for v in np.argwhere(bad)[0])
            what = "binary (0/1 phase indices)" if n_phases == 2 else f"phase indices 0..{n_phases - 1}"
            hint = "threshold first" if n_phases == 2 else "give one material per phase"
            raise InputError(
                f"images must be {what}; image {where[0]} has value {arr[where]!r} at ({where[1]}, {where[2]}) ({hint})"
            )
    return arr.astype(np.uint8), single


def as_binary_images(images) -> tuple[np.ndarray, bool]:
    """``images`` (N, H, W) or (H, W) of 0/1 (bool, int or float) -> (uint8 (N, H, W), was_2d)."""
    return as_phase_images(images, 2)


MAX_TOL = 1e-3
REFINEMENTS = 4  # float32 correction solves before an image is solved again in float64
REFINE_TOL = 1e-3  # each correction solve cuts the residual ~1000x


def _check_solver(dtype, tol, max_iter):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise InputError(f"dtype must be float32 or float64, got {dt}")
    # A relative residual above MAX_TOL is not a solution (tol=10 stopped at once and gave Ex 5.05, not 4.49).
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and 0 < tol <= MAX_TOL):
        raise InputError(f"tol must be a number in (0, {MAX_TOL:g}], got {tol!r}")
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise InputError(f"max_iter must be a positive integer, got {max_iter!r}")
    return dt


# --------------------------------------------------------------------------------------------
# Solve.
# --------------------------------------------------------------------------------------------


def _phase_basis(mats):
    """Element-matrix basis for K phase materials: (T, ...) matrices, per-phase coefficients (K, T)
    and a reference material for the preconditioner.

    If every ``D_k = s_k D_0``, a single term with coefficients s_k (one einsum per operator
    application), else one term per phase (coefficients the identity).
    """
    mats = [np.asarray(m, dtype=np.float64) for m in mats]
    d0 = mats[0]
    scales = [float(np.sum(d * d0) / np.sum(d0 * d0)) for d in mats]
    if all(np.allclose(d, s * d0, rtol=1e-13, atol=0.0) for d, s in zip(mats, scales)):
        basis = d0[None]
        coeffs = np.array(scales)[:, None]  # (phase, T)
        ref = d0 * np.sqrt(min(scales) * max(scales))  # for 2 phases: d0 * sqrt(s1)
    else:
        basis = np.stack(mats)
        coeffs = np.eye(len(mats))
        ref = np.mean(mats, axis=0)
    return basis, coeffs, ref


def _solve(images, mats, dtype, tol, max_iter, progress):
    """Homogenize (N, H, W) uint8 images of phase indices for the phase materials ``mats`` ((ncomp, ncomp) each).

    Returns effective tensors (N, ncomp, ncomp), iterations (N,), residual (N,), converged (N,).
    """
    n, nx, ny = images.shape
    basis, coeffs, ref = _phase_basis(mats)
    ke, fe = zip(*(fem.element_matrices(d) for d in basis))
    ke, fe = np.stack(ke), np.stack(fe)
    ke_ref, _ = fem.element_matrices(ref)
    ncomp = basis.shape[1]
    eff = np.empty((n, ncomp, ncomp))
    iterations = np.zeros(n, dtype=np.int64)
    residual = np.zeros(n)
    converged = np.ones(n, dtype=bool)

    def operator(block, dt):
        coeff = np.moveaxis(coeffs.astype(dt)[block], -1, 1)  # (B, T, Nx, Ny)
        flat = block.reshape(len(block), -1)
        fractions = np.stack([(flat == p).mean(axis=1) for p in range(len(coeffs))], axis=1)  # (B, K)
        mean_coeff = fractions @ coeffs  # exact <coeff>
        return fem.PeriodicPixelOperator(coeff, ke, fe, basis, ke_ref, dtype=dt, mean_coeff=mean_coeff)

    def solve(block, dt):
        op = operator(block, dt)
        b = op.rhs(np.eye(ncomp))
        w, its, res, kw, conv = fem.pcg(op, b, tol=tol, max_iter=max_iter)
        if np.dtype(dt) != np.float64:
            # float32 CG's own residual can say "converged" while the true one is 1e-4 (256 px laminate at
            # contrast 1e6: ky 2 % off). Mixed-precision iterative refinement: the residual b - K w in
            # float64, a float32 CG solve for the correction, until the float64 residual meets tol. The
            # energy (K w, w) - 2 (b, w) then also comes from a float64 K w (float32 lost 2e-4 of Gxy).
            op64 = operator(block, np.float64)
            b64 = op64.rhs(np.eye(ncomp))
            bnorm = np.sqrt(fem._dot(b64, b64))
            trivial = bnorm <= 100 * np.finfo(np.float32).eps * op64.load_scale  # as pcg: zero load, w = 0
            w = w.astype(np.float64)
            for _ in range(REFINEMENTS + 1):
                kw = op64.apply(w)
                r = b64 - kw
                res = np.where(trivial, 0.0, np.sqrt(fem._dot(r, r)) / np.where(trivial, 1.0, bnorm))
                conv = res <= tol
                if conv.all():
                    break
                r = r.astype(dt)
                d, more, *_ = fem.pcg(op, r, tol=REFINE_TOL, max_iter=max_iter, load_scale=np.sqrt(fem._dot(r, r)))
                w += d
                its = its + more
            op, b = op64, b64
        return op.effective(w, b, kw), its.max(axis=0), res.max(axis=0), conv.all(axis=0)

    for i in range(n):  # one image per solve (see the note at the top)
        eff[i], iterations[i], residual[i], converged[i] = (v[0] for v in solve(images[i : i + 1], dtype))
        # float32 CG can stall or diverge (seen on 256 px laminates: residual 6e-3 up to 2e6, Ex = -8310
        # written) or refine too slowly; such an image is solved again in float64.
        if not converged[i] and np.dtype(dtype) != np.float64:
            eff[i], iterations[i], residual[i], converged[i] = (v[0] for v in solve(images[i : i + 1], np.float64))
        if progress is not None:
            progress(1)
    eff[~converged] = np.nan  # never a number that did not converge: NaN, with its residual reported
    return eff, iterations, residual, converged


def _finish(out, iterations, residual, converged, tol, single):
    if not converged.all():
        bad = np.flatnonzero(~converged)
        warnings.warn(
            f"{len(bad)} of {len(converged)} images did not converge to tol={tol:g} within max_iter, even in "
            f"float64 (first: image {int(bad[0])}, relative residual {residual[bad[0]]:.2e}); their properties "
            f"are NaN; raise max_iter",
            RuntimeWarning,
            stacklevel=3,
        )
    out.update(iterations=iterations, residual=residual, converged=converged)
    if single:
        out = {key: (value[0] if np.ndim(value) else value) for key, value in out.items()}
        out = {
            key: (value.item() if np.ndim(value) == 0 and isinstance(value, np.generic) else value)
            for key, value in out.items()
        }
    return out


def homogenize_elastic(
    images,
    E=DEFAULT_E,
    nu=DEFAULT_NU,
    plane: str = "stress",
    dtype=np.float32,
    tol: float = 1e-6,
    max_iter: int = 200,
    progress=None,
) -> dict:
    """Effective elastic stiffness of periodic K-phase pixel images (pixel Q4 FEM, periodic BCs).

    Parameters
    ----------
    images : (N, H, W) or (H, W) array of phase indices 0 .. K - 1
        Phase index per pixel (bool, int or float holding whole numbers). Axis 0 = x, axis 1 = y.
    E : K floats, default (10.0, 1.0)
        Young's moduli of phase 0, phase 1, ... (any unit; results in the same unit, GPa here).
    nu : K floats, default (0.3, 0.3)
        Poisson ratios of phase 0, phase 1, ...
    plane : {"stress", "strain"}, default "stress"
        2D idealisation (MICRO2D used plane stress, Abaqus CPS4).
    dtype : np.float32 or np.float64, default np.float32
        Working precision of the solver. float32: CG in float32 with mixed-precision iterative
        refinement (the residual b - K w in float64, float32 corrections until it meets ``tol``) and the
        effective tensor from a float64 K w (256 px laminates, contrast 10 to 1e6, within 1e-6 of the
        exact values); an image that still misses ``tol`` is solved again in float64; one that does
        not converge in float64 either is NaN.
        float64: to ~1e-12 with ``tol=1e-8``. Results are always float64.
    tol : float, default 1e-6
        Relative residual ``||r|| / ||b||`` at which each load case stops. Because the effective
        stiffness is computed from the energy, its error is ~tol^2 (float64).
    max_iter : int, default 200
        CG iteration cap (a RuntimeWarning names images that hit it).
    progress : callable, optional
        Called as ``progress(1)`` after each image (one CG solve per image: batching was slower).

    Returns
    -------
    dict
        ``"C"`` (N, 3, 3) effective stiffness, Voigt ``[xx, yy, xy]``, engineering shear, unit of E;
        ``"S"`` (N, 3, 3) its inverse (compliance);
        ``"Ex", "Ey", "Gxy", "nu_xy", "nu_yx"`` (N,) engineering constants from ``S``;
        ``"iterations"`` (N,) int, CG iterations, refinement included (max over the 3 load cases);
        ``"residual"`` (N,) final true relative residual (recomputed in float64), max over load cases;
        ``"converged"`` (N,) bool, that residual met ``tol`` in every load case.
        For a single (H, W) image the leading N axis is dropped (floats and (3, 3) arrays).

    Raises
    ------
    InputError
        Wrong shape, non-binary image, bad phase properties or solver settings.

    Examples
    --------
    >>> a = np.zeros((16, 16), np.uint8); a[:, 8:] = 1   # layers stacked along y
    >>> round(homogenize_elastic(a, dtype=np.float64)["Ex"], 6)   # = <E>
    5.5
    """
    E, nu = check_elastic_phases(E, nu, plane)
    dt = _check_solver(dtype, tol, max_iter)
    arr, single = as_phase_images(images, len(E))
    mats = [elasticity_matrix(e, v, plane) for e, v in zip(E, nu)]
    C, iterations, residual, converged = _solve(arr, mats, dt, tol, int(max_iter), progress)
    out = {"C": C}
    out.update(
        engineering_constants(C)
        if len(C)
        else {key: np.zeros((0, 3, 3) if key == "S" else (0,)) for key in ("S", "Ex", "Ey", "Gxy", "nu_xy", "nu_yx")}
    )
    return _finish(out, iterations, residual, converged, tol, single)


def homogenize_thermal(
    images, k=DEFAULT_K, dtype=np.float32, tol: float = 1e-6, max_iter: int = 200, progress=None
) -> dict:
    """Effective conductivity of periodic K-phase pixel images (steady heat conduction, pixel Q4).

    Parameters
    ----------
    images : (N, H, W) or (H, W) array of phase indices 0 .. K - 1
        Phase index per pixel. Axis 0 = x, axis 1 = y.
    k : K floats, default (10.0, 1.0)
        Conductivity of phase 0, phase 1, ... (any unit, e.g. W/(m K); results in the same unit).
    dtype, tol, max_iter, progress
        As in :func:`homogenize_elastic` (two load cases: unit gradients along x and y).

    Returns
    -------
    dict
        ``"K"`` (N, 2, 2) effective conductivity tensor (flux = -K grad T, averages);
        ``"kx" = K[:, 0, 0]``, ``"ky" = K[:, 1, 1]`` (N,): the flux per unit applied gradient along
        x (y) under periodic conditions; ``"iterations"``, ``"residual"``, ``"converged"`` (N,).
        For a single (H, W) image the N axis is dropped.
    """
    k = check_conductivities(k)
    dt = _check_solver(dtype, tol, max_iter)
    arr, single = as_phase_images(images, len(k))
    mats = [np.eye(2) * value for value in k]
    K, iterations, residual, converged = _solve(arr, mats, dt, tol, int(max_iter), progress)
    out = {"K": K, "kx": K[:, 0, 0].copy(), "ky": K[:, 1, 1].copy()}
    return _finish(out, iterations, residual, converged, tol, single)


# --------------------------------------------------------------------------------------------
# Exact laminate formulas (independent of the finite elements; used as test references).
# --------------------------------------------------------------------------------------------


def _check_fraction(fraction) -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"fraction must be a number in [0, 1], got {fraction!r}") from None
    if not 0.0 <= f <= 1.0:
        raise InputError(f"fraction must be in [0, 1], got {f}")
    return f


def _phase_fractions(fraction, n_phases: int) -> tuple[float, ...]:
    """Volume fractions of every phase: a number (2 phases: that of phase 1) or one per phase (sum 1)."""
    if np.ndim(fraction) == 0:
        f = _check_fraction(fraction)
        if n_phases != 2:
            raise InputError(f"give one volume fraction per phase ({n_phases} phases), got {fraction!r}")
        return (1.0 - f, f)
    try:
        arr = np.asarray(fraction, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"fractions must be numbers, got {fraction!r}") from None
    if arr.shape != (n_phases,) or (arr < 0).any() or not np.isclose(arr.sum(), 1.0):
        raise InputError(f"fractions must be {n_phases} non-negative numbers summing to 1, got {fraction!r}")
    return tuple(float(v) for v in arr)


def _check_stacking(stacking: str) -> str:
    if stacking not in ("x", "y"):
        raise InputError(f"stacking must be 'x' or 'y', got {stacking!r}")
    return stacking


def laminate_stiffness(fraction: float, materials, stacking: str = "y") -> np.ndarray:
    """Exact effective stiffness (3, 3) of a layered composite of K anisotropic 2D materials.

    Layers are stacked along ``stacking`` (the layer normal). Strain components tangential to the
    layers and stress components on the layer planes are uniform; partial inversion of each layer's
    stiffness and volume averaging give the exact result (no approximation, any thickness).

    Parameters
    ----------
    fraction : float or K floats
        Volume fraction of material 1 (two materials), or of every material (summing to 1).
    materials : K (3, 3) arrays
        Stiffness of materials 0, 1, ... (Voigt, engineering shear).
    stacking : {"y", "x"}
    """
    weights = _phase_fractions(fraction, len(materials))
    stacking = _check_stacking(stacking)
    t, n = ([0], [1, 2]) if stacking == "y" else ([1], [0, 2])

    def avg(fn):
        return sum(w * fn(np.asarray(c, dtype=np.float64)) for w, c in zip(weights, materials) if w > 0)

    def parts(c):
        a = np.linalg.inv(c[np.ix_(n, n)])
        return c[np.ix_(t, t)], c[np.ix_(t, n)], c[np.ix_(n, t)], a

    mean_a = avg(lambda c: parts(c)[3])
    mean_a_cnt = avg(lambda c: parts(c)[3] @ parts(c)[2])
    mean_ctn_a = avg(lambda c: parts(c)[1] @ parts(c)[3])
    mean_schur = avg(lambda c: parts(c)[0] - parts(c)[1] @ parts(c)[3] @ parts(c)[2])
    inv_a = np.linalg.inv(mean_a)
    out = np.zeros((3, 3))
    out[np.ix_(n, n)] = inv_a
    out[np.ix_(n, t)] = inv_a @ mean_a_cnt
    out[np.ix_(t, n)] = mean_ctn_a @ inv_a
    out[np.ix_(t, t)] = mean_schur + mean_ctn_a @ inv_a @ mean_a_cnt
    return out


def laminate_elastic(fraction: float, E=DEFAULT_E, nu=DEFAULT_NU, stacking: str = "y", plane: str = "stress") -> dict:
    """Exact effective elastic constants of a K-phase laminate (layered composite).

    Parameters
    ----------
    fraction : float or K floats
        Volume fraction of phase 1 (= the mean of a 0/1 image), or of every phase (summing to 1).
    E, nu : K floats each
        Young's moduli and Poisson ratios of phases 0, 1, ...
    stacking : {"y", "x"}, default "y"
        Direction along which the layers are stacked (layer normal). "y": interfaces parallel to x,
        an image ``a[i, j]`` depending on ``j`` only (axis 1 = y).
    plane : {"stress", "strain"}

    Returns
    -------
    dict with ``"C", "S"`` (3, 3) and floats ``"Ex", "Ey", "Gxy", "nu_xy", "nu_yx"``.

    For equal Poisson ratios, plane stress, stacking "y": ``Ex = <E>``, ``nu_xy = nu``,
    ``Ey = 1 / [(1 - nu^2) <1/E> + nu^2 / <E>]``, ``nu_yx = nu Ey / <E>``, ``Gxy = <1/G>^-1``.
    """
    E, nu = check_elastic_phases(E, nu, plane)
    mats = [elasticity_matrix(e, v, plane) for e, v in zip(E, nu)]
    C = laminate_stiffness(fraction, mats, stacking)
    out = {"C": C}
    out.update({key: (float(v) if np.ndim(v) == 0 else v) for key, v in engineering_constants(C).items()})
    return out


def laminate_thermal(fraction: float, k=DEFAULT_K, stacking: str = "y") -> dict:
    """Exact effective conductivity of a K-phase laminate: arithmetic mean along the layers,
    harmonic mean across them.

    Returns ``{"K": (2, 2), "kx": float, "ky": float}``; ``fraction`` = volume fraction of phase 1
    (two phases) or of every phase; ``stacking`` = layer normal ("y": ``kx = <k>``, ``ky = <1/k>^-1``).
    """
    stacking = _check_stacking(stacking)
    k = check_conductivities(k)
    weights = _phase_fractions(fraction, len(k))
    arith = sum(w * v for w, v in zip(weights, k))
    harm = 1.0 / sum(w / v for w, v in zip(weights, k))
    kx, ky = (arith, harm) if stacking == "y" else (harm, arith)
    return {"K": np.diag([kx, ky]), "kx": kx, "ky": ky}
