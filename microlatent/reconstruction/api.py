"""``reconstruct``: microstructures whose 2-point statistics match a target, by gradient descent on a
pixel field or by Yeong-Torquato simulated annealing, scored by one error measure."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from microlatent.device import resolve_device
from microlatent.errors import InputError
from microlatent.losses.terms import cess_from_stats, msess_from_stats
from microlatent.reconstruction import gradient as _gradient
from microlatent.reconstruction import lbfgs as _lbfgs
from microlatent.reconstruction.swaps import SwapState, anneal_state, initial_temperature
from microlatent.reconstruction.target import TargetStatistics, as_target

METHODS = ("gradient", "annealing")
LOSSES = ("cess", "msess")
OPTIMIZERS = ("lbfgs", "adam")

# Default work per reconstruction: gradient steps; annealing candidate swaps per pixel, at most
# ANNEALING_MAX (about 2 minutes at 224 x 224 on one CPU core).
GRADIENT_STEPS = 1000
ANNEALING_SWEEPS = 20
ANNEALING_MAX = 200_000
# Greedy polish after gradient descent: candidate swaps per pixel, at most POLISH_MAX (it stops early
# when no swap helps); with a time limit, polishing gets the last POLISH_TIME of it, all of it.
POLISH_SWEEPS = 2
POLISH_MAX = 10_000
POLISH_TIME = 0.15
ANNEALING_OPTIONS = {"t_start": None, "t_factor": 0.1, "t_end_ratio": 1e-4}


@dataclass
class Reconstruction:
    """One reconstruction.

    image : (H, W) uint8 phase labels (2 phases: 0/1, 1 = phase 1).
    error : statistics error of ``image``: MSESS (Cai eq. 7) over every ordered phase pair and every
        offset of the target map, ``statistics_error(target, image)``.
    cess : CESS (eq. 8) of ``image`` against the target, minus the target's entropy (so 0 at a match).
    soft_error : the statistics error of the soft field before it was made binary (gradient), else None.
    volume_fractions : (C,) of ``image``.
    history : [{"step", "seconds", "error"}, ...]: the error of the binary image along the run.
    seconds : wall time of the run that made it (the gradient method makes all samples of a call in
        one batch and reports the batch's time for each).
    """

    image: np.ndarray
    error: float
    cess: float
    soft_error: float | None
    volume_fractions: np.ndarray
    history: list = field(default_factory=list)
    seconds: float = 0.0
    method: str = ""
    loss: str | None = None
    seed: int = 0
    steps: int = 0
    soft: np.ndarray | None = field(default=None, repr=False)
    optimizer: str | None = None
    runs: int = 1

    def __repr__(self):
        return (
            f"Reconstruction(method={self.method!r}, shape={self.image.shape}, error={self.error:.4g}, "
            f"cess={self.cess:.4g}, "
            f"soft_error={self.soft_error if self.soft_error is None else round(self.soft_error, 8)}, "
            f"seconds={self.seconds:.2f})"
        )


def statistics_error(target, images) -> np.ndarray:
    """The statistics error used everywhere: MSESS over all ordered pairs and all offsets of the
    target map (mean over offsets of the sum over pairs of squared differences), one value per image.

    target : a :class:`TargetStatistics` (or anything :func:`as_target` reads); images : (H, W) or
    (N, H, W) phase labels (integers) or 2-phase probabilities, or (N, C, H, W) probabilities.
    """
    target = as_target(target)
    f = _statistics(target, images)
    return np.asarray(msess_from_stats(target.statistics[None], f, reduction="none"), dtype=float)


def cross_entropy_error(target, images) -> np.ndarray:
    """CESS (eq. 8) of images against the target minus the target's entropy (>= 0, 0 at a match)."""
    target = as_target(target)
    f = _statistics(target, images)
    entropy = cess_from_stats(target.statistics, target.statistics)
    return np.asarray(cess_from_stats(target.statistics[None], f, reduction="none"), dtype=float) - float(entropy)


def _statistics(target, images):
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
    if images.ndim == 2:
        images = images[None]
    if images.shape[-2:] != tuple(target.shape):
        raise InputError(f"images of shape {images.shape[-2:]} do not match the target's {tuple(target.shape)}")
    if np.issubdtype(images.dtype, np.integer) or images.dtype == bool:
        images = images.astype(np.int64)
        if images.max() >= target.n_phases or images.min() < 0:
            raise InputError(f"phase labels must lie in 0..{target.n_phases - 1}")
        if target.n_phases == 2:
            images = images.astype(np.float64)
    else:
        images = images.astype(np.float64)
    return target.statistics_of(images)


def reconstruct(
    target,
    method="gradient",
    loss="cess",
    periodic=None,
    n_samples=1,
    steps=None,
    seed=0,
    device="auto",
    volume_fraction=None,
    time_limit=None,
    polish=None,
    size=None,
    threads=None,
    workers=1,
    progress=False,
    **options,
) -> list[Reconstruction]:
    """Microstructures whose 2-point statistics match ``target``.

    Parameters
    ----------
    target : image, statistics, file or :class:`TargetStatistics`
        An image (H, W) of phase-1 probabilities / a binary image, integer phase labels, a batch
        (N, H, W) (the mean of their statistics), (N, C, H, W) phase probabilities; a statistics map
        as a mapping {"statistics": (K, H', W'), "pairs": ..., "periodic": ...} (what
        ``np.load`` gives for a ``microlatent stats --save`` file) or its path; an image file.
    method : "gradient" or "annealing"
        Gradient descent on a sigmoid/softmax pixel field with the clamp loss, ending binary; or
        Yeong-Torquato simulated annealing with phase-preserving swaps and incremental statistics.
    loss : "cess" or "msess"
        Statistics loss of the gradient method (annealing always lowers the statistics error).
    periodic : bool, optional
        Periodic statistics; default: as the statistics file says, else True.
    n_samples : int
        Reconstructions to make (seeds ``seed``, ``seed + 1``, ... for annealing; one batch for
        the gradient method).
    steps : int, optional
        Gradient steps or L-BFGS-B objective evaluations (default 1000), or annealing candidate swaps
        (default 20 per pixel, at most 200,000). With
        ``time_limit`` and no ``steps`` the run lasts ``time_limit`` seconds.
    time_limit : float, optional
        Seconds per run (a gradient batch, or one annealing sample); schedules follow whichever of
        steps and time runs out first.
    polish : int, optional
        Gradient method: greedy swap candidates tried on the binary image afterwards (default 2 per
        pixel, at most 10,000, stopping early when no swap helps; 0: none). With ``time_limit``,
        polishing gets the last 15 % of it and, by default, uses all of it.
    volume_fraction : float or sequence, optional
        Volume fraction of phase 1 (2 phases) or of every phase; default read off the target
        statistics at r = 0.
    size : int or (H, W), optional
        Image size when a statistics map holds only the central offsets (a crop).
    device : "auto", "cpu", "cuda", ...
        Where the gradient method runs ("auto": a GPU if there is one).
    threads : int, optional
        CPU threads for PyTorch during the call; default 1 on the CPU (small FFTs run far faster
        single-threaded, above all on a shared machine), untouched on a GPU.
    workers : int
        L-BFGS-B only: independent searches run at once in as many processes (one core each, seeds
        ``seed``, ``[seed, 1]``, ...), the best kept; one that matches exactly stops the others. Each
        gets the whole ``time_limit`` or ``steps``. Default 1.
    progress : bool
        Show a tqdm progress bar.
    **options
        Gradient: optimizer ("lbfgs": L-BFGS-B with restarts, the default for 2 phases on a CPU;
        "adam": the default for more phases or on a GPU, where ``loss`` applies).
        Adam only: lr, beta_max, clamp_start, clamp_end, sigma, soft_until, hard_from, init_noise,
        noise (see ``microlatent.reconstruction.gradient``). Annealing: t_start (absolute),
        t_factor (start temperature relative to the median energy change of random swaps),
        t_end_ratio.

    Returns
    -------
    list of :class:`Reconstruction`, ``n_samples`` long.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    for name, value in (("steps", steps), ("polish", polish)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise InputError(f"{name} must be an integer >= 0, got {value!r}")
    if steps == 0:
        raise InputError("steps must be an integer >= 1")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if time_limit is not None and not time_limit > 0:
        raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    target = as_target(target, periodic=periodic, size=size, volume_fraction=volume_fraction)
    if periodic is not None and bool(periodic) != target.periodic:
        raise InputError(f"the target is {'periodic' if target.periodic else 'non-periodic'}, not as asked")
    if method == "annealing":
        if workers > 1:
            raise InputError("workers > 1 runs parallel L-BFGS-B searches; annealing takes workers=1")
        unknown = sorted(set(options) - set(ANNEALING_OPTIONS))
        if unknown:
            raise InputError(f"unknown annealing option(s) {unknown} (known: {sorted(ANNEALING_OPTIONS)})")
    torch_device = resolve_device(device)
    with _threads(threads, torch_device), _progress_bar(progress, method, n_samples) as bar:
        if method == "gradient":
            return _run_gradient(
                target, loss, n_samples, steps, time_limit, seed, torch_device, polish, bar, options, workers
            )
        return _run_annealing(target, n_samples, steps, time_limit, seed, bar, {**ANNEALING_OPTIONS, **options})


def _run_gradient(target, loss, n_samples, steps, time_limit, seed, device, polish, bar, options, workers=1):
    optimizer = options.pop("optimizer", None) or ("lbfgs" if target.n_phases == 2 and device.type == "cpu" else "adam")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "lbfgs" and target.n_phases != 2:
        raise InputError(f"the lbfgs optimizer handles 2 phases; use optimizer='adam' for {target.n_phases}")
    if optimizer != "lbfgs" and workers > 1:
        raise InputError(f"workers > 1 runs parallel L-BFGS-B searches; the {optimizer} optimizer takes workers=1")
    if optimizer == "lbfgs" and options:
        raise InputError(f"option(s) {sorted(options)} belong to optimizer='adam'")
    if steps is None and time_limit is None:
        steps = GRADIENT_STEPS
    pixels = target.shape[0] * target.shape[1]
    # Under a time budget the default polish has no step cap: it runs until the budget is spent (it
    # stopped at ~8.9 s of 10, leaving the rest unused).
    polish_steps = (None if time_limit else min(POLISH_SWEEPS * pixels, POLISH_MAX)) if polish is None else polish
    polish = polish is None or polish > 0
    if optimizer == "lbfgs":
        return _run_lbfgs(target, n_samples, steps, time_limit, seed, polish, polish_steps, bar, workers)

    _gradient.warm_up(target, n_samples, device)  # before the clock starts: the budget is for the search
    start = time.perf_counter()

    def clock():
        return time.perf_counter() - start

    descent_time = time_limit * (1 - POLISH_TIME) if (time_limit and polish) else time_limit
    labels, soft, soft_errors, histories, done = _gradient.descend(
        target,
        n_samples=n_samples,
        steps=steps,
        time_limit=descent_time,
        seed=seed,
        device=device,
        loss=loss,
        on_progress=bar.update_to if bar else None,
        clock=clock,
        **options,
    )
    results = []
    for i in range(n_samples):
        image, tried = labels[i], 0
        if polish:
            state = SwapState(image, target)
            remaining = None if not time_limit else max(time_limit - clock(), 1e-3) / (n_samples - i)
            tried = anneal_state(
                state,
                np.random.default_rng([seed, i]),
                steps=polish_steps,
                time_limit=remaining,
                greedy=True,
                history=histories[i],
                clock=clock,
                step_offset=done,
            )
            image = state.labels.astype(np.uint8)
        results.append(
            _result(
                target,
                image,
                soft_errors[i],
                histories[i],
                clock(),
                "gradient",
                loss,
                seed,
                done + tried,
                soft[i],
                optimizer="adam",
            )
        )
    for r in results:
        r.seconds = clock()
    return results


def _run_lbfgs(target, n_samples, steps, time_limit, seed, polish, polish_steps, bar, workers=1):
    """Each sample in turn: L-BFGS-B with restarts (``lbfgs.search``, or ``workers`` of them in
    parallel processes) for its share of the time (less the polish share) or ``steps`` evaluations
    each, then the greedy swap polish."""
    _lbfgs.warm_up(target)  # before the clock starts: the budget is for the search
    with _lbfgs.Workers(workers) if workers > 1 else contextlib.nullcontext() as pool:  # forked before the clock
        return _lbfgs_samples(target, n_samples, steps, time_limit, seed, polish, polish_steps, bar, pool)


def _lbfgs_samples(target, n_samples, steps, time_limit, seed, polish, polish_steps, bar, pool):
    start = time.perf_counter()

    def clock():
        return time.perf_counter() - start

    results = []
    for i in range(n_samples):
        share_end = None if not time_limit else time_limit * (i + 1) / n_samples
        search_end = None if not share_end else share_end - (time_limit / n_samples) * (POLISH_TIME if polish else 0)
        if pool is None:
            history = []
            labels, soft, used, runs = _lbfgs.search(
                target,
                time_limit=search_end,
                evaluations=None if time_limit else steps,
                seed=seed + i,
                clock=clock,
                history=history,
                error_of=lambda image: statistics_error(target, image)[0],
            )
        else:
            labels, soft, used, runs, history = _lbfgs.parallel_search(
                target, pool, search_end, None if time_limit else steps, seed + i, start
            )
        tried = 0
        if polish and history[-1]["error"] >= _lbfgs.EXACT:
            state = SwapState(labels, target)
            tried = _lbfgs.fix_ambiguous_pixels(state, soft, time_limit=share_end, clock=clock)
            remaining = None if not time_limit else max(share_end - clock(), 1e-3)
            if state.energy >= _lbfgs.EXACT:
                tried += anneal_state(
                    state,
                    np.random.default_rng([seed, i]),
                    steps=polish_steps,
                    time_limit=remaining,
                    greedy=True,
                    history=history,
                    clock=clock,
                    step_offset=used + tried,
                )
            labels = state.labels.astype(np.uint8)
        soft_error = float(statistics_error(target, soft.astype(np.float64))[0])
        results.append(
            _result(
                target,
                labels,
                soft_error,
                history,
                clock(),
                "gradient",
                None,
                seed + i,
                used + tried,
                soft,
                optimizer="lbfgs",
                runs=runs,
            )
        )
        if bar:
            bar.update_to((i + 1) / n_samples, results[-1].error)
    return results


def _run_annealing(target, n_samples, steps, time_limit, seed, bar, options):
    pixels = target.shape[0] * target.shape[1]
    if steps is None and time_limit is None:
        steps = min(ANNEALING_SWEEPS * pixels, ANNEALING_MAX)
    results = []
    for i in range(n_samples):
        start = time.perf_counter()

        def clock():
            return time.perf_counter() - start

        rng = np.random.default_rng(seed + i)
        state = SwapState(random_labels(target, rng), target)
        t_start = options["t_start"] or initial_temperature(state, rng, options["t_factor"])
        history = []
        on_progress = (lambda p, e, i=i: bar.update_to((i + p) / n_samples, e)) if bar else None
        tried = anneal_state(
            state,
            rng,
            steps=steps,
            time_limit=time_limit,
            t_start=t_start,
            t_end_ratio=options["t_end_ratio"],
            history=history,
            clock=clock,
            on_progress=on_progress,
        )
        results.append(
            _result(
                target, state.labels.astype(np.uint8), None, history, clock(), "annealing", None, seed + i, tried, None
            )
        )
    return results


def random_labels(target: TargetStatistics, rng) -> np.ndarray:
    """A random image with the target's volume fractions (as exactly as whole pixels allow)."""
    H, W = target.shape
    counts = np.floor(np.asarray(target.volume_fractions) * H * W).astype(np.int64)
    counts[np.argmax(np.asarray(target.volume_fractions) * H * W - counts)] += H * W - counts.sum()
    labels = np.repeat(np.arange(target.n_phases), counts)
    return rng.permutation(labels).reshape(H, W).astype(np.uint8)


def _result(target, image, soft_error, history, seconds, method, loss, seed, steps, soft, optimizer=None, runs=1):
    image = np.asarray(image, dtype=np.uint8)
    error = float(statistics_error(target, image)[0])
    history.append({"step": int(steps), "seconds": float(seconds), "error": error})
    return Reconstruction(
        image=image,
        error=error,
        cess=float(cross_entropy_error(target, image)[0]),
        soft_error=None if soft_error is None else float(soft_error),
        volume_fractions=np.bincount(image.ravel(), minlength=target.n_phases) / image.size,
        history=history,
        seconds=float(seconds),
        method=method,
        loss=loss,
        seed=int(seed),
        steps=int(steps),
        soft=soft,
        optimizer=optimizer,
        runs=int(runs),
    )


@contextlib.contextmanager
def _threads(threads, device):
    if threads is None and device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update_to(self, fraction, error):
        self.bar.n = min(1000, int(1000 * fraction))
        self.bar.set_postfix_str(f"error {error:.3g}", refresh=False)
        self.bar.refresh()


@contextlib.contextmanager
def _progress_bar(show, method, n_samples):
    if not show:
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=1000,
        desc=f"{method} x{n_samples}",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
        leave=False,
    ) as bar:
        yield _Bar(bar)
