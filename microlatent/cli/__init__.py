"""The ``microlatent`` command line: one click group, one module per command family."""

import sys

import click

from microlatent import __version__
from microlatent.errors import MicrolatentError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="microlatent")
def cli():
    """Small, reversible latent representations of microstructures."""


def _register_commands():
    # Imported here so `microlatent --help` stays quick and each family lives in its own module.
    from microlatent.cli.data import data
    from microlatent.cli.demo import demo
    from microlatent.cli.design import design
    from microlatent.cli.evaluate import compare, evaluate, latent_vs_pca, report
    from microlatent.cli.model import model
    from microlatent.cli.prior import generate, prior
    from microlatent.cli.properties import properties
    from microlatent.cli.reproduce import reproduce
    from microlatent.cli.stats import stats
    from microlatent.cli.sweep import sweep
    from microlatent.cli.synthesize import synthesize
    from microlatent.cli.train import configs, finetune, train

    for command in (
        demo,
        data,
        stats,
        train,
        finetune,
        sweep,
        configs,
        model,
        evaluate,
        compare,
        report,
        latent_vs_pca,
        reproduce,
        synthesize,
        properties,
        design,
        prior,
        generate,
    ):
        cli.add_command(command)


def main(argv=None):
    """Console-script entry point: user errors become one line on stderr and exit status 2."""
    _register_commands()
    try:
        cli.main(args=argv, prog_name="microlatent", standalone_mode=False)
    except MicrolatentError as err:
        click.echo(f"microlatent: error: {err}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("microlatent: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:  # a bad option or argument: the same one-line format
        ctx = getattr(err, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        click.echo(f"microlatent: error: {' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(2 if err.exit_code in (1, 2) else err.exit_code)
