"""Pixel finite elements on a periodic grid: element matrices, the matrix-free operator and a
conjugate-gradient solver preconditioned by the FFT of a homogeneous reference medium.

Geometry and conventions
------------------------
An image ``a`` of shape ``(Nx, Ny)`` is a periodic unit cell of ``Nx x Ny`` unit squares: **array
axis 0 is x, axis 1 is y** (MICRO2D's convention); pixel ``a[i, j]`` occupies
``[i, i + 1] x [j, j + 1]``. Each pixel is one bilinear 4-node quadrilateral (Q4; Abaqus CPS4 /
CPE4 / DC2D4, full 2 x 2 Gauss integration). Nodes sit at the integer points ``(i, j)`` with
``i mod Nx, j mod Ny`` (periodicity), so there are ``Nx * Ny`` nodes, each with ``nd`` unknowns
(``nd = 2`` displacement components for elasticity, ``nd = 1`` temperature for conduction).

Local element node ``k = 2 * p + q`` is the corner ``(i + p, j + q)``, ``p, q in {0, 1}``; element
vectors are ordered ``[node 0 components, node 1 components, ...]``, i.e. index ``k * nd + c``.

Periodic homogenisation: the field is ``u(x) = E x + w(x)`` with a macroscopic gradient ``E`` (strain
in Voigt notation ``[exx, eyy, gxy]`` with engineering shear, or a temperature gradient
``[dT/dx, dT/dy]``) and a periodic fluctuation ``w`` on the nodes. ``w`` solves ``K w = b`` with
``b = -assemble(Fe E)``; ``K`` is singular only for the constant (rigid-translation) mode, which the
preconditioner removes at frequency 0, so every iterate has zero mean. The effective tensor is
evaluated from the energy (variational, so its error is quadratic in the solver's error)::

    C_ij = <D>_ij + (w_i . (K w_j) - w_i . b_j - w_j . b_i) / (Nx Ny).

Storage layout (chosen so that every operation is a contiguous elementwise pass or an FFT over the
last two axes): fields are ``(nd, L, B, Nx, Ny)``; ``L`` load cases, ``B`` images.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

# 2 x 2 Gauss-Legendre points on [0, 1] and their weight (1/4 each on the unit square).
_GAUSS_1D = (0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0))
_NODES = ((0, 0), (0, 1), (1, 0), (1, 1))  # local node k = 2 p + q -> offset (p, q) in (x, y)
_BLOCK = 2**16  # element vectors (rows x Ny x systems) per block of the operator: cache-sized


# --------------------------------------------------------------------------------------------
# Element matrices (float64).
# --------------------------------------------------------------------------------------------


def shape_gradients(xi: float, eta: float) -> np.ndarray:
    """Gradients of the 4 bilinear shape functions of a unit pixel at local point ``(xi, eta)``.

    Returns ``(2, 4)``: row 0 d/dx, row 1 d/dy; column ``k = 2 p + q`` is the node at ``(p, q)``.
    """
    grad = np.empty((2, 4))
    for k, (p, q) in enumerate(_NODES):
        nx = xi if p else 1.0 - xi
        ny = eta if q else 1.0 - eta
        dnx = 1.0 if p else -1.0
        dny = 1.0 if q else -1.0
        grad[0, k] = dnx * ny
        grad[1, k] = nx * dny
    return grad


def _gauss_points():
    for xi in _GAUSS_1D:
        for eta in _GAUSS_1D:
            yield xi, eta, 0.25


def strain_matrix(xi: float, eta: float) -> np.ndarray:
    """Strain-displacement matrix ``(3, 8)`` at ``(xi, eta)``: rows ``[exx, eyy, gxy]``."""
    grad = shape_gradients(xi, eta)
    b = np.zeros((3, 8))
    b[0, 0::2] = grad[0]
    b[1, 1::2] = grad[1]
    b[2, 0::2] = grad[1]
    b[2, 1::2] = grad[0]
    return b


def element_matrices(material: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element stiffness and macroscopic load matrix of one unit pixel with a constant material.

    Parameters
    ----------
    material : (3, 3) elasticity matrix D (Voigt, engineering shear) or (2, 2) conductivity.

    Returns
    -------
    Ke : (8, 8) or (4, 4)
        ``integral B^T D B`` over the pixel (2 x 2 Gauss, exact for the bilinear element).
    Fe : (8, 3) or (4, 2)
        ``integral B^T D``: nodal forces (fluxes) per unit macroscopic strain (gradient).
    """
    material = np.asarray(material, dtype=np.float64)
    ncomp = material.shape[0]
    nd = 2 if ncomp == 3 else 1
    ke = np.zeros((4 * nd, 4 * nd))
    fe = np.zeros((4 * nd, ncomp))
    for xi, eta, w in _gauss_points():
        b = strain_matrix(xi, eta) if nd == 2 else shape_gradients(xi, eta)
        ke += w * b.T @ material @ b
        fe += w * b.T @ material
    return ke, fe


# --------------------------------------------------------------------------------------------
# The operator.
# --------------------------------------------------------------------------------------------


class PeriodicPixelOperator:
    """Matrix-free stiffness (conductance) operator of a batch of periodic pixel meshes.

    The element matrix of pixel ``x`` of image ``n`` is ``sum_t coeff[n, t, x] * basis[t]``
    (``T = 1`` when the phases' matrices are proportional, else ``T = 2`` with
    ``coeff = (1 - a, a)``). Likewise for ``Fe`` and the material matrix ``D``.

    Parameters
    ----------
    coeff : (B, T, Nx, Ny) array
        Per-pixel coefficients of the element-matrix basis (already in the working dtype).
    ke : (T, 4 nd, 4 nd) float64
    fe : (T, 4 nd, ncomp) float64
    material : (T, ncomp, ncomp) float64
    ke_ref : (4 nd, 4 nd) float64
        Element matrix of the homogeneous reference medium of the preconditioner.
    dtype : numpy float dtype
    mean_coeff : (B, T) float64, optional
        Exact pixel averages of ``coeff`` (for ``<D>``; default: averaged from the working-dtype
        ``coeff``, which rounds e.g. 0.1 in float32).
    """

    def __init__(self, coeff, ke, fe, material, ke_ref, dtype=np.float32, mean_coeff=None):
        self.dtype = np.dtype(dtype)
        self.coeff = np.ascontiguousarray(coeff, dtype=self.dtype)
        self.mean_coeff = None if mean_coeff is None else np.asarray(mean_coeff, dtype=np.float64)
        self.batch, self.nterms, self.nx, self.ny = self.coeff.shape
        self.ke = np.asarray(ke, dtype=np.float64)
        self.fe = np.asarray(fe, dtype=np.float64)
        self.material = np.asarray(material, dtype=np.float64)
        self.nd = self.ke.shape[1] // 4
        self.ncomp = self.material.shape[1]
        # (T, 4 nd, 4 nd) in the working dtype for the einsum.
        self._ke = self.ke.astype(self.dtype)
        ke_ref = np.ascontiguousarray(ke_ref, dtype=np.float64)
        self._kinv = _cached_inverse(ke_ref.tobytes(), self.nd, self.nx, self.ny, self.dtype.str)
        self._buffers = {}

    # ---- helpers -------------------------------------------------------------------------

    def _buffer(self, name, shape):
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, dtype=self.dtype)
            self._buffers[name] = buf
        return buf

    def _scatter(self, fe_nodes, out):
        """(4 nd, L, B, Nx, Ny) element vectors -> assembled nodal field ``out`` (nd, L, B, Nx, Ny)."""
        nd = self.nd
        _, nl, nb, nx, ny = fe_nodes.shape
        fe_nodes = fe_nodes.reshape(4, nd, nl, nb, nx, ny)
        acc = np.zeros((nd, nl, nb, nx + 1, ny + 1), dtype=fe_nodes.dtype)
        for k, (p, q) in enumerate(_NODES):
            acc[..., p : p + nx, q : q + ny] += fe_nodes[k]
        return self._fold(acc, out)

    def _element_forces(self, ue, x0, out):
        """``out = sum_t coeff_t[rows] * (Ke_t @ ue)`` for a block of element rows starting at x0."""
        rows = ue.shape[-2]
        coeff = self.coeff[:, :, x0 : x0 + rows]  # (B, T, R, Ny)
        np.einsum("ab,b...->a...", self._ke[0], ue, out=out)
        out *= coeff[:, 0]
        if self.nterms > 1:
            tmp = self._buffer("fe_t", out.shape)
            for t in range(1, self.nterms):
                np.einsum("ab,b...->a...", self._ke[t], ue, out=tmp)
                tmp *= coeff[:, t]
                out += tmp
        return out

    # ---- public --------------------------------------------------------------------------

    def apply(self, u, out=None):
        """``K u`` for ``u`` of shape (nd, L, B, Nx, Ny) (working dtype).

        Element rows are processed in blocks (~2^16 element-vectors each) so that the gathered
        element vectors stay in cache: gather the 4 corner values of each element from a copy of
        ``u`` padded by one periodic row and column, multiply by the element matrices with einsum,
        add the element forces into a padded accumulator, then fold its last row and column back.
        """
        nd, nl, nb, nx, ny = u.shape
        if out is None:
            out = np.empty_like(u)
        pad = self._buffer("pad", (nd, nl, nb, nx + 1, ny + 1))
        pad[..., :nx, :ny] = u
        pad[..., nx, :ny] = u[..., 0, :]
        pad[..., :, ny] = pad[..., :, 0]
        acc = self._buffer("acc", (nd, nl, nb, nx + 1, ny + 1))
        acc[...] = 0.0
        rows = max(1, min(nx, _BLOCK // (nl * nb * ny)))
        for x0 in range(0, nx, rows):
            r = min(rows, nx - x0)
            ue = self._buffer(f"ue{r}", (4, nd, nl, nb, r, ny))
            for k, (p, q) in enumerate(_NODES):
                ue[k] = pad[..., x0 + p : x0 + p + r, q : q + ny]
            fe = self._buffer(f"fe{r}", (4 * nd, nl, nb, r, ny))
            self._element_forces(ue.reshape(4 * nd, nl, nb, r, ny), x0, fe)
            fe = fe.reshape(4, nd, nl, nb, r, ny)
            for k, (p, q) in enumerate(_NODES):
                acc[..., x0 + p : x0 + p + r, q : q + ny] += fe[k]
        return self._fold(acc, out)

    @staticmethod
    def _fold(acc, out):
        nx, ny = acc.shape[-2] - 1, acc.shape[-1] - 1
        out[...] = acc[..., :nx, :ny]
        out[..., 0, :] += acc[..., nx, :ny]
        out[..., :, 0] += acc[..., :nx, ny]
        out[..., 0, 0] += acc[..., nx, ny]
        return out

    def rhs(self, macro):
        """Right-hand sides ``b = -assemble(Fe E)`` for the macroscopic gradients ``macro`` (ncomp, L).

        Returns (nd, L, B, Nx, Ny) in the working dtype.
        """
        macro = np.asarray(macro, dtype=np.float64)
        nl = macro.shape[1]
        # Per basis term t: element load vectors (4 nd, L) = Fe_t @ E.
        loads = np.einsum("tac,cl->tal", self.fe, macro).astype(self.dtype)
        fe = np.zeros((4 * self.nd, nl, self.batch, self.nx, self.ny), dtype=self.dtype)
        for t in range(self.nterms):
            fe -= loads[t][:, :, None, None, None] * self.coeff[None, None, :, t]
        # Size of the element loads before assembly: where they cancel (a homogeneous image) the
        # assembled b is rounding noise, and CG must treat it as 0.
        self.load_scale = np.sqrt(np.einsum("albxy,albxy->lb", fe, fe, dtype=np.float64))
        out = np.empty((self.nd, nl, self.batch, self.nx, self.ny), dtype=self.dtype)
        return self._scatter(fe, out)

    def mean_material(self):
        """Volume average ``<D>`` per image: (B, ncomp, ncomp) float64."""
        mean_coeff = self.mean_coeff
        if mean_coeff is None:
            mean_coeff = self.coeff.astype(np.float64).mean(axis=(2, 3))  # (B, T)
        return np.einsum("bt,tij->bij", mean_coeff, self.material)

    def precondition(self, r, out=None):
        """Apply the inverse of the homogeneous reference stiffness by FFT (mean mode set to 0)."""
        nx, ny = self.nx, self.ny
        rh = scipy.fft.rfft2(r, axes=(-2, -1))
        kinv = self._kinv  # (nd, nd, Nx, Ny//2 + 1), real
        if self.nd == 1:
            zh = rh
            zh *= kinv[0, 0]
        else:
            zh = np.empty_like(rh)
            tmp = np.empty_like(rh[0])
            np.multiply(rh[0], kinv[0, 0], out=zh[0])
            np.multiply(rh[1], kinv[0, 1], out=tmp)
            zh[0] += tmp
            np.multiply(rh[1], kinv[1, 1], out=zh[1])
            np.multiply(rh[0], kinv[1, 0], out=tmp)
            zh[1] += tmp
        z = scipy.fft.irfft2(zh, s=(nx, ny), axes=(-2, -1))
        if out is None:
            return z.astype(self.dtype, copy=False)
        out[...] = z
        return out

    def effective(self, w, b, kw):
        """Effective tensors (B, ncomp, ncomp) float64 from the solutions ``w`` of the ``L = ncomp``
        unit load cases, their right-hand sides ``b`` and ``kw = K w`` (energy form, symmetric)."""
        p = np.einsum("cibxy,cjbxy->bij", w, b, dtype=np.float64)
        q = np.einsum("cibxy,cjbxy->bij", w, kw, dtype=np.float64)
        eff = self.mean_material() + (q - p - np.swapaxes(p, 1, 2)) / (self.nx * self.ny)
        return 0.5 * (eff + np.swapaxes(eff, 1, 2))


@functools.lru_cache(maxsize=8)
def _cached_inverse(ke_bytes, nd, nx, ny, dtype):
    """:func:`_reference_inverse` in ``dtype``, cached (a batch loop reuses it for every batch)."""
    ke_ref = np.frombuffer(ke_bytes, dtype=np.float64).reshape(4 * nd, 4 * nd)
    inv = _reference_inverse(ke_ref, nd, nx, ny).astype(dtype)
    inv.setflags(write=False)
    return inv


def _reference_inverse(ke_ref, nd, nx, ny):
    """Inverse of the Fourier symbol of the homogeneous operator with element matrix ``ke_ref``.

    The homogeneous stiffness is block-circulant: ``(K u)(n) = sum_m G(n - m) u(m)`` with a 3 x 3
    node stencil of ``nd x nd`` blocks. Its symbol ``K^(k)`` is Hermitian; for this symmetric
    stencil it is real. Returns (nd, nd, Nx, Ny // 2 + 1) float64 with the k = 0 block set to 0
    (the constant mode, the kernel of K, is projected out).
    """
    ke_ref = np.asarray(ke_ref, dtype=np.float64)
    kernel = np.zeros((nd, nd, nx, ny))  # kernel[a, c] = response component a to a unit u_c at node 0
    for k, (p, q) in enumerate(_NODES):
        for m, (r, s) in enumerate(_NODES):
            # Element with its node k at the origin... force at node m = ke[m, k] u_k; the element's
            # origin corner is at -(p, q), so node m lies at (r - p, s - q).
            block = ke_ref[m * nd : (m + 1) * nd, k * nd : (k + 1) * nd]
            kernel[:, :, (r - p) % nx, (s - q) % ny] += block
    symbol = np.fft.rfft2(kernel, axes=(-2, -1))
    scale = np.abs(symbol).max()
    if np.abs(symbol.imag).max() > 1e-10 * scale:
        raise AssertionError("reference stencil symbol is not real")  # cannot happen for Q4
    symbol = symbol.real
    inv = np.zeros_like(symbol)
    if nd == 1:
        mask = np.abs(symbol[0, 0]) > 1e-12 * scale
        inv[0, 0][mask] = 1.0 / symbol[0, 0][mask]
    else:
        det = symbol[0, 0] * symbol[1, 1] - symbol[0, 1] * symbol[1, 0]
        mask = np.abs(det) > 1e-12 * scale**2
        inv[0, 0][mask] = symbol[1, 1][mask] / det[mask]
        inv[1, 1][mask] = symbol[0, 0][mask] / det[mask]
        inv[0, 1][mask] = -symbol[0, 1][mask] / det[mask]
        inv[1, 0][mask] = -symbol[1, 0][mask] / det[mask]
    inv[..., 0, 0] = 0.0  # rigid translation / constant temperature
    return inv


# --------------------------------------------------------------------------------------------
# Preconditioned conjugate gradients, one independent system per (load case, image).
# --------------------------------------------------------------------------------------------


def _dot(a, b):
    """Per-system inner products of (nd, L, B, Nx, Ny) fields -> (L, B) float64.

    Accumulated in the working dtype (einsum's SIMD partial sums: ~1e-6 relative in float32, ample
    for CG's step lengths and stopping test, and 4x faster than casting); the effective tensor itself
    is accumulated in float64 (:meth:`PeriodicPixelOperator.effective`).
    """
    return np.einsum("clbxy,clbxy->lb", a, b).astype(np.float64)


def pcg(op: PeriodicPixelOperator, b, tol=1e-6, max_iter=200, load_scale=None):
    """Solve ``K w = b`` for every system (load case, image) by FFT-preconditioned CG.

    Parameters
    ----------
    op : PeriodicPixelOperator
    b : (nd, L, B, Nx, Ny) right-hand sides (zero mean).
    tol : float
        Stop a system when ``||b - K w||_2 <= tol * ||b||_2`` (recursive residual).
    max_iter : int
    load_scale : (L, B) float, optional
        A system whose ``||b||`` is below 100 eps of this is zero (w = 0). Default: the operator's
        element-load scale; a correction solve (iterative refinement) passes ``||b||`` itself.

    Returns
    -------
    w : (nd, L, B, Nx, Ny) solutions (zero mean).
    iterations : (L, B) int
    residual : (L, B) float, final relative residual (true residual, recomputed; 0 for systems
        whose right-hand side is zero up to rounding, e.g. a homogeneous image).
    kw : (nd, L, B, Nx, Ny), ``K w`` (recomputed; used for the energy).
    converged : (L, B) bool, the CG residual reached ``tol`` within ``max_iter``. (In float32 the
        recomputed true residual can stay above a tight ``tol``, ~1e-5, from rounding alone.)
    """
    dtype = op.dtype
    w = np.zeros_like(b)
    r = b.copy()
    bnorm = np.sqrt(_dot(b, b))
    scale = getattr(op, "load_scale", None) if load_scale is None else np.asarray(load_scale)
    if scale is None or scale.shape != bnorm.shape:
        scale = bnorm
    # A right-hand side at rounding level of the element loads is zero (homogeneous image): w = 0.
    active = bnorm > 100 * np.finfo(dtype).eps * scale
    trivial = ~active
    iterations = np.zeros(bnorm.shape, dtype=np.int64)
    safe_bnorm = np.where(active, bnorm, 1.0)
    z = op.precondition(r)
    p = z.copy()
    rz = _dot(r, z)
    q = np.empty_like(b)
    tmp = np.empty_like(b)
    for _ in range(max_iter):
        if not active.any():
            break
        op.apply(p, out=q)
        pq = _dot(p, q)
        alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=active & (pq > 0))
        a = alpha.astype(dtype)[None, :, :, None, None]
        np.multiply(p, a, out=tmp)
        w += tmp
        np.multiply(q, a, out=tmp)
        r -= tmp
        iterations += active
        res = np.sqrt(_dot(r, r)) / safe_bnorm
        active &= res > tol
        if not active.any():
            break
        op.precondition(r, out=z)
        rz_new = _dot(r, z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=active & (rz > 0))
        rz = rz_new
        p *= beta.astype(dtype)[None, :, :, None, None]
        p += z
    kw = op.apply(w)
    diff = b - kw
    true_res = np.where(trivial, 0.0, np.sqrt(_dot(diff, diff)) / safe_bnorm)
    return w, iterations, true_res, kw, ~active
