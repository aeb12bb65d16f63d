"""Throughput of ``microlatent.stats.two_point`` against a plain NumPy float64 FFT baseline and PyMKS.

    python benchmarks/stats.py [--n 64] [--size 224] [--repeats 5] [--big [--big-n 1024]]

A batch of N random binary images (volume fraction ~0.4, fixed seed) is turned into 2-point statistics,
periodic and non-periodic, pairs "one" ((1,1): what the floor computes), "auto" ((0,0), (1,1)) and "all"
(every ordered pair), by

    microlatent/numpy-f32   two_point(float32 ndarray)           (ndarray out)
    microlatent/torch-f32   two_point(float32 tensor)            (tensor out; conversion not timed)
    microlatent/torch-f64   two_point(float64 tensor)
    numpy-f64 (baseline)    numpy_two_point below: np.fft.rfft2 per phase, conj product, irfft2, fftshift
    fft floor (torch-f32)   the bare torch rfft2 + irfft2 round trip of the batch at the padded size,
                            in the chunk size (images per call) at which it runs fastest here
                            (no phases, pairs, centring or normalisation): no two_point can beat it
    pymks-f64               pymks.two_point_stats (0.4.1), one call per pair, if PyMKS imports

Before anything is timed every implementation is checked against microlatent (the check run is also
the warm-up); the script exits with status 1 if any disagrees. The table gives images/s from the
median of the timed repeats (and the best), and the ratio to the NumPy baseline of the same case, run
in the same process. Repeats stop early once a case has used --budget seconds (at least 2 timed calls
each); the NumPy baseline and PyMKS, which work in blocks of 16 images or image by image, run on the
first --slow-n images. The machine is shared: the load average and this process's CPU time are
printed, and timings taken at a load above the number of cores are not comparable between runs.
--big also measures, in fresh subprocesses, the peak resident memory
(ru_maxrss delta) of one large non-periodic "all" call, next to the size of its output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmark this checkout, installed or not

from microlatent.stats import two_point  # noqa: E402
from microlatent.stats.peers import import_pymks  # noqa: E402

PAIRS = {"one": [(1, 1)], "auto": [(0, 0), (1, 1)], "all": [(0, 0), (0, 1), (1, 0), (1, 1)]}
SEED = 0
VOLUME_FRACTION = 0.4


# --------------------------------------------------------------------------------------------------
# Independent implementations
# --------------------------------------------------------------------------------------------------


def numpy_two_point(x, periodic, pairs, chunk=16):
    """Baseline: f(h, h'|r) = sum_x m(h, x) m(h', x + r) / n(r) for a 2-phase batch (N, H, W) of phase-1
    probabilities, in NumPy float64 with real FFTs (rfft2/irfft2). Periodic: H x W circular correlation, / HW.
    Non-periodic: zero-pad to (2H-1) x (2W-1) (no wrap-around at any offset) and divide by the count
    map n(r), the same correlation of the all-ones mask. Maps are fftshifted: zero offset at
    [H'//2, W'//2], as in microlatent. Processed ``chunk`` images at a time to bound memory."""
    x = np.asarray(x, dtype=np.float64)
    n_images, height, width = x.shape
    shape = (height, width) if periodic else (2 * height - 1, 2 * width - 1)

    def correlate(spec_a, spec_b):
        return np.fft.fftshift(np.fft.irfft2(np.conj(spec_a) * spec_b, s=shape), axes=(-2, -1))

    if periodic:
        count = float(height * width)
    else:
        ones = np.fft.rfft2(np.ones((height, width)), s=shape)
        count = correlate(ones, ones)
    out = np.empty((n_images, len(pairs), *shape))
    for start in range(0, n_images, chunk):
        block = x[start : start + chunk]
        phases = {0: 1.0 - block, 1: block}
        spectra = {h: np.fft.rfft2(phases[h], s=shape) for h in sorted({h for p in pairs for h in p})}
        for k, (h, h2) in enumerate(pairs):
            out[start : start + chunk, k] = correlate(spectra[h], spectra[h2]) / count
    return out


def _pymks_or_skip():
    pymks, note = import_pymks()
    return pymks, note if pymks is not None else f"{note}: skipped"


def pymks_cutoff(height, width):
    """PyMKS's default (and largest) cutoff c: it keeps offsets -c..c along both axes."""
    return int((min(height, width) - 1) / 2)


def pymks_two_point(pymks, x, periodic, pairs):
    """PyMKS two_point_stats, one call per pair (h, h'): two_point_stats(m_h, m_h') correlates
    arr1 at x with arr2 at x + r, f(h, h'|r) in microlatent's order. Output (N, K, 2c+1, 2c+1)."""
    x = np.asarray(x, dtype=np.float64)
    phases = {0: 1.0 - x, 1: x}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = [pymks.two_point_stats(phases[h], phases[h2], periodic_boundary=periodic) for h, h2 in pairs]
    return np.stack([np.asarray(m) for m in maps], axis=1)


def central(maps, keep):
    """The central keep x keep offsets of centred maps (zero offset at [H'//2, W'//2]), as PyMKS's
    center_slice takes them: indices H'//2 - keep//2 .. H'//2 + keep//2 for odd keep."""
    top, left = maps.shape[-2] // 2 - keep // 2, maps.shape[-1] // 2 - keep // 2
    return maps[..., top : top + keep, left : left + keep]


def count_weight(height, width, periodic):
    """n(r) / (H W): the fraction of pixels that pair at each offset (1 for periodic maps). An FFT error
    of fixed size in the raw sum S(r) shows in f = S / n(r) scaled by 1 / n(r); multiplying a
    difference of maps by this weight turns it into an error per pixel of the image."""
    if periodic:
        return np.ones((height, width))
    ry = np.arange(-(height - 1), height)
    rx = np.arange(-(width - 1), width)
    return ((height - np.abs(ry))[:, None] * (width - np.abs(rx))[None, :]) / (height * width)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def time_calls(fn, repeats, budget):
    """Seconds of each of up to ``repeats`` calls of fn (already warmed up). Stops early once ``budget``
    seconds have been spent, after at least 2 calls, to keep slow cases short."""
    times = []
    spent = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if spent > budget and len(times) >= 2:
            break
    return times


def as_numpy(out):
    return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def max_differences(out, ref32, ref64, weight):
    """(max |out - ref32|, max |out - ref32| * weight, max |out - ref64|), image by image to keep the
    float64 temporaries small."""
    d32 = w32 = d64 = 0.0
    for got, r32, r64 in zip(out, ref32, ref64):
        diff = np.abs(got.astype(np.float64) - r32)
        d32, w32 = max(d32, float(diff.max())), max(w32, float((diff * weight).max()))
        d64 = max(d64, float(np.abs(got.astype(np.float64) - r64).max()))
    return d32, w32, d64


FLOOR_CHUNKS = (1, 2, 4, 8, 16, None)  # None: the whole batch in one call


def fft_floor(x, periodic, chunk=None):
    """The least any FFT-based two_point must do: rfft2 of the batch at the size microlatent pads the
    full map to, and irfft2 of |X|^2 (one pair's worth), ``chunk`` images per call (None: all)."""
    from microlatent.stats.correlation import _fast_size

    height, width = x.shape[-2:]
    padded = (height, width) if periodic else (_fast_size(2 * height - 1), _fast_size(2 * width - 1))
    step = chunk or len(x)
    for start in range(0, len(x), step):
        spectrum = torch.fft.rfftn(x[start : start + step], s=padded, dim=(-2, -1))
        torch.fft.irfftn(spectrum.conj() * spectrum, s=padded, dim=(-2, -1))


def fastest_floor_chunk(x, periodic):
    """The chunk size (from FLOOR_CHUNKS) at which fft_floor runs fastest on this machine: the floor is
    the best the FFT library can do, so cache-friendly chunks count, as they do in two_point."""

    def seconds(chunk):
        fft_floor(x, periodic, chunk)  # warm-up
        return min(time_calls(lambda: fft_floor(x, periodic, chunk), 3, 0.5))

    return min(FLOOR_CHUNKS, key=seconds)


def run_case(impls, x, periodic, pair_name, args, rows):
    """Check every implementation against microlatent on this case, then time each. Returns False if
    a check failed. The first two implementations must be microlatent on float32 and float64 input:
    their outputs are the references."""
    _, height, width = x.shape
    pairs = PAIRS[pair_name]
    weight_full = count_weight(height, width, periodic)
    ok = True
    ref32 = ref64 = None
    print(
        f"\n[check] periodic={periodic} pairs={pair_name}: vs microlatent float32 "
        f"(tol {args.tol32:g} on max|diff|*n(r)/HW) and float64 (tol {args.tol64:g} on max|diff|)"
    )
    for name, fn, precision, keep, n_images in impls:
        out = as_numpy(fn(periodic, pairs, pair_name))  # check run = warm-up
        if ref32 is None:
            ref32 = out
        elif ref64 is None:
            ref64 = out
        r32, r64, weight = ref32[:n_images], ref64[:n_images] if ref64 is not None else out, weight_full
        if keep is not None:  # PyMKS keeps the central (2c+1) x (2c+1) offsets
            r32, r64, weight = central(r32, keep), central(r64, keep), central(weight_full, keep)
        if out.shape != r32.shape:
            print(f"  {name:24s} FAIL: shape {out.shape}, expected {r32.shape}")
            ok = False
            continue
        d32, w32, d64 = max_differences(out, r32, r64, weight)
        verdict = w32 <= args.tol32
        text32 = "(reference)" if out is ref32 else f"{d32:.2e} (x n(r)/HW: {w32:.2e})"
        text64 = "(reference)" if out is ref32 or out is ref64 else f"{d64:.2e}"
        line = f"  {name:22s} {str(out.shape):>18s} max|diff| vs ml-f32 {text32}; vs ml-f64 {text64}"
        if precision == "f64":
            verdict = verdict and d64 <= args.tol64
        print(line + ("  ok" if verdict else "  FAIL"))
        ok = ok and verdict
        del out
    del ref32, ref64
    if not ok:
        return False

    baseline_rate = floor_rate = None
    xt = torch.from_numpy(x)
    floor_chunk = fastest_floor_chunk(xt, periodic)
    floor_name = f"fft floor (f32, {floor_chunk or len(x)}/call)"
    timed = [*impls, (floor_name, lambda p, pl, pn: fft_floor(xt, p, floor_chunk), "f32", None, len(x))]
    for name, fn, _, _, n_images in timed:
        times = time_calls(lambda: fn(periodic, pairs, pair_name), args.repeats, args.budget)
        median, best = statistics.median(times), min(times)
        rate = n_images / median
        if name.startswith("numpy-f64"):
            baseline_rate = rate
        if name.startswith("fft floor"):
            floor_rate = rate
        rows.append([name, periodic, pair_name, n_images, rate, n_images / best, len(times), None, None])
    for row in rows:
        if row[1] == periodic and row[2] == pair_name:
            row[7], row[8] = row[4] / baseline_rate, floor_rate / row[4]
    return True


# --------------------------------------------------------------------------------------------------
# Peak memory of one large call, in a fresh process
# --------------------------------------------------------------------------------------------------


def current_rss():
    """Resident set size of this process now, in bytes (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Largest resident set size seen while running, sampled every ``interval`` seconds. ru_maxrss
    alone is not trusted: the kernel updates the high-water mark only on some of the paths that give
    memory back, and it was seen to miss most of a 3 GB peak here."""

    def __init__(self, interval=0.002):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, current_rss(), threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, current_rss())
        return self.peak


def memory_child(n_images, size, dtype, threads):
    """Runs in a subprocess: resident memory before and at the peak of one non-periodic 'all' call."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(SEED)
    x = np.empty((n_images, size, size), dtype=dtype)
    for i in range(0, n_images, 64):  # in slices, so that no big temporary raises the high-water mark
        x[i : i + 64] = rng.random((len(x[i : i + 64]), size, size), dtype=np.float32) < VOLUME_FRACTION
    two_point(x[:2], periodic=False, pairs="all")  # load kernels and allocator state on a tiny call
    rss_before = current_rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    out = two_point(x, periodic=False, pairs="all")
    seconds = time.perf_counter() - start
    sampled_peak = sampler.stop()
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "rss_before": rss_before,
                "sampled_delta": sampled_peak - rss_before,
                "maxrss_delta": maxrss_after - maxrss_before,
                "rss_after": current_rss() - rss_before,
                "seconds": seconds,
                "out_bytes": out.nbytes,
                "out_shape": list(out.shape),
                "in_bytes": x.nbytes,
            }
        )
    )


def measure_memory(args, threads):
    print(
        f"\nPeak memory of one call, fresh process each: two_point(x, periodic=False, pairs='all'), "
        f"{args.size}x{args.size} images"
    )
    print(
        f"{'input':14s} {'output shape':>21s} {'output MiB':>10s} {'peak MiB':>9s} {'peak/output':>11s} "
        f"{'(sampled':>9s} {'maxrss)':>8s} {'after MiB':>9s} {'seconds':>8s} {'images/s':>9s}"
    )
    cases = [
        (dtype, n)
        for dtype in (("float32", "float64") if args.big_float64 else ("float32",))
        for n in (max(1, args.big_n // 4), args.big_n)
    ]
    for dtype, n_images in cases:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-child",
            dtype,
            "--big-n",
            str(n_images),
            "--size",
            str(args.size),
            "--threads",
            str(threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {dtype}: child failed (status {proc.returncode}):\n{proc.stderr[-2000:]}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        mib = 1024**2
        peak = max(res["sampled_delta"], res["maxrss_delta"])
        print(
            f"{'ndarray ' + dtype:14s} {str(tuple(res['out_shape'])):>21s} {res['out_bytes'] / mib:10.0f} "
            f"{peak / mib:9.0f} {peak / res['out_bytes']:11.2f} {res['sampled_delta'] / mib:9.0f} "
            f"{res['maxrss_delta'] / mib:8.0f} {res['rss_after'] / mib:9.0f} {res['seconds']:8.1f} "
            f"{n_images / res['seconds']:9.1f}"
        )
    print(
        "(peak = rise of resident memory during the call over what the process held before it (input "
        "included), the larger of a 2 ms RSS sampler and the ru_maxrss high-water mark; 'after' = what "
        "stays resident with the output; the output alone needs 'output MiB'.)"
    )


# --------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64, help="images in the batch (default 64)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    parser.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="stop repeating a case after this many seconds, once 2 calls are timed "
        "(default 1; 0 = always 2 calls, large = always --repeats)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)"
    )
    parser.add_argument("--no-pymks", action="store_true", help="leave PyMKS out even if installed")
    parser.add_argument(
        "--slow-n",
        type=int,
        default=8,
        help="the NumPy baseline and PyMKS run on the first this many images only "
        "(default 8; both work image by image or in blocks of up to 16, so images/s "
        "does not depend on N beyond that)",
    )
    parser.add_argument(
        "--big", action="store_true", help="also measure peak memory of a large non-periodic 'all' call"
    )
    parser.add_argument("--big-n", type=int, default=1024, help="images in the --big batch (default 1024)")
    parser.add_argument(
        "--big-float64",
        action="store_true",
        help="--big also with float64 input (output twice as large: 6.2 GiB at the defaults)",
    )
    parser.add_argument(
        "--tol32",
        type=float,
        default=1e-6,
        help="max |diff| * n(r)/HW allowed against microlatent float32 (default 1e-6)",
    )
    parser.add_argument(
        "--tol64",
        type=float,
        default=1e-9,
        help="max |diff| allowed for float64 implementations against microlatent float64 (default 1e-9)",
    )
    parser.add_argument("--memory-child", choices=["float32", "float64"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    threads = args.threads or len(os.sched_getaffinity(0))
    if args.memory_child:
        memory_child(args.big_n, args.size, np.dtype(args.memory_child), threads)
        return 0
    torch.set_num_threads(threads)

    rng = np.random.default_rng(SEED)
    x = (rng.random((args.n, args.size, args.size), dtype=np.float32) < VOLUME_FRACTION).astype(np.float32)
    xt32 = torch.from_numpy(x)
    xt64 = xt32.double()

    pymks, pymks_note = (None, "PyMKS left out (--no-pymks)") if args.no_pymks else _pymks_or_skip()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()} (NumPy FFT is single-threaded), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"batch: {args.n} binary {args.size}x{args.size} images, volume fraction {x.mean():.3f}, seed {SEED}; "
        f"repeats {args.repeats} (budget {args.budget:g} s per case)"
    )
    print(pymks_note)

    n = args.n
    n_slow = min(n, args.slow_n)
    x_slow = x[:n_slow]
    impls = [
        # name, fn(periodic, pairs, pair_name), precision, central crop (PyMKS) or None, images.
        # The first two are the references of the checks (see run_case).
        ("microlatent/numpy-f32", lambda p, pl, pn: two_point(x, periodic=p, pairs=pl), "f32", None, n),
        ("microlatent/torch-f64", lambda p, pl, pn: two_point(xt64, periodic=p, pairs=pl), "f64", None, n),
        ("microlatent/torch-f32", lambda p, pl, pn: two_point(xt32, periodic=p, pairs=pl), "f32", None, n),
        ("numpy-f64 (baseline)", lambda p, pl, pn: numpy_two_point(x_slow, p, pl), "f64", None, n_slow),
    ]
    if pymks is not None:
        keep = 2 * pymks_cutoff(args.size, args.size) + 1
        impls.append(("pymks-f64", lambda p, pl, pn: pymks_two_point(pymks, x_slow, p, pl), "f64", keep, n_slow))
        print(
            f"PyMKS maps keep offsets -{keep // 2}..{keep // 2} ({keep}x{keep}): compared with the same "
            f"central offsets of microlatent's maps"
        )
    print(
        f"NumPy baseline{' and PyMKS' if pymks is not None else ''}: first {n_slow} images of the batch "
        f"(--slow-n); rates are per image"
    )

    rows = []
    start = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for periodic in (True, False):
        for pair_name in ("one", "auto", "all"):
            if not run_case(impls, x, periodic, pair_name, args, rows):
                print(
                    "\nFAILED: an implementation disagrees with microlatent (see above); stopped before timing "
                    "this case."
                )
                return 1

    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"\n{'implementation':24s} {'periodic':>8s} {'pairs':>5s} {'N':>5s} {'images/s':>10s} {'best':>10s} "
        f"{'calls':>5s} {'vs numpy-f64':>12s} {'time/floor':>10s}"
    )
    for name, periodic, pair_name, n_images, rate, best, calls, ratio, over_floor in rows:
        print(
            f"{name:24s} {str(periodic):>8s} {pair_name:>5s} {n_images:5d} {rate:10.1f} {best:10.1f} "
            f"{calls:5d} {ratio:11.2f}x {over_floor:9.2f}x"
        )
    print(
        "(vs numpy-f64: speed over the NumPy rfft2 baseline; time/floor: time per image over the bare torch "
        "rfft2 round trip, 1.00x = nothing but the FFTs.)"
    )
    print(
        f"(images/s from the median call; 'best' from the fastest; PyMKS output is the central "
        f"{2 * pymks_cutoff(args.size, args.size) + 1}^2 offsets only.) "
        f"Timing section: {time.perf_counter() - start:.1f} s wall, "
        f"{usage_after.ru_utime - usage.ru_utime:.1f} s user + {usage_after.ru_stime - usage.ru_stime:.1f} s "
        f"system CPU; load average {os.getloadavg()[0]:.2f}"
    )

    if args.big:
        measure_memory(args, threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
