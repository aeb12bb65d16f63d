"""Seconds per image of ``microlatent.properties`` (matrix-free CG, FFT-preconditioned) against a
scipy.sparse direct solve of the same pixel-FEM problem, in the same process on the same images.

    python benchmarks/homogenize.py [--size 256] [--repeats 3] [--images grf,discs] [--no-sparse]

For each image (a thresholded Gaussian random field, MICRO2D "GRF"-like, and random discs; volume
fraction ~0.4; phase 0 E = 10, phase 1 E = 1, nu = 0.3, plane stress; k = 10 / 1):

    cg-fft float32 / float64   homogenize_elastic (3 load cases) and homogenize_thermal (2), tol 1e-6
    sparse (reference)         microlatent.properties.sparse: assembly + SuperLU (splu) + solves

Times are the median of ``--repeats`` runs after one warm-up (wall clock, and process CPU time: the
machine is shared, CPU time is the steadier number). The tables give the CG iterations (max over load
cases), the speed-up over the sparse solve and the largest relative difference of the effective
properties (Ex, Ey, Gxy, nu_xy, nu_yx; kx, ky) to it. Runs in about a minute at 256 x 256 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmark this checkout, installed or not

from microlatent.properties import homogenize_elastic, homogenize_thermal  # noqa: E402
from microlatent.properties.sparse import sparse_elastic, sparse_thermal  # noqa: E402

MECH = ("Ex", "Ey", "Gxy", "nu_xy", "nu_yx")
THERM = ("kx", "ky")


def grf_image(n, fraction=0.4, length=8.0, seed=0):
    """Periodic Gaussian random field (Gaussian spectrum, correlation ~``length`` px) thresholded at
    the ``fraction`` quantile: phase 1 = the lowest ``fraction`` of the field."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n)
    kk = k[:, None] ** 2 + k[None, :] ** 2
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.exp(-2 * (np.pi * length) ** 2 * kk / 4)).real
    return (field < np.quantile(field, fraction)).astype(np.uint8)


def disc_image(n, fraction=0.4, radius=None, seed=1):
    """Random overlapping periodic discs of phase 1 added until ``fraction`` is reached."""
    rng = np.random.default_rng(seed)
    radius = radius or n / 32
    x = np.arange(n) + 0.5
    image = np.zeros((n, n), np.uint8)
    while image.mean() < fraction:
        cx, cy = rng.random(2) * n
        dx = (x[:, None] - cx + n / 2) % n - n / 2
        dy = (x[None, :] - cy + n / 2) % n - n / 2
        image[dx * dx + dy * dy < radius * radius] = 1
    return image


def timed(fn, repeats):
    fn()  # warm-up (and the result)
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def max_rel(result, ref, keys):
    return max(abs(result[k] / ref[k] - 1.0) for k in keys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", default="grf,discs", help="comma-separated: grf, discs")
    parser.add_argument("--no-sparse", action="store_true", help="skip the sparse direct solve")
    args = parser.parse_args(argv)

    makers = {"grf": grf_image, "discs": disc_image}
    names = [s.strip() for s in args.images.split(",") if s.strip()]
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"{args.size} x {args.size} images; median of {args.repeats} after a warm-up; seconds per image (wall / CPU)\n"
    )

    header = (
        f"{'image':<6} {'problem':<8} {'solver':<14} {'wall s':>8} {'cpu s':>8} {'iters':>6} "
        f"{'vs sparse':>10} {'max rel diff':>13}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        image = makers[name](args.size)
        for problem, keys, cg, ref_fn in (
            ("elastic", MECH, homogenize_elastic, sparse_elastic),
            ("thermal", THERM, homogenize_thermal, sparse_thermal),
        ):
            ref = None
            rows = []
            for dtype in (np.float32, np.float64):
                wall, cpu, out = timed(lambda: cg(image, dtype=dtype), args.repeats)
                rows.append((f"cg-fft {np.dtype(dtype).name}", wall, cpu, out))
            if not args.no_sparse:
                w0, c0 = time.perf_counter(), time.process_time()
                ref = ref_fn(image)
                sp_wall, sp_cpu = time.perf_counter() - w0, time.process_time() - c0
            for label, wall, cpu, out in rows:
                ratio = f"{sp_wall / wall:9.1f}x" if ref else f"{'-':>10}"
                diff = f"{max_rel(out, ref, keys):13.2e}" if ref else f"{'-':>13}"
                print(
                    f"{name:<6} {problem:<8} {label:<14} {wall:8.3f} {cpu:8.3f} {out['iterations']:6d} {ratio} {diff}"
                )
            if ref:
                print(
                    f"{name:<6} {problem:<8} {'sparse splu':<14} {sp_wall:8.3f} {sp_cpu:8.3f} {'-':>6} "
                    f"{'1.0x':>10} {'(reference)':>13}"
                )
        vf = image.mean()
        res = homogenize_elastic(image, dtype=np.float64)
        print(f"{name:<6} vf1 = {vf:.3f}: " + ", ".join(f"{k} = {res[k]:.5f}" for k in MECH))
        print()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
