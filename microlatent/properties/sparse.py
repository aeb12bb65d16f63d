"""An independent reference: the same periodic pixel-FEM problem assembled as a global sparse
matrix and solved directly (scipy.sparse + SuperLU). Slow (seconds per 256 x 256 image) but shares no
code with :mod:`microlatent.properties.fem`: its own shape functions (counter-clockwise node order,
3 x 3 Gauss quadrature), explicit periodic DOF numbering, one node fixed to remove the rigid
translation, and the effective tensor from the volume-averaged stress (flux) instead of the energy.
Used by the tests and ``benchmarks/homogenize.py``.

Axis 0 of an image is x, axis 1 is y; pixel ``a[i, j]`` is ``[i, i + 1] x [j, j + 1]``; node
``(i, j)`` (periodic) has global number ``i * Ny + j``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from microlatent.properties.homogenize import (
    DEFAULT_E,
    DEFAULT_K,
    DEFAULT_NU,
    as_phase_images,
    check_conductivities,
    check_elastic_phases,
    elasticity_matrix,
    engineering_constants,
)

_CORNERS = ((0, 0), (1, 0), (1, 1), (0, 1))  # counter-clockwise from the lower-left corner
_G3 = np.polynomial.legendre.leggauss(3)


def _quadrature():
    pts, wts = _G3
    pts, wts = 0.5 * (pts + 1.0), 0.5 * wts  # on [0, 1]
    for a, wa in zip(pts, wts):
        for b, wb in zip(pts, wts):
            yield a, b, wa * wb


def _grad(x, y):
    """(2, 4) gradients of the bilinear shape functions N_k = (1 - |x - xk|)(1 - |y - yk|)."""
    out = np.empty((2, 4))
    for k, (xk, yk) in enumerate(_CORNERS):
        sx = 2 * xk - 1  # +1 for xk = 1, -1 for xk = 0
        sy = 2 * yk - 1
        nx = xk * x + (1 - xk) * (1 - x)
        ny = yk * y + (1 - yk) * (1 - y)
        out[0, k] = sx * ny
        out[1, k] = nx * sy
    return out


def _bmat(x, y, nd):
    g = _grad(x, y)
    if nd == 1:
        return g
    b = np.zeros((3, 8))
    for k in range(4):
        b[0, 2 * k] = g[0, k]
        b[1, 2 * k + 1] = g[1, k]
        b[2, 2 * k] = g[1, k]
        b[2, 2 * k + 1] = g[0, k]
    return b


def _element(material, nd):
    ke = 0.0
    fe = 0.0
    bbar = 0.0
    for x, y, w in _quadrature():
        b = _bmat(x, y, nd)
        ke = ke + w * b.T @ material @ b
        fe = fe + w * b.T @ material
        bbar = bbar + w * b
    return ke, fe, bbar


def sparse_homogenize(image, materials) -> np.ndarray:
    """Effective tensor of one periodic 0/1 image by a direct sparse solve.

    Parameters
    ----------
    image : (Nx, Ny) phase indices 0 .. K - 1
    materials : K (3, 3) elasticity matrices (Voigt, engineering shear) of phases 0, 1, ..., or K
        (2, 2) conductivities.

    Returns
    -------
    (3, 3) effective stiffness or (2, 2) effective conductivity, float64.
    """
    arr, _ = as_phase_images(image, len(materials))
    arr = arr[0]
    nx, ny = arr.shape
    mats = [np.asarray(m, dtype=np.float64) for m in materials]
    ncomp = mats[0].shape[0]
    nd = 2 if ncomp == 3 else 1
    elements = [_element(m, nd) for m in mats]
    ndof = nd * nx * ny

    grid_i, grid_j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    i, j = grid_i.ravel(), grid_j.ravel()
    phase = arr.ravel()
    # Global DOFs of each element, in the element's local order (corner k, component c).
    dofs = np.empty((nx * ny, 4 * nd), dtype=np.int64)
    for k, (dx, dy) in enumerate(_CORNERS):
        node = ((i + dx) % nx) * ny + (j + dy) % ny
        for c in range(nd):
            dofs[:, k * nd + c] = nd * node + c
    ke_all = np.stack([element[0] for element in elements])[phase]  # (n_el, 4nd, 4nd)
    fe_all = np.stack([element[1] for element in elements])[phase]  # (n_el, 4nd, ncomp)
    rows = np.repeat(dofs, 4 * nd, axis=1).ravel()
    cols = np.tile(dofs, (1, 4 * nd)).ravel()
    K = scipy.sparse.coo_matrix((ke_all.ravel(), (rows, cols)), shape=(ndof, ndof)).tocsc()
    F = np.zeros((ndof, ncomp))
    np.add.at(F, dofs.ravel(), fe_all.reshape(-1, ncomp))
    B = -F  # right-hand sides for unit macroscopic strains (gradients), one column each

    free = np.arange(nd, ndof)  # node 0 fixed: removes the rigid translation (constant field)
    w = np.zeros((ndof, ncomp))
    if len(free):
        lu = scipy.sparse.linalg.splu(K[free][:, free].tocsc())
        w[free] = lu.solve(B[free])

    # Volume-averaged stress (flux) for each load case: sum_e integral D_e (E + B w_e) / area.
    bbar = np.stack([element[2] for element in elements])[phase]  # (n_el, ncomp, 4nd)
    we = w[dofs]  # (n_el, 4nd, L)
    strain = np.eye(ncomp)[None] + np.einsum("eca,eal->ecl", bbar, we)  # integral of strain
    dmat = np.stack(mats)[phase]
    stress = np.einsum("ecd,edl->cl", dmat, strain) / (nx * ny)
    return stress


def sparse_elastic(image, E=DEFAULT_E, nu=DEFAULT_NU, plane: str = "stress") -> dict:
    """Reference elastic homogenization of one (H, W) image: ``{"C", "S", "Ex", ...}`` (floats)."""
    E, nu = check_elastic_phases(E, nu, plane)
    C = sparse_homogenize(image, [elasticity_matrix(e, v, plane) for e, v in zip(E, nu)])
    out = {"C": C}
    out.update({key: (float(v) if np.ndim(v) == 0 else v) for key, v in engineering_constants(C).items()})
    return out


def sparse_thermal(image, k=DEFAULT_K) -> dict:
    """Reference thermal homogenization of one (H, W) image: ``{"K", "kx", "ky"}``."""
    k = check_conductivities(k)
    K = sparse_homogenize(image, [np.eye(2) * value for value in k])
    return {"K": K, "kx": float(K[0, 0]), "ky": float(K[1, 1])}
