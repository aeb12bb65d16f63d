"""Reproduce a paper's experiments: train its configs for several seeds, evaluate them on the test
split, and put our numbers beside the paper's.

    reproduce("hashemi", "outputs/reproduce/hashemi", scale="cpu", seeds=3)

For each seed ``s`` the folder holds ``seed{s}/<run>/`` (one training run per config, ``seed = s``),
``seed{s}/report/`` (the evaluation report of all of them) and ``seed{s}/extra.json`` (the paper's
own measures that the report lacks); at the top, ``reproduce.md`` and ``reproduce.json`` give every
measure as mean ± sd over the seeds beside the paper's value and our target. Running it again skips
finished runs and resumes an interrupted one from its checkpoint, so it is resumable at any point.

Each seed changes the training seed (initialisation, batch order, posterior noise); the data set and
its split stay the same, so the seeds measure the training's spread, not the data's.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microlatent.errors import DataError, InputError


@dataclass
class Measure:
    """One row of the comparison: ``value(metrics, extra)`` of one seed's report -> float."""

    title: str
    value: object
    paper: str = "–"
    target: str = "–"
    passes: object = None  # callable(mean) -> bool, or None when the row has no target


@dataclass
class Paper:
    title: str
    runs: list  # [(label, config name without the _cpu suffix, label of the run it finetunes or None)]
    measures: list
    texture: bool = False
    extra: object = None  # callable(models, data, out_dir) -> dict of extra measures, or None
    extra_keys: tuple = ()  # what extra returns: a stored extra.json without one of them is recomputed
    notes: list = field(default_factory=list)


def _lines(label, key):
    return lambda m, e: m["lines"]["models"][label][key]


def _summary(label, key, stat="median"):
    return lambda m, e: m["summary"][label]["all"][key][stat]


def _win(a, b, key="excess_cess"):
    """Share of test images on which model a scores lower than model b on ``key``."""

    def value(m, e):
        from microlatent.evaluation.metrics import win_matrix

        _, matrix = win_matrix({a: m["per_sample"][a][key], b: m["per_sample"][b][key]})
        return float(matrix[0, 1])

    return value


def _change(a, b, key="excess_cess"):
    """Relative change (%) of model a's median ``key`` against model b's."""

    def value(m, e):
        mine, ref = (m["summary"][k]["all"][key]["median"] for k in (a, b))
        return (mine - ref) / ref * 100

    return value


def _latent(label, key):
    return lambda m, e: m["latent"][label][key]


def _cai_measures():
    rows = []
    for label, name in (
        ("cess_finetune", "CESS finetune"),
        ("cess_crop_finetune", "cropped-CESS finetune"),
        ("mse_cess", "MSE+CESS"),
    ):
        finetune = label != "mse_cess"
        rows += [
            Measure(
                f"{name}: share of test images with lower excess CESS than MSE",
                _win(label, "mse"),
                paper="Fig. 11: > 0.5" if finetune else "Fig. 11",
                target=">= 0.80" if finetune else "–",
                passes=(lambda v: v >= 0.8) if finetune else None,
            ),
            Measure(
                f"{name}: median excess CESS vs MSE (%)",
                _change(label, "mse"),
                paper="lower (Fig. 9)",
                target="<= -30 %" if finetune else "–",
                passes=(lambda v: v <= -30) if finetune else None,
            ),
            Measure(
                f"{name}: share of test images whose binary reconstruction has statistics closer than MSE's (JS)",
                _win(label, "mse", "js_binary"),
                target=">= 0.80" if finetune else "–",
                passes=(lambda v: v >= 0.8) if finetune else None,
            ),
            Measure(
                f"{name}: median JS of the binary reconstruction vs MSE (%)",
                _change(label, "mse", "js_binary"),
                target="<= -30 %" if finetune else "–",
                passes=(lambda v: v <= -30) if finetune else None,
            ),
        ]
    rows.append(Measure("CESS finetune beats MSE+CESS (share)", _win("cess_finetune", "mse_cess"), paper="0.923"))
    for label in ("mse", "cess_finetune", "cess_crop_finetune", "mse_cess"):
        rows.append(Measure(f"{label}: median excess CESS", _summary(label, "excess_cess")))
    for label in ("mse", "cess_finetune"):
        rows.append(Measure(f"{label}: median JS of the thresholded reconstruction", _summary(label, "js_binary")))
        rows.append(Measure(f"{label}: reconstruction std across inputs", _latent(label, "output_std")))
    extra_rows = [
        (label, f"{label}: {what}", key)
        for label in ("mse", "cess_finetune", "cess_crop_finetune")
        for what, key in (
            ("median volume fraction error (percentage points)", "vf_error"),
            ("median excess CESS with the input's volume fraction (logit shift)", "matched"),
            ("median excess CESS after the best per-image volume fraction and contrast calibration", "calibrated"),
        )
    ]
    given = "vs MSE, both given the input's volume fraction"
    extra_rows += [
        (label, f"{name} {given}: {what}", key)
        for label, name in (("cess_finetune", "CESS finetune"), ("cess_crop_finetune", "cropped-CESS finetune"))
        for what, key in (
            ("share of test images with lower excess CESS", "matched_win"),
            ("median excess CESS change (%)", "matched_change"),
        )
    ]
    for label, title, key in extra_rows:
        rows.append(Measure(title, lambda m, e, label=label, key=key: e[key][label]))
    return rows


def _cai_extra(models, data, out_dir):
    """Per model, on the test split: the median volume-fraction error of the reconstructions, and the
    median excess CESS left after giving each reconstruction its input's volume fraction
    (:func:`~microlatent.evaluation.metrics.match_volume_fraction`) and after calibrating volume
    fraction and contrast (:func:`~microlatent.evaluation.metrics.calibrated_excess_cess`); and each
    model against "mse" (when there is one) with both given the input's volume fraction: how much of a
    model's excess, and of a finetune's advantage, is the volume fraction, and how much structure."""
    from microlatent.data import load_samples
    from microlatent.evaluation.inference import roundtrip
    from microlatent.evaluation.metrics import calibrated_excess_cess, matched_excess_cess
    from microlatent.models.run import Run

    vf_error, calibrated, excess = {}, {}, {}
    for label, path in models.items():
        model = Run.load(path, "cpu")
        inputs, recons = roundtrip(model, load_samples(data, "test", model.split).images)
        vf_error[label] = float(np.median(np.abs(recons.mean((1, 2)) - inputs.mean((1, 2))))) * 100
        calibrated[label] = float(np.median(calibrated_excess_cess(inputs, recons)))
        excess[label] = matched_excess_cess(inputs, recons)
    matched = {label: float(np.median(values)) for label, values in excess.items()}
    matched_win, matched_change = {}, {}
    if "mse" in excess:
        for label, values in excess.items():
            matched_win[label] = float(np.mean(values < excess["mse"]))
            matched_change[label] = 100 * (matched[label] / matched["mse"] - 1)
    return {
        "vf_error": vf_error,
        "calibrated": calibrated,
        "matched": matched,
        "matched_win": matched_win,
        "matched_change": matched_change,
    }


def _texture_extra(models, data, out_dir):
    """1-NN class accuracy of the reconstructions' autocorrelations against the training images (and
    of the real test images themselves, the ceiling)."""
    from microlatent.data import load_samples
    from microlatent.evaluation.inference import roundtrip
    from microlatent.evaluation.metrics import autocorrelation_features
    from microlatent.models.run import Run

    model = Run.load(models["texture_vae"], "cpu")
    train = load_samples(data, "train", model.split, limit_per_class=40)  # cut as the model's training was
    test = load_samples(data, "test", model.split)
    train_inputs, _ = roundtrip(model, train.images)  # as the model sees them (resized, binary)
    test_inputs, recons = roundtrip(model, test.images)
    reference = autocorrelation_features(train_inputs)
    classes = np.array(train.classes)
    truth = np.array(test.classes)

    def accuracy(images):
        features = autocorrelation_features(images)
        d = ((features[:, None, :] - reference[None]) ** 2).sum(-1)
        return float(np.mean(classes[d.argmin(1)] == truth))

    return {"nn_accuracy_recon": accuracy(recons), "nn_accuracy_real": accuracy(test_inputs)}


# The Hashemi SS-VAE that the targets are held to (hashemi_ssvae_finetune): its rows' common title.
FINETUNED_SSVAE = "SS-VAE finetuned from the data-space model"

PAPERS = {
    "hashemi": Paper(
        title="Hashemi et al. 2024: statistics-space (SS-VAE) vs data-space VAE on lines",
        runs=[
            ("ssvae", "hashemi_ssvae", None),
            ("data_space", "hashemi_data_space", None),
            ("ssvae_finetune", "hashemi_ssvae_finetune", "data_space"),
        ],
        measures=[
            Measure(
                f"{FINETUNED_SSVAE}: orientation right",
                _lines("ssvae_finetune", "orientation_accuracy"),
                "0.98",
                ">= 0.98",
                lambda v: v >= 0.98,
            ),
            Measure(
                f"{FINETUNED_SSVAE}: line count right",
                _lines("ssvae_finetune", "count_accuracy"),
                "0.63",
                ">= 0.63",
                lambda v: v >= 0.63,
            ),
            Measure(
                f"{FINETUNED_SSVAE}: volume fraction difference, median (%)",
                _summary("ssvae_finetune", "vf_diff"),
                "17 (mean)",
                "<= 17",
                lambda v: v <= 17,
            ),
            Measure(
                f"{FINETUNED_SSVAE}: volume fraction difference, mean (%)",
                _summary("ssvae_finetune", "vf_diff", "mean"),
                "17",
            ),
            Measure(
                "SS-VAE finetuned beats data-space in statistics space (share of test images, excess CESS)",
                _win("ssvae_finetune", "data_space"),
                "–",
                "> 0.5",
                lambda v: v > 0.5,
            ),
            Measure("SS-VAE finetuned: median excess CESS vs data-space (%)", _change("ssvae_finetune", "data_space")),
            Measure(
                "SS-VAE finetuned beats data-space on the binary reconstruction's statistics (share, JS)",
                _win("ssvae_finetune", "data_space", "js_binary"),
            ),
            Measure(
                "SS-VAE finetuned: median JS of the binary reconstruction vs data-space (%)",
                _change("ssvae_finetune", "data_space", "js_binary"),
            ),
            Measure(
                "SS-VAE from scratch (the paper's recipe): orientation right", _lines("ssvae", "orientation_accuracy")
            ),
            Measure("SS-VAE from scratch: line count right", _lines("ssvae", "count_accuracy")),
            Measure("SS-VAE from scratch: volume fraction difference, median (%)", _summary("ssvae", "vf_diff")),
            Measure(
                "SS-VAE from scratch beats data-space in statistics space (share, excess CESS)",
                _win("ssvae", "data_space"),
            ),
            Measure(
                "SS-VAE from scratch beats data-space on the binary reconstruction's statistics (share, JS)",
                _win("ssvae", "data_space", "js_binary"),
            ),
            Measure("data-space: orientation right", _lines("data_space", "orientation_accuracy")),
            Measure("data-space: line count right", _lines("data_space", "count_accuracy")),
            Measure("data-space: volume fraction difference, median (%)", _summary("data_space", "vf_diff")),
            Measure("SS-VAE finetuned: active latent units (of 9)", _latent("ssvae_finetune", "active_units")),
            Measure("SS-VAE from scratch: active latent units (of 9)", _latent("ssvae", "active_units")),
            Measure("data-space: active latent units (of 9)", _latent("data_space", "active_units")),
        ],
        notes=[
            "Paper: 1500 epochs at 224 px on 100 test images, an ImageNet-trained encoder; here the `_cpu` configs "
            "(64 px, 60 epochs, encoders from scratch).",
            "SS-VAE finetuned: the data-space model finetuned 40 epochs with the statistics loss, Hashemi's soft "
            "phase indicator and a clamp (hashemi_ssvae_finetune_cpu), as Cai et al. finetune an MSE model; from "
            "scratch the decoder draws one line at a fixed place and loses the others' count.",
            "Volume fraction difference: the paper reports the mean (17 %); the target is on the median as the issue "
            "asks, and the mean is the row after it.",
        ],
    ),
    "cai": Paper(
        title="Cai et al. 2025: MSE vs CESS-trained TAESD VAEs on MICRO2D-like classes",
        runs=[
            ("mse", "cai_mse", None),
            ("cess_finetune", "cai_cess_finetune", "mse"),
            ("cess_crop_finetune", "cai_cess_crop_finetune", "mse"),
            ("mse_cess", "cai_mse_cess", None),
        ],
        extra=_cai_extra,
        extra_keys=("vf_error", "calibrated", "matched", "matched_win", "matched_change"),
        measures=_cai_measures(),
        notes=[
            "Paper: MICRO2D (87,379 images, 224 px), 30 + finetune epochs on a GPU; here the `_cpu` configs "
            "(MICRO2D-like, 64 px, binary targets).",
            "Excess CESS = CESS - H(f_in); win shares are the same for CESS and excess CESS.",
        ],
    ),
    "texture": Paper(
        title="Sardeshmukh et al. 2021: TextureVAE (style loss) on MICRO2D-like classes",
        runs=[("texture_vae", "texture_vae", None)],
        texture=True,
        extra=_texture_extra,
        extra_keys=("nn_accuracy_recon", "nn_accuracy_real"),
        measures=[
            Measure(
                "STSIM-2 of reconstructions (mean)",
                _summary("texture_vae", "stsim2", "mean"),
                "0.70-0.76",
                ">= 0.70",
                lambda v: v >= 0.70,
            ),
            Measure(
                "reconstruction std across inputs (0 = collapse)",
                _latent("texture_vae", "output_std"),
                "–",
                "> 0.05",
                lambda v: v > 0.05,
            ),
            Measure("1-NN class accuracy of the reconstructions' statistics", lambda m, e: e["nn_accuracy_recon"]),
            Measure("1-NN class accuracy of the real test images (ceiling)", lambda m, e: e["nn_accuracy_real"]),
            Measure("active latent units", _latent("texture_vae", "active_units")),
            Measure("median excess CESS", _summary("texture_vae", "excess_cess")),
        ],
        notes=[
            "Paper: 128 x 128 patches, latent 8-64; STSIM-2 of 100 reconstructions (Table 1).",
            "1-NN: each reconstruction's autocorrelation against 40 training images per class.",
        ],
    ),
}


def reproduce(
    paper: str, out_dir, scale: str = "cpu", seeds: int = 3, device: str = "auto", overrides=(), log=None
) -> Path:
    """Train, evaluate and compare ``paper``'s experiments; returns the path of ``reproduce.md``."""
    from microlatent.evaluation.report import write_report
    from microlatent.training import Interrupted, load_config, train

    say = log or (lambda line: None)
    if paper not in PAPERS:
        raise InputError(f"unknown paper {paper!r}; choose one of {', '.join(PAPERS)}")
    if scale not in ("cpu", "paper"):
        raise InputError(f"scale must be cpu or paper, got {scale!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be a positive integer, got {seeds!r}")
    spec, out_dir = PAPERS[paper], Path(out_dir)
    suffix = "_cpu" if scale == "cpu" else ""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_seed = []
    for seed in range(seeds):
        seed_dir = out_dir / f"seed{seed}"
        models, timings, data, trained = {}, _read_json(seed_dir / "timings.json"), None, False
        for label, name, init_label in spec.runs:
            config = load_config(name + suffix, overrides)
            config["seed"] = seed
            config["train"]["device"] = device
            if init_label:
                config["train"]["init_from"] = str(models[init_label])
            run = seed_dir / label
            data = data or config["data"]["path"]
            if (run / "model.pt").exists():
                _check_finished_run(run, config)
            else:
                trained = True
                say(f"seed {seed}: training {label} ({name + suffix}, {config['optim']['epochs']} epochs) -> {run}")
                started = time.perf_counter()
                try:
                    train(config, run, resume=(run / "checkpoint.pt").exists())
                except Interrupted as stop:
                    raise DataError(f"{stop}; run the same command again to continue") from None
                timings[label] = timings.get(label, 0.0) + time.perf_counter() - started
                _write_json(seed_dir / "timings.json", timings)
            models[label] = run / "model.pt"
        report_dir = seed_dir / "report"
        if trained or not (report_dir / "metrics.json").exists():  # a model new since the report: redo it
            say(f"seed {seed}: evaluating on the test split -> {report_dir}")
            write_report(
                models, data, report_dir, split="test", device=device, texture=spec.texture, overfit_samples=0, log=say
            )
        extra = _read_json(seed_dir / "extra.json")
        if spec.extra and (trained or not extra or not set(spec.extra_keys) <= set(extra)):  # or from an older version
            extra = spec.extra(models, data, seed_dir)
            _write_json(seed_dir / "extra.json", extra)
        per_seed.append((json.loads((report_dir / "metrics.json").read_text()), extra, timings))
    return _write_comparison(spec, paper, scale, per_seed, out_dir)


def _check_finished_run(run, config):
    """InputError if a finished run in the output folder was trained with another config than the one
    asked for now (a changed shipped config, or other --set): its numbers would be reported as this
    config's."""
    from microlatent.models import load_checkpoint
    from microlatent.training.config import DEFAULTS, config_difference, merge

    # The config saved in the checkpoint: the one the evaluation reads (Run.load) for this model.
    checkpoint = run / "model.pt"
    saved_config = (load_checkpoint(checkpoint).get("extra") or {}).get("config") or {}
    saved = merge(DEFAULTS, saved_config, origin=str(checkpoint))
    difference = config_difference(saved, config, ignore=("train.device", "model.phases", "train.init_from"))
    if difference:
        key, had, wants = difference
        raise InputError(
            f"{run} was trained with {key} = {had!r}, and this command asks for {wants!r}; "
            "delete that run (its report is redone) or write to another folder"
        )


def _write_comparison(spec, paper, scale, per_seed, out_dir):
    rows = []
    for measure in spec.measures:
        values = []
        for metrics, extra, _ in per_seed:
            try:
                v = measure.value(metrics, extra)
            except (KeyError, ValueError, TypeError, IndexError):
                v = None
            values.append(float("nan") if v is None else float(v))
        finite = [v for v in values if math.isfinite(v)]
        mean = float(np.mean(finite)) if finite else float("nan")
        sd = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        met = None if measure.passes is None or not finite else bool(measure.passes(mean))
        rows.append(
            {
                "measure": measure.title,
                "mean": mean,
                "sd": sd,
                "seeds": values,
                "paper": measure.paper,
                "target": measure.target,
                "met": met,
            }
        )
    minutes = {label: [t[label] / 60 for _, _, t in per_seed if label in t] for label, _, _ in spec.runs}
    result = {
        "paper": paper,
        "title": spec.title,
        "scale": scale,
        "seeds": len(per_seed),
        "rows": rows,
        "training_minutes": {k: v for k, v in minutes.items() if v},
        "notes": spec.notes,
    }
    _write_json(out_dir / "reproduce.json", result)
    met = [r for r in rows if r["met"] is not None]
    lines = [
        f"# {spec.title}",
        "",
        f"**{sum(r['met'] for r in met)} of {len(met)} targets met** at {scale} scale, mean ± sd over "
        f"{len(per_seed)} seed(s), test images never used in training. Each seed's full report: "
        f"`seed<N>/report/report.html`.",
        "",
        "| measure | ours (mean ± sd) | per seed | paper | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(_fmt(v) for v in r["seeds"])
        status = "–" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(
            f"| {r['measure']} | {_fmt(r['mean'])} ± {_fmt(r['sd'])} | {per} | {r['paper']} | "
            f"{r['target']} | {status} |"
        )
    lines += [
        "",
        "Training time per seed (minutes, this machine): "
        + (
            ", ".join(f"{k} {np.mean(v):.1f}" for k, v in result["training_minutes"].items())
            or "none measured (runs existed)"
        ),
        "",
    ]
    lines += [f"- {note}" for note in spec.notes] + [""]
    path = out_dir / "reproduce.md"
    path.write_text("\n".join(lines))
    return path


def _fmt(v):
    return "–" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _read_json(path):
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(value, indent=1, default=float))
    tmp.replace(path)
