"""``microlatent demo``: the main job on a CPU-sized default, end to end.

1. generate a small MICRO2D-like set (64 x 64, every class) and a figure of one example of every
   generator (lines, circles, the ten MICRO2D-like classes) beside its autocorrelation;
2. train the MSE model of Cai et al. (cai_mse_cpu) and finetune it with CESS on the central offsets
   (cai_cess_crop_finetune_cpu, eq. 11: the paper's best model, and at CPU scale the one whose binary
   reconstructions keep the statistics far better than MSE's; see README's experiments);
3. draw test-split reconstructions of both models with their autocorrelations, and write the
   evaluation report comparing them (report.html, report.md, metrics.json, figures/).

Re-running continues where an interrupted run stopped: finished steps are skipped, an interrupted
training run resumes from its checkpoint.
"""

from pathlib import Path

import click

from microlatent.errors import DataError, InputError


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("outputs/demo"),
    show_default=True,
    help="Folder for the data, runs, figures and report.",
)
@click.option(
    "--train/--no-train",
    "do_train",
    default=True,
    show_default=True,
    help="Train the two models (about ten minutes on 2 CPU cores), or only make data and figures.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a value of both training configs, e.g. --set optim.epochs=2.",
)
def demo(out, do_train, device, overrides):
    """Generate data, draw every class with its statistics, train an MSE model and its CESS finetune."""
    from microlatent.data import MICRO2D_CLASSES, generate
    from microlatent.plotting import plot_images_with_statistics

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; the demo writes into a folder")
    if not do_train and (overrides or device != "auto"):
        raise InputError("--set and --device apply to training; --no-train trains nothing")
    out.mkdir(parents=True, exist_ok=True)
    examples = out / "examples.png"
    if not examples.exists():
        images, titles = [], []
        for kind in ("lines", "circles", *MICRO2D_CLASSES):
            for name, (batch, _) in generate(kind, 1, seed=0).items():
                images.append(batch[0])
                titles.append(name)
        plot_images_with_statistics(images, titles, examples)
    click.echo(f"examples of every class: {examples}")
    if not do_train:
        return

    from microlatent.evaluation import reconstruction_figure
    from microlatent.training import Interrupted, load_config, train

    data_path = out / "data" / "micro2d_like_256.h5"
    runs = {}
    for name, init_from in (("cai_mse_cpu", None), ("cai_cess_crop_finetune_cpu", "cai_mse_cpu")):
        config = load_config(name, overrides)
        config["data"]["path"] = str(data_path)
        config["train"]["device"] = device
        if init_from:
            config["train"]["init_from"] = str(runs[init_from] / "model.pt")
        run = out / "runs" / name
        if (run / "model.pt").exists():
            click.echo(f"{name}: already trained ({run / 'model.pt'})")
        else:
            click.echo(f"{name}: training ({config['optim']['epochs']} epochs) -> {run}")
            try:
                train(config, run, resume=(run / "checkpoint.pt").exists())
            except Interrupted as stop:
                raise DataError(f"{stop}; run `microlatent demo` again to continue") from None
        runs[name] = run
    figure = reconstruction_figure(
        {name: run / "model.pt" for name, run in runs.items()},
        data_path,
        out / "reconstructions.png",
        split="test",
        limit=1,
        device=device,
    )
    click.echo(f"reconstructions of test images by both models: {figure}")
    from microlatent.evaluation import write_report

    report = write_report(
        {name: run / "model.pt" for name, run in runs.items()}, data_path, out / "report", split="test", device=device
    )
    import json

    from microlatent.evaluation.render import headline_lines

    for line in headline_lines(json.loads(report.with_name("metrics.json").read_text())):
        click.echo(line)
    click.echo(f"evaluation report: {report} (tables: {report.with_name('report.md')})")
