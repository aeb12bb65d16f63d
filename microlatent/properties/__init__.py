"""Effective properties of 2-phase microstructure images.

Public API (scikit-learn / PyMKS-like functions on (N, H, W) or (H, W) 0/1 arrays; axis 0 = x)::

    homogenize_elastic(images, E=(10, 1), nu=(0.3, 0.3), plane="stress", dtype=np.float32, ...)
        -> {"C", "S", "Ex", "Ey", "Gxy", "nu_xy", "nu_yx", "iterations", "residual", "converged"}
    homogenize_thermal(images, k=(10, 1), ...) -> {"K", "kx", "ky", ...}
    laminate_elastic / laminate_thermal      exact layered-composite formulas (references)
    voigt_reuss_elastic / hashin_shtrikman_elastic / ..._thermal   bounds

Modules: ``fem`` (pixel Q4 elements, matrix-free operator, FFT-preconditioned CG), ``homogenize``
(public functions), ``bounds`` (Voigt/Reuss, 2D Hashin-Shtrikman), ``sparse`` (an independent
scipy.sparse direct solver, for checks and benchmarks), ``storage`` (filling MICRO2D-layout HDF5
files in resumable chunks).
"""

from microlatent.properties.bounds import (
    hashin_shtrikman_elastic,
    hashin_shtrikman_thermal,
    isotropic_moduli,
    voigt_reuss_elastic,
    voigt_reuss_thermal,
)
from microlatent.properties.homogenize import (
    DEFAULT_E,
    DEFAULT_K,
    DEFAULT_NU,
    elasticity_matrix,
    engineering_constants,
    homogenize_elastic,
    homogenize_thermal,
    laminate_elastic,
    laminate_thermal,
)

__all__ = [
    "DEFAULT_E",
    "DEFAULT_K",
    "DEFAULT_NU",
    "elasticity_matrix",
    "engineering_constants",
    "hashin_shtrikman_elastic",
    "hashin_shtrikman_thermal",
    "homogenize_elastic",
    "homogenize_thermal",
    "isotropic_moduli",
    "laminate_elastic",
    "laminate_thermal",
    "voigt_reuss_elastic",
    "voigt_reuss_thermal",
]
