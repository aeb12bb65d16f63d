"""The measured frontier of issue 11's unmet targets, one panel per paper: every configuration tried
(hashemi.csv, cai.csv; each row names its command) against the target region. Points are numbered;
the numbers are listed under each panel.

    python docs/frontier/plot.py    # -> docs/frontier/frontier.png
"""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def _read(name):
    with open(HERE / name, newline="") as f:
        return list(csv.DictReader(f))


def _points(ax, table, x, y):
    """Numbered points (the shipped configurations as red stars; those started from a data-space model
    orange) and their key, under the panel."""
    key = []
    for number, row in enumerate(table, 1):
        shipped = row["label"].startswith("shipped")
        px, py = float(row[x]), float(row[y])
        colour = "C3" if shipped else "C1" if "data-space start" in row["label"] else "C0"
        ax.scatter(px, py, marker="*" if shipped else "o", s=160 if shipped else 35, color=colour)
        ax.annotate(str(number), (px, py), fontsize=8, xytext=(4, 3), textcoords="offset points")
        seeds = row["seeds"].split()
        key.append(
            f"{number}. {row['label']} "
            + (f"(mean of seeds {', '.join(seeds)})" if len(seeds) > 1 else f"(seed {seeds[0]})")
        )
    ax.text(0, -0.13, "\n".join(key), transform=ax.transAxes, va="top", fontsize=7.5, family="monospace")


def main():
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 13.5))
    left.axvspan(0, 17, ymin=0.63 / 1.05, color="C2", alpha=0.15, label="target: <= 17 % and >= 0.63")
    left.scatter([17], [0.63], marker="D", color="C2", label="Hashemi et al. (mean; 224 px, training images)")
    _points(left, _read("hashemi.csv"), "volume_fraction_difference_median_pct", "line_count_right")
    left.set(
        xlim=(0, 105),
        ylim=(0, 1.05),
        xlabel="volume-fraction difference, median over test images (%)",
        ylabel="line count right (share of test images)",
        title="Hashemi lines, SS-VAE at 64 px: from scratch (blue) a lower volume-fraction\n"
        "difference cost line count; from the data-space model (orange) it does not",
    )
    left.legend(loc="upper right", fontsize=8)

    right.axvspan(-60, -30, ymin=(0.80 - 0.2) / 0.8, color="C2", alpha=0.15, label="target: <= -30 % and >= 0.80")
    right.axvline(-41, color="C1", ls="--", lw=1, label="the MSE model given each input's volume fraction")
    right.axvline(0, color="grey", lw=0.5)
    right.axhline(0.5, color="grey", lw=0.5)
    _points(right, _read("cai.csv"), "median_excess_change_pct", "win_share")
    right.set(
        xlim=(-60, 20),
        ylim=(0.2, 1.0),
        xlabel="median change of the test excess CESS, finetune vs its MSE model (%)",
        ylabel="share of test images where the finetune's excess CESS is lower",
        title="Cai MICRO2D-like at 64 px, CESS finetunes vs MSE:\nno finetune reaches the volume-fraction ceiling",
    )
    right.legend(loc="upper right", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.93, bottom=0.46, wspace=0.2)
    fig.savefig(HERE / "frontier.png", dpi=100)


if __name__ == "__main__":
    main()
