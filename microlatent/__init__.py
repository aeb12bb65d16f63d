"""microlatent: small, reversible latent representations of microstructures.

Subpackages, by concern:
    stats           2-point spatial statistics (NumPy and differentiable PyTorch)
    data            dataset generators, MICRO2D-layout HDF5 storage, PyTorch datasets
    models          the VAEs of the papers (TAESD-style, ResNet, TextureVAE) and VGG-19
    losses          image, statistics-space (MSESS, CESS), clamp, KL and style losses
    training        configs, the training loop, checkpoints and resume
    evaluation      running trained models; metrics and figures
    reconstruction  microstructures from 2-point statistics alone
    properties      periodic FE homogenization (elastic, thermal)
    cli             the ``microlatent`` command line
"""

from microlatent.errors import MicrolatentError

__version__ = "0.1.0"
__all__ = ["MicrolatentError", "__version__"]
