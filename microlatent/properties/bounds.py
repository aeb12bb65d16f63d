"""Rigorous bounds on effective properties of two-phase composites (2D), for checks and plots.

All functions take ``fraction`` = volume fraction of phase 1 (the mean of a 0/1 image), a float or an
array (N,), and the phase constants as in :mod:`microlatent.properties.homogenize`.

- Voigt / Reuss (any microstructure): ``C* <= <C>`` and ``S* <= <S>`` in the positive-semidefinite
  order (equivalently ``<S>^-1 <= C* <= <C>``); for conduction ``<1/k>^-1 <= K* <= <k>``.
- Hashin-Shtrikman in 2D (statistically isotropic microstructures), with the 2D (area) bulk modulus
  ``kappa`` and shear modulus ``mu`` of each phase (``D = [[kappa + mu, kappa - mu, 0],
  [kappa - mu, kappa + mu, 0], [0, 0, mu]]``)::

      kappa_HS = <1 / (kappa + mu_ref)>^-1 - mu_ref,        mu_ref = mu_max (upper) / mu_min (lower)
      mu_HS    = <1 / (mu + zeta_ref)>^-1 - zeta_ref,      zeta = kappa mu / (kappa + 2 mu)
                                                           with (kappa, mu)_max (upper) / _min (lower)
      k_HS     = <1 / (k + k_ref)>^-1 - k_ref,              k_ref = k_max (upper) / k_min (lower)

  (Hashin 1965; Torquato, *Random Heterogeneous Materials*, 2002, ch. 21; the same expressions give
  the Walpole bounds when the phases are not well ordered.)
"""

from __future__ import annotations

import numpy as np

from microlatent.errors import InputError
from microlatent.properties.homogenize import (
    DEFAULT_E,
    DEFAULT_K,
    DEFAULT_NU,
    check_conductivities,
    check_elastic_phases,
    elasticity_matrix,
    two_phases,
)


def _fractions(fraction) -> np.ndarray:
    f = np.asarray(fraction, dtype=np.float64)
    if not np.isfinite(f).all() or (f < 0).any() or (f > 1).any():
        raise InputError("fraction must be in [0, 1]")
    return f


def _average(f, v0, v1):
    f = f[..., None, None] if np.ndim(v0) == 2 else f
    return (1.0 - f) * v0 + f * v1


def voigt_reuss_elastic(fraction, E=DEFAULT_E, nu=DEFAULT_NU, plane: str = "stress") -> dict:
    """Voigt ``<C>`` and Reuss ``<S>^-1`` stiffness bounds, (..., 3, 3) for ``fraction`` (...).

    Returns ``{"voigt": <C>, "reuss": <S>^-1}``: ``reuss <= C* <= voigt`` (PSD order), any geometry.
    """
    E, nu = (two_phases(v, name) for v, name in zip(check_elastic_phases(E, nu, plane), ("E", "nu")))
    f = _fractions(fraction)
    d0, d1 = (elasticity_matrix(E[p], nu[p], plane) for p in (0, 1))
    voigt = _average(f, d0, d1)
    reuss = np.linalg.inv(_average(f, np.linalg.inv(d0), np.linalg.inv(d1)))
    return {"voigt": voigt, "reuss": reuss}


def bulk_shear(E: float, nu: float, plane: str = "stress") -> tuple[float, float]:
    """2D bulk and shear moduli ``(kappa, mu)`` of an isotropic phase (plane stress or strain)."""
    d = elasticity_matrix(E, nu, plane)
    return 0.5 * (d[0, 0] + d[0, 1]), d[2, 2]


def isotropic_moduli(C) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic part ``(kappa, mu)`` of 2D stiffness ``C`` (..., 3, 3) (Voigt, engineering shear).

    Orthogonal projection on isotropic tensors: ``kappa = (C11 + C22 + 2 C12) / 4`` (hydrostatic),
    ``mu = [(C11 + C22 - 2 C12) / 4 + C33] / 2`` (mean of the two deviatoric responses). For an
    isotropic C these are exact.
    """
    C = np.asarray(C, dtype=np.float64)
    kappa = (C[..., 0, 0] + C[..., 1, 1] + 2 * C[..., 0, 1]) / 4
    mu = ((C[..., 0, 0] + C[..., 1, 1] - 2 * C[..., 0, 1]) / 4 + C[..., 2, 2]) / 2
    return kappa, mu


def _hs(f, values, refs):
    v0, v1 = values
    return 1.0 / ((1.0 - f) / (v0 + refs) + f / (v1 + refs)) - refs


def hashin_shtrikman_elastic(fraction, E=DEFAULT_E, nu=DEFAULT_NU, plane: str = "stress") -> dict:
    """2D Hashin-Shtrikman bounds on the bulk and shear moduli of an isotropic two-phase composite.

    Returns ``{"bulk": (lower, upper), "shear": (lower, upper)}`` (arrays shaped like ``fraction``),
    to compare with :func:`isotropic_moduli` of the effective stiffness.
    """
    E, nu = (two_phases(v, name) for v, name in zip(check_elastic_phases(E, nu, plane), ("E", "nu")))
    f = _fractions(fraction)
    (k0, m0), (k1, m1) = (bulk_shear(E[p], nu[p], plane) for p in (0, 1))

    def zeta(k, m):
        return k * m / (k + 2 * m)

    bulk = (_hs(f, (k0, k1), min(m0, m1)), _hs(f, (k0, k1), max(m0, m1)))
    shear = (_hs(f, (m0, m1), zeta(min(k0, k1), min(m0, m1))), _hs(f, (m0, m1), zeta(max(k0, k1), max(m0, m1))))
    return {"bulk": bulk, "shear": shear}


def voigt_reuss_thermal(fraction, k=DEFAULT_K) -> tuple[np.ndarray, np.ndarray]:
    """Wiener bounds ``(<1/k>^-1, <k>)`` on every eigenvalue of the effective conductivity."""
    k = two_phases(check_conductivities(k), "k")
    f = _fractions(fraction)
    return 1.0 / ((1.0 - f) / k[0] + f / k[1]), (1.0 - f) * k[0] + f * k[1]


def hashin_shtrikman_thermal(fraction, k=DEFAULT_K) -> tuple[np.ndarray, np.ndarray]:
    """2D Hashin-Shtrikman bounds ``(lower, upper)`` on the conductivity of an isotropic composite."""
    k = two_phases(check_conductivities(k), "k")
    f = _fractions(fraction)
    return _hs(f, k, min(k)), _hs(f, k, max(k))
