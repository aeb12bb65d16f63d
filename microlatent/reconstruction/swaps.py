"""Phase-preserving pixel swaps with incremental 2-point statistics (Yeong & Torquato 1998).

A swap moves pixel p from phase a to b and pixel q from b to a. With indicators I_h and the change
d_h = c_h^p e_p + c_h^q e_q (c_a^p = -1, c_b^p = +1, c_a^q = +1, c_b^q = -1, else 0), the unnormalised
correlation S_hk(r) = sum_{x, x+r in the image} I_h(x) I_k(x + r) changes by

    dS_hk(r) = c_k^p I_h(p - r) + c_k^q I_h(q - r) + c_h^p I_k(p + r) + c_h^q I_k(q + r)
               + (c_h^p c_k^p + c_h^q c_k^q) [r = 0] + c_h^p c_k^q [r = q - p] + c_h^q c_k^p [r = p - q]

(I of the image before the swap; outside the image I = 0 when the statistics are not periodic): an
O(H W) update per swap from four shifted copies of the image, no FFT. Counts stay integers, so the
state after any number of swaps equals a full recomputation exactly.

Metropolis on a batch: K candidate swaps are scored against the same state at once (NumPy, one
(K, H', W') array per term) and the first one accepted is applied. Rejected candidates leave the
state as it was, so this makes the same decisions as trying them one after another; only the
candidates after the accepted one are wasted work, and K follows the acceptance rate to keep that
small.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from microlatent.reconstruction.target import TargetStatistics
from microlatent.stats import one_hot, two_point

# Largest K * H' * W' a batch may hold (int16/float32 arrays of that size, a few at once).
_BATCH_ELEMENTS = 2_000_000


class SwapState:
    """A labelled image (H, W) with its exact pair counts S_hk and the squared statistics error.

    ``energy`` is the statistics error of ``microlatent.reconstruction`` (MSESS over all ordered
    pairs and all offsets of the target map): sum over pairs of mean over offsets of
    (S_hk / n(r) - f_target)^2.
    """

    def __init__(self, labels, target: TargetStatistics):
        labels = np.asarray(labels)
        if labels.shape != tuple(target.shape):
            raise ValueError(f"labels {labels.shape} do not match the target's image shape {target.shape}")
        self.target = target
        self.C = target.n_phases
        self.periodic = target.periodic
        self.H, self.W = target.shape
        self.ry, self.rx = target.offsets
        self.kh, self.kw = len(self.ry), len(self.rx)
        self.f_target = target.statistics.reshape(self.C, self.C, self.kh, self.kw)
        if self.periodic:
            self.inv_n = np.full((self.kh, self.kw), 1.0 / (self.H * self.W))
        else:
            counts = (self.H - np.abs(self.ry))[:, None] * (self.W - np.abs(self.rx))[None, :]
            self.inv_n = 1.0 / counts
        self.inv_n32 = self.inv_n.astype(np.float32)
        self.labels = labels.astype(np.int8).copy()
        self._build_bases()
        self.S = self.full_counts()
        self.pixels = [np.flatnonzero(self.labels.ravel() == h) for h in range(self.C)]
        self.position = np.empty(self.H * self.W, dtype=np.int64)
        for pixels in self.pixels:
            self.position[pixels] = np.arange(len(pixels))
        self._refresh()

    # ---------------------------------------------------------------------------------------- state

    def full_counts(self) -> np.ndarray:
        """S_hk recomputed from scratch by FFT, (C, C, H', W') int64."""
        indicators = one_hot(self.labels, self.C).astype(np.float64)[None]
        f = two_point(indicators, periodic=self.periodic, pairs="all", crop=self.target.crop, validate=False)[0]
        return np.rint(f.reshape(self.C, self.C, self.kh, self.kw) / self.inv_n).astype(np.int64)

    @property
    def statistics(self) -> np.ndarray:
        """Current f(h, h' | r), (C*C, H', W') float64."""
        return (self.S * self.inv_n).reshape(self.C * self.C, self.kh, self.kw)

    def _refresh(self):
        self.residual = self.S * self.inv_n - self.f_target  # (C, C, H', W') float64
        self.energy = float((self.residual**2).mean((-2, -1)).sum())
        if self.C == 2 and self.periodic:
            # dS_11 = dS_00 = -dS_10 = -dS_01 for a periodic 2-phase swap: one combined residual.
            g = self.residual
            self.combined = (2 * (g[1, 1] + g[0, 0] - g[1, 0] - g[0, 1])).astype(np.float32)
        else:
            self.residual32 = (2 * self.residual).astype(np.float32)

    def _build_bases(self):
        """Shifted copies of the label image that windows are cut from (views stay valid on update)."""
        H, W = self.H, self.W
        if self.periodic:
            self.plus_base = np.tile(self.labels, (2, 2))
        else:
            self.plus_base = np.full((3 * H - 2, 3 * W - 2), -1, dtype=np.int8)
            self.plus_base[H - 1 : 2 * H - 1, W - 1 : 2 * W - 1] = self.labels
        self.minus_base = self.plus_base[::-1, ::-1].copy()
        self.plus_windows = sliding_window_view(self.plus_base, (self.kh, self.kw))
        self.minus_windows = sliding_window_view(self.minus_base, (self.kh, self.kw))

    def _starts(self, y, x):
        """Window corners giving L(p + r) and L(p - r) over the map's offsets for pixels (y, x)."""
        H, W, ry0, rx0 = self.H, self.W, self.ry[0], self.rx[0]
        if self.periodic:
            return ((y + ry0) % H, (x + rx0) % W), ((H - 1 - y + ry0) % H, (W - 1 - x + rx0) % W)
        return (y + ry0 + H - 1, x + rx0 + W - 1), (2 * H - 2 - y + ry0, 2 * W - 2 - x + rx0)

    def _set_label(self, y, x, value):
        H, W = self.H, self.W
        self.labels[y, x] = value
        if self.periodic:
            ys, xs = (y, y + H), (x, x + W)
        else:
            ys, xs = (y + H - 1,), (x + W - 1,)
        py, px = self.plus_base.shape
        for yy in ys:
            for xx in xs:
                self.plus_base[yy, xx] = value
                self.minus_base[py - 1 - yy, px - 1 - xx] = value

    # ----------------------------------------------------------------------------------- candidates

    def propose(self, rng, k, phases=None):
        """k random swaps between two phases (a, b): pixels p of phase a, q of phase b (flat indices)."""
        if phases is None:
            if self.C == 2:
                a, b = 1, 0
            else:
                present = [h for h in range(self.C) if len(self.pixels[h])]
                a, b = rng.choice(present, 2, replace=False) if len(present) >= 2 else (present[0], present[0])
        else:
            a, b = phases
        if a == b or not len(self.pixels[a]) or not len(self.pixels[b]):
            return int(a), int(b), np.empty(0, np.int64), np.empty(0, np.int64)
        p = self.pixels[a][rng.integers(0, len(self.pixels[a]), k)]
        q = self.pixels[b][rng.integers(0, len(self.pixels[b]), k)]
        return int(a), int(b), p, q

    def count_changes(self, a, b, p, q):
        """dS for swaps (p: a -> b, q: b -> a), (K, C, C, H', W') int32, by the formula above."""
        py, px = np.divmod(p, self.W)
        qy, qx = np.divmod(q, self.W)
        (pys, pxs), (pym, pxm) = self._starts(py, px)
        (qys, qxs), (qym, qxm) = self._starts(qy, qx)
        windows = {
            "p+": self.plus_windows[pys, pxs],
            "q+": self.plus_windows[qys, qxs],
            "p-": self.minus_windows[pym, pxm],
            "q-": self.minus_windows[qym, qxm],
        }
        c_p = np.zeros(self.C, np.int32)
        c_q = np.zeros(self.C, np.int32)
        c_p[a], c_p[b], c_q[a], c_q[b] = -1, 1, 1, -1
        K = len(p)
        out = np.zeros((K, self.C, self.C, self.kh, self.kw), np.int32)
        for h in range(self.C):
            for k in range(self.C):
                if c_p[h] == 0 and c_p[k] == 0:
                    continue
                d = out[:, h, k]
                if c_p[k]:
                    d += c_p[k] * (windows["p-"] == h) + c_q[k] * (windows["q-"] == h)
                if c_p[h]:
                    d += c_p[h] * (windows["p+"] == k) + c_q[h] * (windows["q+"] == k)
        self._add_pair_terms(out, c_p, c_q, py, px, qy, qx)
        return out

    def _add_pair_terms(self, out, c_p, c_q, py, px, qy, qx):
        """The terms of both swapped pixels together: r = 0, r = q - p, r = p - q."""
        cy, cx = int(np.flatnonzero(self.ry == 0)[0]), int(np.flatnonzero(self.rx == 0)[0])
        same = np.outer(c_p, c_p) + np.outer(c_q, c_q)
        out[:, :, :, cy, cx] += same
        rows = np.arange(len(py))
        for (dy, dx), coeff in (((qy - py, qx - px), np.outer(c_p, c_q)), ((py - qy, px - qx), np.outer(c_q, c_p))):
            iy, ix, valid = self._index_of(dy, dx)
            for h in range(self.C):
                for k in range(self.C):
                    if coeff[h, k]:
                        np.add.at(out[:, h, k], (rows[valid], iy[valid], ix[valid]), coeff[h, k])

    def _index_of(self, dy, dx):
        """Map indices of offsets (dy, dx) and whether the map holds them."""
        if self.periodic:
            iy, ix = (dy - self.ry[0]) % self.H, (dx - self.rx[0]) % self.W
        else:
            iy, ix = dy - self.ry[0], dx - self.rx[0]
        valid = (iy >= 0) & (iy < self.kh) & (ix >= 0) & (ix < self.kw)
        return iy, ix, valid

    def energy_changes(self, a, b, p, q):
        """(change of energy for each candidate (K,) float64, a callable giving dS of candidate i)."""
        if self.C == 2 and self.periodic:
            d = self._two_phase_periodic_changes(p, q)
            delta = d.astype(np.float32) * self.inv_n32[0, 0]
            change = (delta * (self.combined + 4 * delta)).mean((-2, -1), dtype=np.float64)
            sign = np.array([[1, -1], [-1, 1]], np.int64)[:, :, None, None]
            return change, lambda i: sign * d[i].astype(np.int64)
        d = self.count_changes(a, b, p, q)
        delta = d.astype(np.float32) * self.inv_n32
        change = (delta * (self.residual32 + delta)).mean((-2, -1), dtype=np.float64).sum((1, 2))
        return change, lambda i: d[i].astype(np.int64)

    def _two_phase_periodic_changes(self, p, q):
        """dS_11 for 2-phase periodic swaps p: 1 -> 0, q: 0 -> 1, (K, H', W') int16."""
        py, px = np.divmod(p, self.W)
        qy, qx = np.divmod(q, self.W)
        (pys, pxs), (pym, pxm) = self._starts(py, px)
        (qys, qxs), (qym, qxm) = self._starts(qy, qx)
        d = self.plus_windows[qys, qxs].astype(np.int16)
        d += self.minus_windows[qym, qxm]
        d -= self.plus_windows[pys, pxs]
        d -= self.minus_windows[pym, pxm]
        cy, cx = -self.ry[0], -self.rx[0]
        d[:, cy, cx] += 2
        rows = np.arange(len(p))
        for dy, dx in ((qy - py, qx - px), (py - qy, px - qx)):
            iy, ix, valid = self._index_of(dy, dx)
            np.add.at(d, (rows[valid], iy[valid], ix[valid]), -1)
        return d

    def apply(self, a, b, p, q, change):
        """Make the swap p: a -> b, q: b -> a whose count change is ``change`` (C, C, H', W')."""
        self.S += change
        py, px = divmod(int(p), self.W)
        qy, qx = divmod(int(q), self.W)
        self._set_label(py, px, b)
        self._set_label(qy, qx, a)
        ip, iq = self.position[p], self.position[q]
        self.pixels[a][ip] = q
        self.pixels[b][iq] = p
        self.position[q], self.position[p] = ip, iq
        self._refresh()

    def batch_limit(self):
        return max(
            1, _BATCH_ELEMENTS // (self.kh * self.kw * (1 if self.C == 2 and self.periodic else self.C * self.C))
        )


def anneal_state(
    state: SwapState,
    rng,
    steps=None,
    time_limit=None,
    t_start=None,
    t_end_ratio=1e-4,
    greedy=False,
    history=None,
    clock=None,
    on_progress=None,
    step_offset=0,
):
    """Simulated annealing (or, ``greedy``, best-of-batch descent) on ``state`` in place.

    steps : candidate swaps to try (as a one-by-one annealer would); time_limit : seconds. The
    temperature falls geometrically from ``t_start`` (default: from the spread of the energy changes
    of the first candidates) to ``t_start * t_end_ratio`` with progress = the larger of the fractions
    of steps and of time used. Greedy mode takes the best of each batch if it lowers the energy; without
    a ``time_limit`` it stops early after many batches without improvement.
    ``history`` (a list) gets {"step", "seconds", "error"} entries now and then; ``clock`` returns
    seconds since the run began. Returns the number of candidate swaps tried.
    """
    start = time.perf_counter()
    clock = clock or (lambda: time.perf_counter() - start)
    if steps is None and time_limit is None:
        raise ValueError("give steps or time_limit")
    limit = state.batch_limit()
    tried, acceptance = 0, 1.0
    temperature0 = t_start
    idle_batches, last_record = 0, -1.0
    began = clock()
    while True:
        elapsed = clock() - began
        progress = max(tried / steps if steps else 0.0, elapsed / time_limit if time_limit else 0.0)
        if progress >= 1:
            break
        if history is not None and clock() - last_record > 0.25:
            history.append({"step": step_offset + tried, "seconds": clock(), "error": state.energy})
            last_record = clock()
            if on_progress:
                on_progress(progress, state.energy)
        if greedy:
            k = min(limit, 256)
        else:
            k = int(min(limit, 256, max(1, math.ceil(1.5 / max(acceptance, 1e-4)))))
        if steps:
            k = max(1, min(k, steps - tried))
        a, b, p, q = state.propose(rng, k)
        if not len(p):
            break
        change, counts = state.energy_changes(a, b, p, q)
        if greedy:
            i = int(np.argmin(change))
            tried += k
            if change[i] < -1e-12 * max(state.energy, 1e-300):
                state.apply(a, b, p[i], q[i], counts(i))
                idle_batches = 0
            else:
                idle_batches += 1
                if idle_batches >= 50 and time_limit is None:  # under a time budget: keep looking till it ends
                    break
            continue
        if temperature0 is None:
            temperature0 = initial_temperature(state, rng)
        temperature = temperature0 * t_end_ratio**progress
        with np.errstate(over="ignore"):
            accept = (change <= 0) | (rng.random(len(change)) < np.exp(-np.maximum(change, 0) / temperature))
        hits = np.flatnonzero(accept)
        used = int(hits[0]) + 1 if len(hits) else len(change)
        tried += used
        acceptance = 0.9 * acceptance + 0.1 * (len(hits) > 0) / used if used else acceptance
        if len(hits):
            i = int(hits[0])
            state.apply(a, b, p[i], q[i], counts(i))
    if history is not None:
        history.append({"step": step_offset + tried, "seconds": clock(), "error": state.energy})
    return tried


def initial_temperature(state: SwapState, rng, factor=1.0, candidates=128):
    """A starting temperature: ``factor`` x the median |energy change| of random swaps from ``state``."""
    a, b, p, q = state.propose(rng, min(candidates, state.batch_limit()))
    if not len(p):
        return 1e-300
    change, _ = state.energy_changes(a, b, p, q)
    spread = np.abs(change[change != 0])
    return max(factor * float(np.median(spread)) if len(spread) else 1e-12, 1e-300)
