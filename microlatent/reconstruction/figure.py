"""Figure of reconstructions: target, reconstruction, both statistics maps and their difference."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from microlatent.plotting import save_figure  # noqa: E402
from microlatent.reconstruction.target import TargetStatistics  # noqa: E402


def plot_reconstructions(target: TargetStatistics, reconstructions, path, phase=None, title=None):
    """One row per reconstruction: the target image (when known), the reconstruction, the target's
    f(phase, phase | r), the reconstruction's, and reconstruction minus target. ``phase`` defaults
    to 1. Returns the path written (PNG, atomically)."""
    phase = 1 if phase is None else int(phase)
    C = target.n_phases
    ry, rx = target.offsets
    extent = (rx[0] - 0.5, rx[-1] + 0.5, ry[-1] + 0.5, ry[0] - 0.5)
    f_target = target.pair_map(phase, phase)
    rows = max(1, len(reconstructions))
    fig, axes = plt.subplots(rows, 5, figsize=(13.5, 2.7 * rows + 0.4), squeeze=False)
    vmax = float(max(f_target.max(), 1e-12))
    image_kw = {"cmap": "gray" if C == 2 else "viridis", "vmin": 0, "vmax": C - 1, "interpolation": "nearest"}
    for i in range(rows):
        ax_target, ax_recon, ax_ft, ax_fr, ax_diff = axes[i]
        if target.image is not None:
            ax_target.imshow(target.image, **image_kw)
            ax_target.set_title("target" if target.name == "target" else f"target {target.name}", fontsize=8)
        else:
            ax_target.text(0.5, 0.5, "statistics only\n(no target image)", ha="center", va="center", fontsize=9)
            ax_target.set_title("target" if target.name == "target" else f"target {target.name}", fontsize=8)
        ax_target.set_axis_off()
        shown = ax_ft.imshow(f_target, cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
        ax_ft.set_title(f"target f({phase},{phase}|r)", fontsize=8)
        fig.colorbar(shown, ax=ax_ft, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        if i < len(reconstructions):
            r = reconstructions[i]
            ax_recon.imshow(r.image, **image_kw)
            vf = ", ".join(f"{v:.3f}" for v in r.volume_fractions[1:] if C > 2) or f"{r.volume_fractions[1]:.3f}"
            ax_recon.set_title(f"{r.method}, vf {vf}\nerror {r.error:.3g}", fontsize=8)
            f_recon = target.statistics_of(
                r.image[None].astype(np.int64) if C > 2 else r.image[None].astype(np.float64)
            )
            f_recon = f_recon[0, phase * C + phase]
            shown = ax_fr.imshow(f_recon, cmap="viridis", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
            fig.colorbar(shown, ax=ax_fr, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            diff = f_recon - f_target
            bound = float(max(np.abs(diff).max(), 1e-12))
            shown = ax_diff.imshow(diff, cmap="RdBu_r", vmin=-bound, vmax=bound, extent=extent, interpolation="nearest")
            fig.colorbar(shown, ax=ax_diff, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax_recon.set_axis_off()
        ax_fr.set_title(f"reconstruction f({phase},{phase}|r)", fontsize=8)
        ax_diff.set_title("reconstruction - target", fontsize=8)
        for ax in (ax_ft, ax_fr, ax_diff):
            ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
