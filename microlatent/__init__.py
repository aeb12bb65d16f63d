"""microlatent: small, reversible latent representations of microstructures.

Subpackages, by concern:
    stats     2-point spatial statistics (NumPy and differentiable PyTorch)
    data      dataset generators, MICRO2D-layout HDF5 storage, PyTorch datasets
    cli       the ``microlatent`` command line
"""

from microlatent.errors import MicrolatentError

__version__ = "0.1.0"
__all__ = ["MicrolatentError", "__version__"]
