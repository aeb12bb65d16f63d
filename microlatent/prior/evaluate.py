"""Measure a latent prior: realism per class against held-out real images, and, when it is conditioned
on properties, how close solver-computed properties of its samples come to the targets asked for.

    result = evaluate_prior(run, prior, "data.h5", n=64)
    write_evaluation(result, "runs/cai/prior/evaluation")   # realism.json, report.md, one figure per class
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from microlatent.prior.fit import PROPERTY_GUIDANCE, check_vae, generate
from microlatent.prior.realism import StatisticsSpace, distances


def _real(run, data, part, classes, limit):
    """{class: (N, H, W) float64 images at the model's size (K phases: labels)} of one split part."""
    from microlatent.data.split import read_split
    from microlatent.evaluation.inference import seen_images

    samples = read_split(data, part, run.split.with_classes(classes), limit_per_class=limit)
    return {name: seen_images(run, [samples.images[i] for i in samples.where(name)]) for name in samples.class_names()}


def evaluate_prior(
    run,
    prior,
    data,
    n=64,
    steps=50,
    guidance=1.0,
    seed=0,
    targets_per_property=8,
    progress=None,
    property_guidance=PROPERTY_GUIDANCE,
):
    """Realism per class, class accuracy and (with properties) FE-verified targeted generation.

    Per class of the prior: ``n`` class-conditional samples, ``n`` decoded N(0, I) draws and the
    real test images (up to ``n``) are compared to the real training images of the class (up to ``n``,
    the floor's reference set). Returns a dict: ``classes`` {name: {"generated", "normal", "floor":
    distances, "accuracy_generated", "accuracy_real"}}, ``summary`` (medians over classes of the
    ratios generated / floor and normal / generated of the Fréchet distance), and ``targeted`` (per
    property: targets, achieved (T, n_per_target), nRMSE by the training labels' std without any
    selection, diversity).

    K-phase VAEs: samples are the most probable phase per pixel, realism is measured on every phase
    (:mod:`microlatent.prior.realism`), and targeted samples are solved with the prior's K moduli.
    """
    from microlatent.evaluation.inference import decode, phase_labels, roundtrip

    say = progress or (lambda message: None)
    check_vae(prior, run)
    n_phases = run.model.n_phases
    train = _real(run, data, "train", prior.classes, n)
    test = _real(run, data, "test", prior.classes, n)
    reference_images = np.concatenate(list(train.values()))
    reference_classes = np.concatenate([[c] * len(v) for c, v in train.items()])
    space = StatisticsSpace(reference_images, reference_classes, n_phases=n_phases)
    rng = np.random.default_rng(seed + 104729)
    normal = phase_labels(decode(run, rng.standard_normal((n, *prior.net.config["latent_shape"])).astype(np.float32)))
    normal = normal.astype(np.float64)
    per_class, samples = {}, {}
    for name in prior.classes:
        if name not in train or name not in test:
            continue
        say(f"{name}: {n} samples")
        images, _, _ = generate(run, prior, n, class_name=name, steps=steps, guidance=guidance, seed=seed)
        images = images.astype(np.float64)
        samples[name] = images
        _, recon = roundtrip(run, list(train[name].astype(np.float32)))
        per_class[name] = {
            "generated": distances(space, images, test[name]),
            "normal": distances(space, normal, test[name]),
            "floor": distances(space, train[name], test[name]),
            # the training images through the VAE (encode, decode, threshold): what a perfect prior
            # could reach with this decoder
            "decoder": distances(space, phase_labels(recon).astype(np.float64), test[name]),
            "accuracy_generated": float(np.mean(space.classify(images) == name)),
            "accuracy_real": float(np.mean(space.classify(test[name]) == name)),
            "n_generated": len(images),
            "n_real": [len(train[name]), len(test[name])],
        }
    ratios = {
        "generated_over_floor": [
            r["generated"]["frechet"] / max(r["floor"]["frechet"], 1e-12) for r in per_class.values()
        ],
        "normal_over_generated": [
            r["normal"]["frechet"] / max(r["generated"]["frechet"], 1e-12) for r in per_class.values()
        ],
        "decoder_over_floor": [r["decoder"]["frechet"] / max(r["floor"]["frechet"], 1e-12) for r in per_class.values()],
        "accuracy_ratio": [r["accuracy_generated"] / max(r["accuracy_real"], 1e-12) for r in per_class.values()],
    }
    summary = {k: float(np.median(v)) for k, v in ratios.items()}
    summary["accuracy_generated"] = float(np.mean([r["accuracy_generated"] for r in per_class.values()]))
    summary["accuracy_real"] = float(np.mean([r["accuracy_real"] for r in per_class.values()]))
    result = {
        "classes": per_class,
        "summary": summary,
        "settings": {
            "n": n,
            "steps": steps,
            "guidance": guidance,
            "property_guidance": property_guidance,
            "seed": seed,
            "pca_components": len(space.pca.components_),
            "n_phases": n_phases,
        },
        "samples": samples,
        "real": test,
    }
    if prior.properties:
        result["targeted"] = targeted_generation(
            run, prior, targets_per_property, max(8, n // 8), steps, property_guidance, seed, say
        )
    return result


def targeted_generation(
    run, prior, n_targets=8, per_target=8, steps=50, property_guidance=PROPERTY_GUIDANCE, seed=0, say=None
):
    """For each property of the prior: ``n_targets`` targets spanning its training labels (the midpoints
    of ``n_targets`` equal bins between their min and max, as ``design search --span``), ``per_target``
    samples each (no class given, ``property_guidance`` on the target), solved by FE. nRMSE over every
    sample (no selection) by the labels' std; diversity = mean fraction of differing pixels between two
    samples of the same target."""
    from microlatent.design.regression import PROPERTY_NAMES
    from microlatent.properties.homogenize import homogenize_elastic

    say = say or (lambda message: None)
    phases = prior.phases or {"E": (10.0, 1.0), "nu": (0.3, 0.3), "plane": "stress"}
    out = {}
    for k, prop in enumerate(prior.properties):
        std = prior.property_std[k]
        low, high = prior.property_range[k]
        targets = low + (np.arange(n_targets) + 0.5) / n_targets * (high - low)
        achieved, diversity = [], []
        for j, target in enumerate(targets):
            say(f"{prop} = {target:.4g}: {per_target} samples through the solver")
            images, _, _ = generate(
                run,
                prior,
                per_target,
                targets={prop: target},
                steps=steps,
                seed=seed + j,
                property_guidance=property_guidance,
            )
            r = homogenize_elastic(
                images, E=tuple(phases["E"]), nu=tuple(phases["nu"]), plane=phases.get("plane", "stress")
            )
            achieved.append(np.atleast_1d(r[prop]))
            flat = images.reshape(len(images), -1)  # phase labels
            pairs = [(a, b) for a in range(len(flat)) for b in range(a + 1, len(flat))]
            diversity.append(float(np.mean([np.mean(flat[a] != flat[b]) for a, b in pairs])) if pairs else 0.0)
        achieved = np.array(achieved)
        error = achieved - targets[:, None]
        out[prop] = {
            "targets": targets.tolist(),
            "achieved": achieved.tolist(),
            "nrmse": float(np.sqrt(np.mean(error**2)) / std),
            "nrmse_per_target": (np.sqrt(np.mean(error**2, axis=1)) / std).tolist(),
            "diversity": float(np.mean(diversity)),
            "std_of_labels": float(std),
            "phases": phases,
            "property_index": PROPERTY_NAMES.index(prop),
        }
    return out


def summary_lines(result) -> list[str]:
    """What the numbers mean (first two lines), then a table per class and the targeted results."""
    from microlatent.text import text_table

    s = result["summary"]
    lines = [
        "Realism of class-conditional samples against held-out real images of the class (Fréchet distance "
        "in a PCA of autocorrelations; lower is closer).",
        f"median over classes: generated / real-vs-real floor = {s['generated_over_floor']:.2f} (goal <= 2); "
        f"the VAE's own reconstructions / floor = {s['decoder_over_floor']:.2f} (the best a prior can reach "
        f"through this decoder); N(0, I) decoding / generated = {s['normal_over_generated']:.2f} (goal >= 2); "
        "1-NN class accuracy "
        f"{100 * s['accuracy_generated']:.0f} % of samples vs {100 * s['accuracy_real']:.0f} % of real test "
        f"images (ratio {s['accuracy_ratio']:.2f}, goal >= 0.9)",
    ]
    rows = [["class", "FD gen", "FD floor", "FD recon", "FD N(0,I)", "vf W1 gen", "vf W1 floor", "acc gen", "acc real"]]
    for name, r in result["classes"].items():
        rows.append(
            [name]
            + [f"{r[k]['frechet']:.3g}" for k in ("generated", "floor", "decoder", "normal")]
            + [f"{r[k]['vf']:.4f}" for k in ("generated", "floor")]
            + [f"{r['accuracy_generated']:.2f}", f"{r['accuracy_real']:.2f}"]
        )
    lines.append(text_table(rows, rule=True))
    for prop, t in (result.get("targeted") or {}).items():
        lines.append(
            f"targeted {prop} (property guidance {result['settings'].get('property_guidance', 1.0):g}): "
            f"nRMSE {t['nrmse']:.3f} (by the labels' std; every sample, no solver selection; "
            f"goal <= 0.2), diversity {t['diversity']:.3f} (fraction of differing pixels between samples of one target)"
        )
    return lines


def write_evaluation(result, out_dir) -> list[Path]:
    """realism.json (numbers), report.md (what they mean first), and samples_<class>.png (generated
    beside real, with their autocorrelations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from microlatent.stats.correlation import two_point
    from microlatent.stats.pca import as_phases

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = {k: v for k, v in result.items() if k not in ("samples", "real")}
    (out_dir / "realism.json").write_text(json.dumps(numbers, indent=1))
    files = [out_dir / "realism.json"]
    n_phases = result["settings"].get("n_phases", 2)
    for name, images in result["samples"].items():
        real = result["real"][name]
        k = min(6, len(images), len(real))
        fig, axes = plt.subplots(4, k, figsize=(1.6 * k, 6.8), squeeze=False)
        for row, (label, set_) in enumerate((("generated", images), ("real (test)", real))):
            maps = two_point(as_phases(set_[:k], n_phases), pairs=[(1, 1)])[:, 0]
            for j in range(k):
                axes[2 * row, j].imshow(set_[j], cmap="gray", vmin=0, vmax=n_phases - 1)
                axes[2 * row + 1, j].imshow(maps[j], cmap="viridis")
            axes[2 * row, 0].set_ylabel(label)
            axes[2 * row + 1, 0].set_ylabel("f11")
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{name}: prior samples (top) and held-out real images (bottom)")
        fig.tight_layout()
        path = out_dir / f"samples_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        files.append(path)
    lines = summary_lines(result)
    (out_dir / "report.md").write_text(
        "# Latent prior: realism\n\n" + "\n\n".join(lines[:2]) + "\n\n```\n" + "\n".join(lines[2:]) + "\n```\n"
    )
    files.append(out_dir / "report.md")
    return files
