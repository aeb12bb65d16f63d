"""Reconstruction by L-BFGS-B on pixel values, with restarts (2 phases).

The approach of Seibert et al.'s differentiable MCR (MCRpy): the pixel values x in [0, 1] of phase 1
are the variables, the loss is the mean squared difference between the phase-1 autocorrelation of x
and the target's, L-BFGS-B (SciPy) keeps the bounds. From 2-point statistics alone a generic image is
determined up to translation and point reflection, and this quasi-Newton search often finds such an
image exactly (loss ~1e-32). From some starting points it stalls on a plateau instead; MCRpy then
spends the rest of its run there. Here a run that has stalled (the loss fell by less than
``STALL_GAIN`` over the last ``STALL_WINDOW`` evaluations) or converged without an exact match is
restarted from a new random field, and the best binary image of all runs is kept. Past ``EXPLORE``
of the budget no new field is drawn: the best field found is refined to the end instead (a slowly
improving basin, e.g. of Voronoi grains, gains more from the time than another random start).

Binary image: phase 1 at the round(vf H W) highest values of the field, so the volume fraction is
the target's. Runs start from uniform noise or from MCRpy's N(0.5, 0.1) clipped to [0, 1], in turn.

With ``workers`` > 1 (:func:`parallel_search`) as many independent searches run in forked processes,
each on one core, from their own seeds, and the best is kept; one that matches exactly stops the
others. SciPy's L-BFGS-B holds the GIL, so threads would not run at once (two threads took 2.8x the
time of one search each).
"""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import scipy.fft
import threadpoolctl
import torch
from scipy.optimize import Bounds, minimize

from microlatent.reconstruction.target import TargetStatistics
from microlatent.stats import two_point

STALL_WINDOW = 50  # evaluations
STALL_GAIN = 0.01  # a run that lowered its loss by less than this share over the window has stalled
EXACT = 1e-20  # statistics error (MSESS) below which a binary image counts as an exact match
EXPLORE = 0.5  # share of the budget for restarts; the rest refines the best field found (see search)
# L-BFGS-B's correction pairs (SciPy's default is 10). Its own work per evaluation, not the objective's,
# dominates at 128 px (~450 of ~600 us) and grows with this; 5 gave more evaluations and a lower median
# error at 2 s on VoronoiMedium, GRF and NBSA at 64 and 128 px (workers=2, 4-6 seeds each).
MEMORY = 5
CONVERGED = 1e-24  # a run whose loss (mean squared autocorrelation difference) falls below this is done
CLOSE = 1e-8  # below this loss the binary image is checked every CHECK_EVERY evaluations: the tail of the
CHECK_EVERY = 25  # convergence (1e-9 -> 1e-13 took 3/4 of a 2 s run at 128 px) is not needed once it matches


class _Stop(Exception):
    """Raised inside the objective to end a run (time up, stalled); SciPy passes it through."""


def search(
    target: TargetStatistics,
    time_limit=None,
    evaluations=None,
    seed=0,
    clock=None,
    error_of=None,
    history=None,
    stop_when=None,
    first_start=0,
):
    """Run L-BFGS-B from random fields until ``time_limit`` seconds on ``clock`` or ``evaluations``
    objective evaluations are used up, or an exact match is found.

    Returns (labels (H, W) uint8 of the best run, its soft field (H, W) float32, evaluations used,
    runs started). ``error_of(labels)`` scores a binary image (the statistics error); ``history`` (a
    list) gets {"step", "seconds", "error"} at the first evaluation and at the end of every run.
    ``stop_when()``: True ends the search early (another worker matched exactly). ``first_start``:
    which kind of starting field the first run takes (0: uniform noise, 1: MCRpy's; they alternate).
    """
    if target.n_phases != 2:
        raise ValueError("the L-BFGS-B search handles 2 phases")
    height, width = target.shape
    loss_and_gradient = objective_for(target)
    counts = int(round(float(target.volume_fractions[1]) * height * width))
    rng = np.random.default_rng(seed)
    bounds = Bounds(np.zeros(height * width), np.ones(height * width))  # arrays: a list of pairs costs 50 ms a run
    used, runs = 0, 0
    best = (np.inf, None, None)

    began = clock() if clock else 0.0

    def out_of_budget():
        return (
            (time_limit is not None and clock() >= time_limit)
            or (evaluations is not None and used >= evaluations)
            or (stop_when is not None and stop_when())
        )

    def progress():
        shares = [used / evaluations] if evaluations else []
        if time_limit is not None:
            shares.append((clock() - began) / max(time_limit - began, 1e-9))
        return max(shares)

    while runs == 0 or not out_of_budget():  # one run at least: a budget spent before it starts still
        runs += 1  # gives the binarised starting field, scored, not nothing
        lowest = []  # lowest loss so far after each evaluation (line searches try worse points too)
        kept = {}
        # Exploit: past EXPLORE of the budget, the best field so far is refined to the end, not restarted.
        exploit = best[2] is not None and progress() >= EXPLORE

        def objective(values):
            nonlocal used
            if out_of_budget() or (not exploit and _stalled(lowest)) or (lowest and lowest[-1] < CONVERGED):
                raise _Stop
            if used == 0 and history is not None:
                history.append(
                    {
                        "step": 0,
                        "seconds": clock(),
                        "error": float(error_of(binarise_top(values.reshape(height, width), counts))),
                    }
                )
            used += 1
            value, gradient = loss_and_gradient(values)
            if (
                value < CLOSE
                and used % CHECK_EVERY == 0
                and error_of(binarise_top(values.reshape(height, width), counts)) < EXACT
            ):
                kept["field"] = values.copy()
                raise _Stop
            if not lowest or value < lowest[-1]:
                kept["field"] = values.copy()
            lowest.append(min(value, lowest[-1]) if lowest else value)
            return value, gradient

        start = (
            best[2].ravel().astype(np.float64) if exploit else _starting_field(rng, height * width, runs + first_start)
        )
        kept["field"] = start
        try:
            minimize(
                objective,
                start,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                tol=0,
                options={"maxiter": 10**9, "maxfun": 10**9, "maxcor": MEMORY},
            )
        except _Stop:
            pass
        field = kept["field"]
        labels = binarise_top(field.reshape(height, width), counts)
        error = float(error_of(labels))
        if history is not None:
            history.append({"step": used, "seconds": clock(), "error": min(error, best[0])})
        if error < best[0]:
            best = (error, labels, field.reshape(height, width).astype(np.float32))
        if best[0] < EXACT:
            break
    return best[1], best[2], used, runs


class Workers:
    """``count`` forked worker processes for :func:`parallel_search`, started before the clock (a
    fork costs ~10 ms, not charged to the search, as warm-up is not). Use as a context manager.

    Fork is safe here because the workers use NumPy, SciPy and PyTorch on one thread each, which
    never enters an OpenMP region."""

    def __init__(self, count: int):
        self.count = int(count)
        self.context = multiprocessing.get_context("fork")
        self.matched = self.context.Event()
        self.pool = self.context.Pool(self.count, initializer=_set_matched, initargs=(self.matched,))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.terminate()
        self.pool.join()


_matched = None  # in a worker: the Event set when any worker matches exactly


def _set_matched(event):
    global _matched
    _matched = event
    # One BLAS thread per worker: L-BFGS-B's BLAS calls otherwise start a thread per core in every
    # worker, and two workers' spinning threads on 2 cores made each search 4x slower.
    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)  # whatever the caller's threads: OpenMP after a fork must stay single-threaded


def _search_in_worker(target, time_limit, evaluations, seed, start, first_start):
    def clock():  # perf_counter is CLOCK_MONOTONIC, one clock for every process on the machine
        return time.perf_counter() - start

    from microlatent.reconstruction.api import statistics_error  # the parent has imported it: no cost

    history = []
    labels, soft, used, runs = search(
        target,
        time_limit=time_limit,
        evaluations=evaluations,
        seed=seed,
        clock=clock,
        error_of=lambda image: statistics_error(target, image)[0],
        history=history,
        stop_when=_matched.is_set,
        first_start=first_start,
    )
    if history[-1]["error"] < EXACT:
        _matched.set()
    return labels, soft, used, runs, history


def parallel_search(target: TargetStatistics, workers: Workers, time_limit=None, evaluations=None, seed=0, start=0.0):
    """:func:`search` in every process of ``workers`` at once, each from its own seed (worker 0 from
    ``seed`` itself, so it makes what one search would) and with the other kind of starting field
    from its neighbour (neither kind wins on every target), to the same ``time_limit`` on the
    ``time.perf_counter() - start`` clock or ``evaluations`` each. Returns the best run's (labels,
    soft field, evaluations used by all, runs started by all, history of the best error over time)."""
    workers.matched.clear()
    seeds = [seed] + [[seed, w] for w in range(1, workers.count)]
    outcomes = workers.pool.starmap(
        _search_in_worker, [(target, time_limit, evaluations, s, start, w) for w, s in enumerate(seeds)], chunksize=1
    )
    best = min(outcomes, key=lambda o: o[4][-1]["error"])
    events = sorted((point for o in outcomes for point in o[4]), key=lambda point: point["seconds"])
    history, lowest = [], np.inf
    for point in events:  # one history for all workers: the lowest error found by then
        lowest = min(lowest, point["error"])
        history.append({"step": point["step"], "seconds": point["seconds"], "error": lowest})
    return best[0], best[1], sum(o[2] for o in outcomes), sum(o[3] for o in outcomes), history


def objective_for(target: TargetStatistics):
    """f(values) -> (loss, gradient) for pixel values (H W,) float64: the mean squared difference
    between the phase-1 autocorrelation of the field and the target's over the target's offsets."""
    if target.periodic:
        return PeriodicObjective(target)
    return TorchObjective(target)


class PeriodicObjective:
    """Periodic statistics in closed form, 5-9x faster than autograd (128, 64 px). With S = irfft(|X|^2) / HW
    and D = S - target at the kept offsets (0 elsewhere; K of them), loss = sum(D^2) / K and
    dloss/dx(p) = 2 / (K HW) sum_r D(r) (x(p + r) + x(p - r)) = 2 / (K HW) irfft(X * 2 Re(rfft(D))).

    When every offset is kept (a target from an image) D's spectrum is |X|^2 / HW - rfft(target),
    real (both are even in r), and Parseval gives sum(D^2) from it: two FFTs an evaluation instead
    of four, and no scatter (together 340 -> 130 us at 128 px)."""

    def __init__(self, target: TargetStatistics):
        self.shape = tuple(target.shape)
        ry, rx = target.offsets
        rows, cols = np.meshgrid(ry % self.shape[0], rx % self.shape[1], indexing="ij")
        self.kept = (rows.ravel(), cols.ravel())
        self.target = np.asarray(target.statistics[3], dtype=np.float64).ravel()  # f(1, 1 | r)
        self.pixels = self.shape[0] * self.shape[1]
        self.every_offset = self.target.size == self.pixels
        if self.every_offset:
            full = np.zeros(self.shape)
            full[self.kept] = self.target
            self.target_spectrum = scipy.fft.rfft2(full).real  # even in r: the imaginary part is roundoff
            # rfft2 keeps half the columns of the spectrum: those with a mirror image count twice.
            self.column_weight = np.full(self.target_spectrum.shape[1], 2.0)
            self.column_weight[0] = 1.0
            if self.shape[1] % 2 == 0:
                self.column_weight[-1] = 1.0

    def __call__(self, values):
        spectrum = scipy.fft.rfft2(values.reshape(self.shape))
        if self.every_offset:
            weights = (spectrum.real**2 + spectrum.imag**2) / self.pixels - self.target_spectrum  # rfft(D)
            loss = float(np.sum(weights**2 @ self.column_weight)) / (self.pixels * self.pixels)
        else:
            same = scipy.fft.irfft2(spectrum * spectrum.conj(), s=self.shape) / self.pixels
            difference = np.zeros(self.shape)
            difference[self.kept] = same[self.kept] - self.target
            loss = float(np.sum(difference**2)) / self.target.size
            weights = scipy.fft.rfft2(difference).real
        gradient = scipy.fft.irfft2(spectrum * weights, s=self.shape) * (4 / (self.target.size * self.pixels))
        return loss, gradient.ravel()


class TorchObjective:
    """Any statistics (non-periodic, cropped) through two_point and autograd, in float64."""

    def __init__(self, target: TargetStatistics):
        self.target = target
        self.f_target = torch.as_tensor(target.statistics[3:4], dtype=torch.float64)[None]  # f(1, 1 | r)

    def __call__(self, values):
        field = torch.tensor(values.reshape(1, *self.target.shape), requires_grad=True)
        f = two_point(field, periodic=self.target.periodic, pairs=[(1, 1)], crop=self.target.crop, validate=False)
        loss = ((f - self.f_target) ** 2).mean()
        loss.backward()
        return float(loss.detach()), field.grad.numpy().ravel()


def _starting_field(rng, size, run):
    """Runs alternate between uniform noise on [0, 1] (first) and MCRpy's start, N(0.5, 0.1) clipped to
    [0, 1]: neither wins everywhere. Over 4-9 seeds in 1-1.5 s at 128 px, uniform noise matched line
    patterns exactly 8 times in 9 and discs 3 in 6; N(0.5, 0.1) lines 0 in 9 and discs 6 in 6."""
    if run % 2 == 0:
        return np.clip(rng.normal(0.5, 0.1, size), 0, 1)
    return rng.random(size)


def _stalled(lowest):
    if len(lowest) <= STALL_WINDOW:
        return False
    return lowest[-1] > (1 - STALL_GAIN) * lowest[-STALL_WINDOW - 1]


def binarise_top(field, count):
    """uint8 image of ``field``'s shape with phase 1 at its ``count`` highest values (ties: the later
    pixels), so the volume fraction is exactly count / size."""
    labels = np.zeros(field.size, dtype=np.uint8)
    if count > 0:
        labels[np.argsort(field.ravel(), kind="stable")[field.size - count :]] = 1
    return labels.reshape(field.shape)


def warm_up(target: TargetStatistics):
    """One objective evaluation at the run's shape, untimed (plans the FFT; imports are done)."""
    objective_for(target)(np.full(target.shape[0] * target.shape[1], 0.5))


def fix_ambiguous_pixels(state, field, time_limit=None, clock=None, candidates=16):
    """Greedy swaps among the pixels the soft ``field`` (H, W) was least sure of, on a 2-phase
    ``SwapState`` in place: the phase-1 pixels with the lowest values against the phase-0 pixels with
    the highest, ``candidates`` of each (candidates^2 swaps a round); the best swap is made while it
    lowers the error. A near-exact field is usually off by a few such pixels, which random swap
    candidates rarely hit. Returns the swaps tried."""
    order = np.argsort(field.ravel(), kind="stable")
    labels = state.labels.ravel()
    weak_ones = [p for p in order if labels[p] == 1][:candidates]  # lowest values still made phase 1
    strong_zeros = [q for q in order[::-1] if labels[q] == 0][:candidates]
    tried = 0
    while weak_ones and strong_zeros and (time_limit is None or clock() < time_limit):
        p = np.repeat(np.array(weak_ones), len(strong_zeros))
        q = np.tile(np.array(strong_zeros), len(weak_ones))
        change, counts = state.energy_changes(1, 0, p, q)
        tried += len(p)
        i = int(np.argmin(change))
        if not change[i] < -1e-12 * max(state.energy, 1e-300):
            break
        state.apply(1, 0, p[i], q[i], counts(i))
        weak_ones.remove(int(p[i]))
        strong_zeros.remove(int(q[i]))
    return tried
