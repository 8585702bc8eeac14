"""The `haggler` command: the root group, which gathers the command groups of the other modules,
and the entry point.

Bad input ends with one line `haggler: error: ...` on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

import click

from haggler.cli.abuse import bench_abuse
from haggler.cli.archive import archive
from haggler.cli.benchmarks import bench_latency, bench_processes, bench_service
from haggler.cli.crash import bench_crash
from haggler.cli.generalisation import bench_generalisation
from haggler.cli.model import evaluate, negotiate, starter_model, train
from haggler.cli.operations import ab_test, checkpoints, evaluate_candidate
from haggler.cli.page_load import bench_page_load
from haggler.cli.safety_benchmarks import bench_ab, bench_ope, bench_rollback, bench_safety
from haggler.cli.scale import bench_scale
from haggler.cli.service import learn, serve
from haggler.cli.users import users


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haggler")
def cli() -> None:
    """haggler: a buyer-side negotiation agent that haggles prices and learns online."""


for command in (
    train,
    starter_model,
    evaluate,
    negotiate,
    serve,
    learn,
    bench_service,
    bench_latency,
    bench_processes,
    bench_generalisation,
    bench_ope,
    bench_ab,
    bench_rollback,
    bench_safety,
    bench_crash,
    bench_abuse,
    bench_scale,
    bench_page_load,
    checkpoints,
    evaluate_candidate,
    ab_test,
    users,
    archive,
):
    cli.add_command(command)


def main() -> None:
    """Entry point: one-line errors, no tracebacks, for every bad input."""
    from haggler.core.negotiation import ProtocolError
    from haggler.learning.checkpoints import CheckpointError
    from haggler.policy.snapshot import ModelFileError

    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        click.echo("haggler: aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        click.echo(f"haggler: error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (ModelFileError, CheckpointError, ProtocolError, ValueError, OSError) as error:
        click.echo(f"haggler: error: {error}", err=True)
        sys.exit(1)
