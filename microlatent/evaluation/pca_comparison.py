"""A trained VAE's latent against the classical latent, a PCA of 2-point statistics, at equal size.

Both encode the same held-out images (the checkpoint's test split, as the model saw them) to codes of
the same length and decode them back: the VAE with its decoder, the PCA through the reconstruction
from statistics (:meth:`microlatent.stats.StatisticsPCA.decode`). Scored on the binary image each
gives back (the VAE's thresholded at 0.5) against the input: the Jensen-Shannon divergence and the
excess CESS of their 2-point statistics, and the seconds per decode. K phases: the PCA encodes the
pairs among phases 1..K-1 (:func:`~microlatent.stats.pca.statistics_pairs`), the VAE's image is its
most probable phase per pixel, and both scores run over all K^2 ordered pairs.
"""

from __future__ import annotations

import time

import numpy as np

from microlatent.errors import InputError


def compare_latents(
    checkpoint, data=None, split="test", limit_per_class=4, n_components=None, steps=300, device="cpu", log=None
) -> dict:
    """{"rows": [{"latent", "dimensions", "median_js", "median_excess_cess", "seconds_per_decode"}],
    "per_image": {latent: {"js": (N,), "excess_cess": (N,)}}, "names": [...], "explained_variance": float}.

    The PCA is fitted on the checkpoint's training split (at the model's image size) with
    ``n_components`` (default: the VAE latent's size, capped by the training images) components;
    ``steps``: gradient steps of each PCA decode.
    """
    from microlatent.data import load_samples
    from microlatent.evaluation.inference import phase_labels, roundtrip, seen_images
    from microlatent.models.run import Run
    from microlatent.stats import StatisticsPCA

    say = log or (lambda line: None)
    run = Run.load(checkpoint, device)
    n_phases = run.model.n_phases
    data = data or run.data_path
    if not data:
        raise InputError("no data given and the checkpoint's config names no data.path")
    everything = run.split.with_classes(None)  # every class of the file, cut as in training
    # the images at the model's size, binary (K phases: labels) as in training
    train = seen_images(run, load_samples(data, "train", everything).images)
    test_samples = load_samples(data, split, everything, limit_per_class)
    test = seen_images(run, test_samples.images)
    dims = int(np.prod(run.model.latent_shape(test.shape[1:])))
    k = min(n_components or dims, len(train) - 1)
    say(f"PCA of {len(train)} training images' statistics, {k} components; VAE latent {dims} numbers")
    pca = StatisticsPCA(k, n_phases=n_phases).fit(train)

    started = time.perf_counter()
    _, recon = roundtrip(run, list(test.astype(np.float32)))
    vae_seconds = (time.perf_counter() - started) / len(test)
    vae_binary = phase_labels(recon).astype(np.float64)
    say(f"decoding {len(test)} PCA codes through the reconstruction from statistics ({steps} steps each)")
    started = time.perf_counter()
    pca_binary = pca.decode(pca.transform(test), steps=steps, device=device).astype(np.float64)
    pca_seconds = (time.perf_counter() - started) / len(test)

    per_image, rows = {}, []
    for name, images, size, seconds in (
        ("vae", vae_binary, dims, vae_seconds),
        ("pca-stats", pca_binary, k, pca_seconds),
    ):
        scores = _scores(test, images, n_phases)
        per_image[name] = {"js": scores["js"], "excess_cess": scores["excess_cess"]}
        rows.append(
            {
                "latent": name,
                "dimensions": size,
                "median_js": float(np.median(scores["js"])),
                "median_excess_cess": float(np.median(scores["excess_cess"])),
                "seconds_per_decode": seconds,
            }
        )
    wins = float(np.mean(per_image["vae"]["js"] < per_image["pca-stats"]["js"]))
    return {
        "rows": rows,
        "per_image": per_image,
        "names": test_samples.names,
        "vae_wins_js": wins,
        "explained_variance": float(pca.explained_variance_ratio_.sum()),
    }


def _scores(inputs, images, n_phases) -> dict:
    """{"js", "excess_cess"} (N,) of label images against the inputs, over every ordered phase pair."""
    if n_phases == 2:
        from microlatent.evaluation.metrics import statistics_losses

        return statistics_losses(inputs, images)
    from microlatent.evaluation.phases import phase_metrics
    from microlatent.stats.pca import as_phases

    scores = phase_metrics(as_phases(inputs, n_phases), as_phases(images, n_phases))
    return {"js": scores["js_labels"], "excess_cess": scores["excess_cess"]}
