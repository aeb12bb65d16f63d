"""Microstructure design in a model's latent space (Cai et al. 2025 Sec. 4.3, done more carefully).

Given target values for some of (Ex, Ey, Gxy, nu_xy, nu_yx), find latent codes z whose decoded,
thresholded microstructure has those properties when the solver computes them.

Method (what :func:`design` does)
---------------------------------
1. **Differentiable predictor.** The fitted scikit-learn regressor of a predictor folder is turned
   into the same function in torch (:meth:`PropertyRegressor.to_torch`: standardisation, the MLP's
   ReLU layers / the linear map / each SVR's RBF expansion), so the search is gradient-based.
   By default it is the *closed-loop* regressor ``decoded_<kind>`` (z -> solver properties of
   ``threshold(decode(z))``), fitted by ``design fit`` on training codes, prior draws and
   mixtures of codes: it predicts what the solver will see *after thresholding*, not the labels of
   the images the codes came from (``closed_loop=False`` uses the latter, as Cai et al. did).
2. **Objective**, per candidate: ``sum_p ((f_p(z) - t_p) / s_p)^2 + lam * ||z||^2 / dim`` over the
   targeted properties p, with ``s_p`` the standard deviation of p over the predictor's training
   labels, minimised by Adam from ``candidates`` starting codes: half drawn from the training codes
   of the predictor folder, half from the standard normal prior (``init="mixed"``).
3. **Verification and selection.** Every candidate is decoded, thresholded at 0.5 (a K-phase model:
   the most probable phase per pixel) and homogenized
   (:func:`~microlatent.properties.homogenize_elastic`, the labels' phase properties); candidates
   are ranked by their solver-verified normalised error, and the best ``n_designs`` are returned.

:func:`design_span` runs this for targets spanning the data (midpoints of ``n`` equal bins between
the training labels' min and max of one property) and reports the normalised RMSE between targets
and solver-verified properties, **normalised by the property's standard deviation** over the
training labels (``nrmse``; the range-normalised value ``nrmse_range`` is reported too), for the
best verified candidate, for the candidate the predictor alone ranks best (no solver selection,
like a single-shot search), and for random prior samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microlatent.design.closed_loop import THRESHOLD, decoded_properties, solved_properties
from microlatent.design.regression import PROPERTY_NAMES
from microlatent.errors import InputError
from microlatent.text import write_csv, write_json

INITS = ("mixed", "data", "prior")


def parse_targets(items) -> dict:
    """``["Ex=5", "Ey=2.5"]`` -> ``{"Ex": 5.0, "Ey": 2.5}`` (names from PROPERTY_NAMES)."""
    targets = {}
    for item in items:
        if "=" not in str(item):
            raise InputError(f"--target expects NAME=VALUE (NAME one of {', '.join(PROPERTY_NAMES)}), got {item!r}")
        name, value = (part.strip() for part in str(item).split("=", 1))
        if name not in PROPERTY_NAMES:
            raise InputError(f"unknown property {name!r} in --target (choose from {', '.join(PROPERTY_NAMES)})")
        try:
            targets[name] = float(value)
        except ValueError:
            raise InputError(f"--target {name}: {value!r} is not a number") from None
        if not np.isfinite(targets[name]):
            raise InputError(f"--target {name}: value must be finite")
    if not targets:
        raise InputError("give at least one --target NAME=VALUE")
    return targets


def _scales(predictor) -> np.ndarray:
    stats = predictor.meta["label_stats"]
    return np.array([max(stats[p]["std"], 1e-12) for p in PROPERTY_NAMES])


class VAESpace:
    """The latent space of the predictor's VAE: codes of the model's latent shape, prior N(0, I),
    decoded by the model and thresholded (K phases: the most probable phase)."""

    name = "vae"

    def __init__(self, predictor, model, regressor="mlp", closed_loop=True):
        """``regressor=None``: no guide (only decoding and solving, e.g. for prior samples)."""
        features = "decoded" if closed_loop else "latent"
        if regressor is not None and f"{features}_{regressor}" not in predictor.meta.get("regressors", {}):
            hint = " (fit it with `microlatent design fit` without --no-closed-loop, or pass --open-loop)"
            raise InputError(
                f"{predictor.directory}: no {regressor} regressor on {features} features{hint if closed_loop else ''}"
            )
        self.predictor, self.model = predictor, model
        self.shape = tuple(predictor.meta["latent_shape"])
        self.regressor = None if regressor is None else predictor.regressor(regressor, features)
        self.train_codes = predictor.fit_data()["z_train"]

    def surrogate(self, torch):
        """Differentiable properties of search variables (prior N(0, I)), a torch function."""
        return self.regressor.to_torch(torch.float32)

    def codes(self, w) -> np.ndarray:
        """Latent codes of search variables (N, dim)."""
        return np.asarray(w, dtype=np.float32).reshape((-1,) + self.shape)

    def variables(self, codes) -> np.ndarray:
        return np.asarray(codes, dtype=np.float32).reshape(len(codes), -1)

    def solve(self, codes, progress=None):
        """(properties (N, 5), images uint8 (N, H, W) of phase labels) of codes, decoded and thresholded."""
        meta = self.predictor.meta
        return decoded_properties(self.model, codes, meta["phases"], meta.get("threshold", THRESHOLD))


class PCASpace:
    """The classical latent (Paulson et al. 2017): codes of the predictor's PCA of phase-1
    autocorrelations (K phases: of the pairs among phases 1..K-1). Searched in whitened units (each
    component over its standard deviation, so the prior is N(0, I) as for a VAE), predicted by the
    ``pca-stats`` regressor of the original images' labels (there is no closed-loop one: decoding is a
    reconstruction, too slow to label thousands), decoded by :meth:`StatisticsPCA.decode`
    (reconstruction from statistics, ``decode_steps`` L-BFGS-B iterations; K phases: Adam steps) and
    solved."""

    name = "pca"

    def __init__(self, predictor, regressor="mlp", decode_steps=200, seed=0):
        if regressor is not None and f"pca-stats_{regressor}" not in predictor.meta.get("regressors", {}):
            raise InputError(
                f"{predictor.directory}: no {regressor} regressor on pca-stats features "
                "(fit it with `microlatent design fit --features pca-stats`)"
            )
        data = predictor.fit_data()
        if "pca_train" not in data:
            raise InputError(
                f"{predictor.directory}: no PCA codes stored; fit it again with `design fit --features pca-stats`"
            )
        self.predictor = predictor
        self.pca = predictor.pca()
        self.sigma = np.sqrt(self.pca.explained_variance_)
        self.shape = (len(self.sigma),)
        self.regressor = None if regressor is None else predictor.regressor(regressor, "pca-stats")
        self.train_codes = data["pca_train"] / self.sigma
        self.decode_steps, self.seed = decode_steps, seed

    def surrogate(self, torch):
        net = self.regressor.to_torch(torch.float32)
        scale = torch.as_tensor(self.sigma / self.sigma[0], dtype=torch.float32)  # whitened -> regressor inputs
        return lambda w: net(w * scale)

    def codes(self, w) -> np.ndarray:
        return np.asarray(w, dtype=np.float64).reshape(-1, len(self.sigma)) * self.sigma

    def variables(self, codes) -> np.ndarray:
        return (np.asarray(codes, dtype=np.float64) / self.sigma).astype(np.float32)

    def solve(self, codes, progress=None):
        if progress is not None:
            progress(
                f"decoding {len(codes)} PCA codes by reconstruction from statistics ({self.decode_steps} steps each)"
            )
        images = self.pca.decode(codes, steps=self.decode_steps, seed=self.seed).astype(np.uint8)
        return solved_properties(images, self.predictor.meta["phases"]), images


def latent_space(predictor, model=None, latent="vae", regressor="mlp", closed_loop=True, decode_steps=200, seed=0):
    """The space a design searches: ``latent="vae"`` (the model's latent) or ``"pca"`` (the
    predictor's PCA of statistics; ``closed_loop`` does not apply)."""
    if latent == "vae":
        if model is None:
            raise InputError("a VAE-latent design needs the trained model")
        return VAESpace(predictor, model, regressor, closed_loop)
    if latent == "pca":
        return PCASpace(predictor, regressor, decode_steps, seed)
    raise InputError(f"latent must be vae or pca, got {latent!r}")


def _starts(space, n, init, rng):
    """(n, dim) starting search variables: training codes and/or prior draws."""
    data = space.variables(space.train_codes)
    n_data = {"data": n, "prior": 0, "mixed": n // 2 + n % 2}[init]
    picks = data[rng.integers(0, len(data), n_data)]
    prior = rng.standard_normal((n - n_data, data.shape[1])).astype(np.float32)
    return np.concatenate([picks, prior])


def search(
    predictor,
    model,
    targets,
    candidates=32,
    regressor="mlp",
    closed_loop=True,
    lam=0.01,
    steps=200,
    lr=0.05,
    init="mixed",
    seed=0,
    verify=True,
    progress=None,
    latent="vae",
    decode_steps=200,
) -> dict:
    """Gradient search for many targets at once (the core of :func:`design` and :func:`design_span`).

    ``targets``: (T, 5) array in PROPERTY_NAMES order with NaN for properties left free, or a dict
    for one target. ``latent``: "vae" (the model's latent space) or "pca" (the predictor's PCA of
    statistics, decoded by reconstruction with ``decode_steps``; ``model`` may be None). Returns
    ``{"targets" (T, 5), "z" (T, K, *latent), "predicted" (T, K, 5), "loss" (T, K), "achieved"
    (T, K, 5), "error" (T, K), "images" (T, K, H, W) uint8}``; ``error`` is the solver-verified RMS over
    targeted properties of (achieved - target) / std.
    """
    import torch

    if init not in INITS:
        raise InputError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    for name, value, low in (("candidates", candidates, 1), ("steps", steps, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (np.isfinite(lam) and lam >= 0):
        raise InputError(f"lambda must be >= 0, got {lam!r}")
    if isinstance(targets, dict):
        row = np.full(len(PROPERTY_NAMES), np.nan)
        for name, value in targets.items():
            row[PROPERTY_NAMES.index(name)] = value
        targets = row[None]
    targets = np.asarray(targets, dtype=np.float64)
    mask = np.isfinite(targets)
    if not mask.any(axis=1).all():
        raise InputError("every target needs at least one property value")
    space = latent_space(predictor, model, latent, regressor, closed_loop, decode_steps, seed)
    n_targets = len(targets)
    scales = _scales(predictor)
    rng = np.random.default_rng(seed)
    w0 = np.concatenate([_starts(space, candidates, init, rng) for _ in range(n_targets)])
    dim = w0.shape[1]
    net = space.surrogate(torch)
    t = torch.as_tensor(np.nan_to_num(np.repeat(targets, candidates, axis=0)), dtype=torch.float32)
    m = torch.as_tensor(np.repeat(mask, candidates, axis=0), dtype=torch.float32)
    s = torch.as_tensor(scales, dtype=torch.float32)
    w = torch.tensor(w0, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)

    def objective(w):
        pred = net(w)
        fit = (((pred - t) / s) ** 2 * m).sum(1)
        return fit + lam * (w * w).sum(1) / dim, pred

    for step in range(steps):
        opt.zero_grad()
        loss, _ = objective(w)
        loss.sum().backward()
        opt.step()
        if progress is not None and (step + 1) % 50 == 0:
            progress(f"search step {step + 1}/{steps}: mean objective {loss.mean().item():.4f}")
    with torch.no_grad():
        loss, pred = objective(w)
    codes = space.codes(w.detach().numpy())
    out = {
        "targets": targets,
        "latent": space.name,
        "z": codes.reshape((n_targets, candidates) + space.shape),
        "predicted": pred.numpy().astype(np.float64).reshape(n_targets, candidates, -1),
        "loss": loss.numpy().astype(np.float64).reshape(n_targets, candidates),
        "scales": scales,
    }
    if verify:
        if progress is not None:
            progress(f"verifying {n_targets * candidates} candidates with the solver")
        achieved, images = space.solve(codes, progress)
        out["achieved"] = achieved.reshape(n_targets, candidates, -1)
        out["images"] = images.reshape((n_targets, candidates) + images.shape[1:])
        out["error"] = normalised_error(out["achieved"], targets[:, None, :], scales)
    return out


def normalised_error(values, targets, scales) -> np.ndarray:
    """RMS over the targeted (finite) properties of (values - targets) / scales; last axis = property."""
    targets = np.broadcast_to(targets, np.shape(values))
    mask = np.isfinite(targets)
    diff = np.where(mask, (np.asarray(values) - np.nan_to_num(targets)) / scales, 0.0)
    return np.sqrt((diff**2).sum(-1) / mask.sum(-1))


def design(
    predictor,
    model,
    targets: dict,
    n_designs=8,
    candidates=32,
    regressor="mlp",
    closed_loop=True,
    lam=0.01,
    steps=200,
    lr=0.05,
    init="mixed",
    seed=0,
    progress=None,
    latent="vae",
    decode_steps=200,
) -> dict:
    """Designs for one target: the ``n_designs`` best of ``candidates`` searched codes, ranked by
    solver-verified error. Returns ``{"targets": dict, "designs": list of dicts (z, image, predicted,
    achieved, error, volume_fraction), "candidates": the :func:`search` output}``."""
    settings = dict(
        candidates=candidates, regressor=regressor, closed_loop=closed_loop, lam=lam, steps=steps, lr=lr,
        init=init, seed=seed, progress=progress, latent=latent, decode_steps=decode_steps,
    )  # fmt: skip
    if isinstance(n_designs, bool) or not isinstance(n_designs, (int, np.integer)) or n_designs < 1:
        raise InputError(f"n_designs must be a positive integer, got {n_designs!r}")
    if n_designs > candidates:
        raise InputError(f"n_designs ({n_designs}) cannot exceed candidates ({candidates})")
    result = search(predictor, model, targets, **settings)
    order = np.argsort(result["error"][0], kind="stable")[:n_designs]
    designs = []
    for k in order:
        designs.append(
            {
                "candidate": int(k),
                "z": result["z"][0, k],
                "image": result["images"][0, k],
                "predicted": dict(zip(PROPERTY_NAMES, result["predicted"][0, k].tolist())),
                "achieved": dict(zip(PROPERTY_NAMES, result["achieved"][0, k].tolist())),
                "error": float(result["error"][0, k]),
                "volume_fraction": float((result["images"][0, k] == 1).mean()),  # of phase 1
            }
        )
        if _phases(predictor) > 2:
            image = result["images"][0, k]
            designs[-1]["phase_fractions"] = [float((image == h).mean()) for h in range(_phases(predictor))]
    return {"targets": dict(targets), "designs": designs, "candidates": result, "n_phases": _phases(predictor)}


def _phases(predictor) -> int:
    return int(predictor.meta.get("n_phases", 2))


def _fractions(design, sep, digits) -> str:
    """Its phase fractions as text: "vf 0.123" (phase 1) of 2 phases, "phases 0.5/0.2/0.3" of K."""
    if "phase_fractions" in design:
        return f"phases{sep}" + "/".join(f"{v:.{digits}f}" for v in design["phase_fractions"])
    return f"vf{sep}{design['volume_fraction']:.{digits}f}"


def prior_baseline(predictor, model, n, seed=0, latent="vae", decode_steps=200, progress=None) -> dict:
    """Baseline: ``n`` codes from the latent's prior (N(0, I) for a VAE; N(0, diag(explained
    variance)) for a PCA), decoded, thresholded and solved. Returns ``{"z", "achieved" (n, 5), "images"}``."""
    space = latent_space(predictor, model, latent, regressor=None, decode_steps=decode_steps, seed=seed)
    dim = int(np.prod(space.shape))
    z = space.codes(np.random.default_rng(seed + 7919).standard_normal((n, dim)))
    achieved, images = space.solve(z, progress)
    return {"z": z, "achieved": achieved, "images": images}


def span_targets(predictor, prop="Ex", n=10) -> np.ndarray:
    """``n`` targets spanning the training labels' range of ``prop``: the midpoints of ``n`` equal
    bins between its min and max."""
    if prop not in PROPERTY_NAMES:
        raise InputError(f"unknown property {prop!r} (choose from {', '.join(PROPERTY_NAMES)})")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"a span needs a positive number of targets, got {n!r}")
    stats = predictor.meta["label_stats"][prop]
    return stats["min"] + (np.arange(n) + 0.5) / n * (stats["max"] - stats["min"])


def design_span(
    predictor,
    model,
    prop="Ex",
    n_targets=10,
    candidates=32,
    regressor="mlp",
    closed_loop=True,
    lam=0.01,
    steps=200,
    lr=0.05,
    init="mixed",
    seed=0,
    n_prior=None,
    progress=None,
    latent="vae",
    decode_steps=200,
) -> dict:
    """Design for ``n_targets`` targets of ``prop`` spanning the data and measure how well the
    solver-verified properties hit them.

    Returns a dict with ``property``, ``targets`` (T,), ``achieved`` (T,) of the best verified
    candidate, ``predicted`` (T,), ``images`` (T, H, W), and the normalised RMSEs (by the training
    labels' std; ``*_range``: by their max - min):

    - ``nrmse`` / ``nrmse_range``: best of ``candidates`` by solver-verified error;
    - ``nrmse_single`` / ...: the candidate with the lowest objective (what a search without
      solver verification would return);
    - ``nrmse_prior`` / ...: a random prior sample per target (``n_prior`` samples, each target
      scored against all of them: RMS over samples and targets).
    """
    settings = dict(
        candidates=candidates, regressor=regressor, closed_loop=closed_loop, lam=lam, steps=steps, lr=lr,
        init=init, seed=seed, progress=progress, latent=latent, decode_steps=decode_steps,
    )  # fmt: skip
    j = PROPERTY_NAMES.index(prop) if prop in PROPERTY_NAMES else None
    targets_1d = span_targets(predictor, prop, n_targets)
    targets = np.full((n_targets, len(PROPERTY_NAMES)), np.nan)
    targets[:, j] = targets_1d
    result = search(predictor, model, targets, **settings)
    stats = predictor.meta["label_stats"][prop]
    std, span = stats["std"], stats["max"] - stats["min"]
    rows = np.arange(n_targets)
    best = np.argmin(result["error"], axis=1)
    single = np.argmin(result["loss"], axis=1)
    achieved = result["achieved"][rows, best, j]
    achieved_single = result["achieved"][rows, single, j]
    prior = prior_baseline(predictor, model, n_prior or max(candidates, 16), seed, latent, decode_steps, progress)
    prior_err = prior["achieved"][None, :, j] - targets_1d[:, None]

    def rmse(diff):
        return float(np.sqrt(np.mean(np.square(diff))))

    return {
        "property": prop,
        "targets": targets_1d,
        "achieved": achieved,
        "predicted": result["predicted"][rows, best, j],
        "volume_fraction": (result["images"][rows, best] == 1).mean(axis=(1, 2)),  # of phase 1
        "achieved_single": achieved_single,
        "images": result["images"][rows, best],
        "z": result["z"][rows, best],
        "nrmse": rmse(achieved - targets_1d) / std,
        "nrmse_range": rmse(achieved - targets_1d) / span,
        "nrmse_single": rmse(achieved_single - targets_1d) / std,
        "nrmse_single_range": rmse(achieved_single - targets_1d) / span,
        "nrmse_prior": rmse(prior_err) / std,
        "nrmse_prior_range": rmse(prior_err) / span,
        "normalisation": {"std": std, "range": span, "over": "training-split labels of the predictor's data"},
        "settings": {
            "candidates": candidates,
            "regressor": regressor,
            "closed_loop": closed_loop,
            "lambda": lam,
            "steps": steps,
            "lr": lr,
            "init": init,
            "seed": seed,
            "latent": latent,
            "decode_steps": decode_steps if latent == "pca" else None,
        },
        "candidates": result,
        "n_phases": _phases(predictor),
    }


# --------------------------------------------------------------------------------------------
# Writing results.
# --------------------------------------------------------------------------------------------


def write_design(result, out_dir) -> list[Path]:
    """designs.csv, designs.npz (thresholded images, codes) and designs.png for :func:`design`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = result["targets"]
    names = list(targets)
    rows = []
    for i, d in enumerate(result["designs"]):
        row = {"design": i, "candidate": d["candidate"], "error": d["error"], "volume_fraction": d["volume_fraction"]}
        for p in names:
            row.update(
                {f"target_{p}": targets[p], f"predicted_{p}": d["predicted"][p], f"achieved_{p}": d["achieved"][p]}
            )
        for p in PROPERTY_NAMES:
            if p not in names:
                row[f"achieved_{p}"] = d["achieved"][p]
        rows.append(row)
    csv_path = write_csv(rows, out_dir / "designs.csv")
    npz = out_dir / "designs.npz"
    np.savez_compressed(
        npz,
        images=np.stack([d["image"] for d in result["designs"]]),
        z=np.stack([d["z"] for d in result["designs"]]),
        achieved=np.array([[d["achieved"][p] for p in PROPERTY_NAMES] for d in result["designs"]]),
        properties=np.array(PROPERTY_NAMES),
    )
    fig = plot_designs(result, out_dir / "designs.png")
    return [csv_path, npz, fig]


def write_span(result, out_dir) -> list[Path]:
    """span.json (nRMSEs, settings, per-target values), span.csv, span.npz, span.png for :func:`design_span`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prop = result["property"]
    summary = {
        k: result[k]
        for k in (
            "property",
            "nrmse",
            "nrmse_range",
            "nrmse_single",
            "nrmse_single_range",
            "nrmse_prior",
            "nrmse_prior_range",
            "normalisation",
            "settings",
        )
    }
    summary["per_target"] = [
        {
            "target": float(t),
            "achieved": float(a),
            "predicted": float(p),
            "achieved_single": float(s),
            "volume_fraction": float(v),
        }
        for t, a, p, s, v in zip(
            result["targets"],
            result["achieved"],
            result["predicted"],
            result["achieved_single"],
            result["volume_fraction"],
        )
    ]
    write_json(out_dir / "span.json", summary)
    rows = [
        {
            "target_" + prop: r["target"],
            "achieved_" + prop: r["achieved"],
            "predicted_" + prop: r["predicted"],
            "single_candidate_" + prop: r["achieved_single"],
            "volume_fraction": r["volume_fraction"],
        }
        for r in summary["per_target"]
    ]
    csv_path = write_csv(rows, out_dir / "span.csv")
    npz = out_dir / "span.npz"
    np.savez_compressed(
        npz, images=result["images"], z=result["z"], targets=result["targets"], achieved=result["achieved"]
    )
    fig = plot_span(result, out_dir / "span.png")
    return [out_dir / "span.json", csv_path, npz, fig]


def plot_designs(result, path):
    """The designs (thresholded), each titled with target / predicted / solver-verified values."""
    import matplotlib.pyplot as plt

    from microlatent.plotting import save_figure

    designs = result["designs"]
    columns = min(4, len(designs))
    rows = -(-len(designs) // columns)
    side, gap = 2.6, 0.2  # inches: image side and margin
    title = 0.17 * (len(result["targets"]) + 1) + 0.1  # one line per target plus the vf line
    width, height = columns * (side + gap) + gap, rows * (side + title + gap) + gap
    fig = plt.figure(figsize=(width, height))
    for i, d in enumerate(designs):
        row, column = divmod(i, columns)
        left = gap + column * (side + gap)
        bottom = height - (row + 1) * (side + title + gap)
        ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
        ax.imshow(d["image"], cmap="gray", vmin=0, vmax=result.get("n_phases", 2) - 1, interpolation="nearest")
        ax.set_axis_off()
        lines = [f"#{i} {_fractions(d, '=', 2)}"]
        lines += [f"{p}: target {v:.3g}, got {d['achieved'][p]:.3g}" for p, v in result["targets"].items()]
        ax.set_title("\n".join(lines), fontsize=8)
    return save_figure(fig, path)


def plot_span(result, path):
    """Top: the best design per target, titled target -> achieved; bottom: target vs achieved."""
    import matplotlib.pyplot as plt

    from microlatent.plotting import save_figure

    prop, targets, achieved = result["property"], result["targets"], result["achieved"]
    n = len(targets)
    columns = min(n, 10)
    image_rows = -(-n // columns)
    fig = plt.figure(figsize=(max(8.0, 1.6 * columns), 1.9 * image_rows + 4.2))
    grid = fig.add_gridspec(image_rows + 1, columns, height_ratios=[1] * image_rows + [2.6])
    for i in range(n):
        ax = fig.add_subplot(grid[i // columns, i % columns])
        ax.imshow(result["images"][i], cmap="gray", vmin=0, vmax=result.get("n_phases", 2) - 1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{prop} {targets[i]:.3g}\n-> {achieved[i]:.3g}", fontsize=7)
    ax = fig.add_subplot(grid[image_rows, :])
    lo, hi = min(targets.min(), achieved.min()), max(targets.max(), achieved.max())
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="achieved = target")
    ax.scatter(
        targets,
        result["achieved_single"],
        marker="x",
        color="tab:orange",
        label=f"lowest objective, no verification (nRMSE {result['nrmse_single']:.3f})",
    )
    ax.scatter(
        targets,
        achieved,
        color="tab:blue",
        label=f"best verified of {result['settings']['candidates']} (nRMSE {result['nrmse']:.3f})",
    )
    ax.set_xlabel(f"target {prop}")
    ax.set_ylabel(f"solver-verified {prop} (thresholded design)")
    ax.set_title(
        f"nRMSE (by std) {result['nrmse']:.3f}; by range {result['nrmse_range']:.3f}; "
        f"random prior samples {result['nrmse_prior']:.3f}",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_lines(result) -> list[str]:
    """Text lines: target vs achieved per design (design) or per target plus nRMSE (span)."""
    if "designs" in result:
        lines = []
        for i, d in enumerate(result["designs"]):
            parts = [
                f"{p}: target {v:.4g} predicted {d['predicted'][p]:.4g} achieved {d['achieved'][p]:.4g}"
                for p, v in result["targets"].items()
            ]
            lines.append(f"design {i}: " + "; ".join(parts) + f"; {_fractions(d, ' ', 3)}; error {d['error']:.3f}")
        return lines
    prop = result["property"]
    lines = [
        f"target {prop} {t:.4g}  achieved {a:.4g}  predicted {p:.4g}"
        for t, a, p in zip(result["targets"], result["achieved"], result["predicted"])
    ]
    lines.append(
        f"nRMSE (by std of {prop}) {result['nrmse']:.4f}, by range {result['nrmse_range']:.4f}; "
        f"without solver selection {result['nrmse_single']:.4f}; random prior samples "
        f"{result['nrmse_prior']:.4f}"
    )
    return lines
