"""Generation in latent space on the command line (``microlatent.prior``): ``prior train`` fits a
flow-matching prior to a trained VAE's latent codes, ``prior evaluate`` measures its realism and
targeted generation, ``generate`` samples new microstructures by class and target property."""

from __future__ import annotations

from pathlib import Path

import click


def _sampler_options(fn):
    """--steps, --guidance and --property-guidance of the flow sampler."""
    from microlatent.prior.fit import PROPERTY_GUIDANCE

    fn = click.option(
        "--property-guidance",
        type=click.FloatRange(min=0),
        default=PROPERTY_GUIDANCE,
        show_default=True,
        help="Classifier-free guidance scale of the --target condition (1: plain conditional sampling; "
        "3 met targets best on the MICRO2D-like set, README).",
    )(fn)
    fn = click.option(
        "--guidance",
        type=click.FloatRange(min=0),
        default=1.0,
        show_default=True,
        help="Classifier-free guidance scale of the class (1: plain conditional sampling, the most realistic; "
        "2 follows the class more closely).",
    )(fn)
    return click.option(
        "--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Euler steps of the sampler."
    )(fn)


@click.group("prior")
def prior():
    """A learned prior over a VAE's latent codes (conditional flow matching)."""


@prior.command("train")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--data", type=click.Path(dir_okay=False), required=True, help="MICRO2D-layout HDF5 file the VAE was trained on."
)
@click.option(
    "--condition",
    "properties",
    default="",
    help="Properties to condition on, comma-separated (e.g. Ex,Ey; see --labels). "
    "Every prior is conditioned on the class.",
)
@click.option(
    "--labels",
    type=click.Choice(("decoded", "data")),
    default="decoded",
    show_default=True,
    help="Property values each training code is conditioned on. decoded: the FE solver's properties of the "
    "code's own decoded, thresholded image (what sampling it gives; needs no labels in the file); data: the "
    "file's homogenized labels of the input image (the VAE's round-trip error then adds to every sample's).",
)
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Prior folder (default: 'prior' beside CHECKPOINT)."
)
@click.option(
    "--preset",
    type=click.Choice(("cpu", "gpu")),
    default="cpu",
    show_default=True,
    help="cpu: 400 epochs of a 64-wide, 4-block net (minutes on a CPU); gpu: 1000 epochs, 128 wide, 8 blocks.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the preset's batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Override the preset's rate.")
@click.option("--width", type=click.IntRange(min=8), default=None, help="Channels of the flow network (multiple of 8).")
@click.option("--depth", type=click.IntRange(min=1), default=None, help="Residual blocks.")
@click.option("--device", default="cpu", show_default=True, help="Where the flow network trains (auto, cpu, cuda).")
@click.option("--n", "limit", type=click.IntRange(min=1), default=None, help="At most N training images per class.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the prior in --out from its last epoch.")
def train(
    checkpoint, data, properties, labels, out, preset, epochs, batch_size, lr, width, depth, device, limit, seed, resume
):
    """Train a latent prior on CHECKPOINT's encoded training split of --data.

    Writes prior.pt (atomically, after every epoch; --resume continues exactly) and losses.csv.
    """
    from microlatent.errors import InputError
    from microlatent.prior.fit import PRESETS, fit_prior

    given = dict(epochs=epochs, batch_size=batch_size, lr=lr, width=width, depth=depth, seed=seed, labels=labels)
    settings = {**PRESETS[preset], **{k: v for k, v in given.items() if v is not None}}
    if settings["width"] % 8:
        raise InputError(f"--width must be a multiple of 8 (group normalisation), got {settings['width']}")
    out = Path(out) if out else Path(checkpoint).resolve().parent / "prior"
    names = tuple(p.strip() for p in properties.split(",") if p.strip())
    settings = {} if resume else settings  # a resumed prior keeps the settings it started with
    fitted = fit_prior(checkpoint, data, out, properties=names, resume=resume, limit=limit, device=device, **settings)
    conditions = ", ".join(["class"] + fitted.properties)
    click.echo(f"prior on {len(fitted.classes)} classes, conditioned on {conditions}; wrote {out / 'prior.pt'}")


@prior.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--prior", "prior_dir", type=click.Path(), required=True, help="Prior folder (`microlatent prior train`)."
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    required=True,
    help="The data file (its held-out test split is the reference).",
)
@click.option(
    "--n", type=click.IntRange(min=4), default=64, show_default=True, help="Samples (and real images) per class."
)
@_sampler_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder (default: PRIOR/evaluation).")
@click.option("--device", default="cpu", show_default=True, help="Device that encodes and decodes (auto, cpu, cuda).")
def evaluate(checkpoint, prior_dir, data, n, steps, guidance, property_guidance, seed, out, device):
    """Realism of the prior's samples per class against held-out real images, against the
    real-vs-real floor and against decoding N(0, I); with property conditioning, FE-verified error of
    targeted samples. Writes realism.json, report.md and samples_<class>.png."""
    from microlatent.models.run import Run
    from microlatent.prior import Prior, evaluate_prior, write_evaluation
    from microlatent.prior.evaluate import summary_lines

    fitted = Prior.load(prior_dir)
    run = Run.load(checkpoint, device)
    result = evaluate_prior(
        run,
        fitted,
        data,
        n=n,
        steps=steps,
        guidance=guidance,
        seed=seed,
        progress=lambda m: click.echo(m, err=True),
        property_guidance=property_guidance,
    )
    out = Path(out) if out else Path(prior_dir) / "evaluation"
    write_evaluation(result, out)
    for line in summary_lines(result):
        click.echo(line)
    click.echo(f"wrote {out} (report.md, realism.json, samples_<class>.png)")


@click.command("generate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--prior", "prior_dir", type=click.Path(), required=True, help="Prior folder (`microlatent prior train`)."
)
@click.option("--class", "class_name", default=None, help="Class to sample (default: any, unconditional).")
@click.option(
    "--target", "targets", multiple=True, metavar="NAME=VALUE", help="Target property, e.g. --target Ex=6 (repeatable)."
)
@click.option("--n", type=click.IntRange(min=1), default=64, show_default=True)
@_sampler_options
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same samples.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--device", default="cpu", show_default=True, help="Device that encodes and decodes (auto, cpu, cuda).")
def generate(checkpoint, prior_dir, class_name, targets, n, steps, guidance, property_guidance, seed, out, device):
    """Sample new microstructures from a latent prior and CHECKPOINT's decoder.

    Writes generated.h5 (MICRO2D layout: one class, named after --class or 'generated', so the
    samples feed every other command; a K-phase VAE's as K-phase labels), samples.png and
    statistics.npz (phase-1 autocorrelations).
    """
    import numpy as np

    from microlatent.data.store import write_class
    from microlatent.design.search import parse_targets
    from microlatent.models.run import Run
    from microlatent.plotting import plot_images_with_statistics, plot_phase_statistics
    from microlatent.prior import Prior
    from microlatent.prior.fit import generate as sample_images
    from microlatent.stats.correlation import two_point
    from microlatent.stats.pca import as_phases

    fitted = Prior.load(prior_dir)
    wanted = parse_targets(targets) if targets else None
    run = Run.load(checkpoint, device)
    images, _, latents = sample_images(
        run, fitted, n, class_name, wanted, steps, guidance, seed, property_guidance=property_guidance
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = class_name or "generated"
    label = (
        f"prior sample seed {seed}"
        + (f" {name}" if class_name else "")
        + "".join(f" {k}={v:g}" for k, v in (wanted or {}).items())
    )
    h5 = out / "generated.h5"
    h5.unlink(missing_ok=True)
    k = run.model.n_phases
    write_class(h5, name, images, [f"{label} #{i}" for i in range(n)], n_phases=k)
    np.savez_compressed(
        out / "statistics.npz", f11=two_point(as_phases(images, k), pairs=[(1, 1)])[:, 0], latents=latents
    )
    titles = [f"#{i}" for i in range(min(n, 12))]
    if k > 2:
        plot_phase_statistics(images[:6], k, [(h, h) for h in range(k)], titles[:6], path=out / "samples.png")
        vf = np.stack([(images == h).mean(axis=(1, 2)) for h in range(k)], axis=1)
        shares = ", ".join(f"{m:.3f}" for m in vf.mean(axis=0))
        click.echo(f"{n} samples ({label}); mean volume fraction of phases 0..{k - 1}: {shares}")
    else:
        plot_images_with_statistics(images[:12].astype(np.float32), titles, path=out / "samples.png")
        vf = images.mean(axis=(1, 2))
        click.echo(f"{n} samples ({label}); volume fraction {vf.mean():.3f} +- {vf.std():.3f}")
    click.echo(f"wrote {h5}, {out / 'samples.png'}, {out / 'statistics.npz'}")
