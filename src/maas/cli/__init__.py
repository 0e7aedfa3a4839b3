"""The `maas` command line.

`serve`, `worker` and `db` run maas itself; `models`, `rollout`, `traffic`, `keys`, `events`,
`gateways` and `workers` talk to a running server's admin API (`MAAS_URL`, key from
`MAAS_API_KEY` or `maas-data/admin.key`). Results go to stdout (`--json`: the API's own
answer), errors to stderr in one line; under `--json` an error is also an error object on
stdout, `{"error": {"code", "message"}}`. Exit codes: 0 done, 1 refused, 2 usage, 3 server
unreachable.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from maas.cli import keys, ops, optimize, rollout, serve, shadow, traffic, versions
from maas.cli.output import CliError, UsageFailure, emit_json, error_object, one_line

__all__ = ["main"]


class MaasGroup(click.Group):
    """A group whose every error, usage errors included, is one line on stderr."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        as_json = _asks_for_json(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            message = one_line(exc.format_message())
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            _fail(UsageFailure(message + hint), as_json)
        except CliError as exc:
            _fail(exc, as_json)
        except click.ClickException as exc:
            message = one_line(exc.format_message())
            if as_json:
                emit_json(error_object("error", message))
            click.echo(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            if as_json:
                emit_json(error_object("aborted", "aborted"))
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _asks_for_json(args: Sequence[str]) -> bool:
    """`--json` among the options (read from the raw arguments: a usage error may come before
    click has parsed them)."""
    options = list(args)
    if "--" in options:
        options = options[: options.index("--")]
    return "--json" in options


def _fail(error: CliError, as_json: bool) -> NoReturn:
    """One `error: ...` line on stderr; under `--json` the error object on stdout as well."""
    if as_json:
        emit_json(error.as_json())
    error.show()
    sys.exit(error.exit_code)


@click.group(cls=MaasGroup)
@click.version_option(package_name="maas")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="The maas server for admin commands (default: MAAS_URL, else http://127.0.0.1:8000).",
)
def main(url: str | None) -> None:
    """maas: model-as-a-service gateway for PyTorch models."""


main.add_command(serve.serve)
main.add_command(serve.worker)
main.add_command(serve.db)
main.add_command(versions.models)
versions.models.add_command(optimize.models_optimize)
versions.models.add_command(shadow.models_shadow)
main.add_command(rollout.rollout)
main.add_command(traffic.traffic)
main.add_command(keys.keys)
main.add_command(ops.events)
main.add_command(ops.gateways)
main.add_command(ops.workers)
