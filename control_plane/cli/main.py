"""The ``corral`` entry point: the root group, global options and the one error handler.

Only click and this package's cheap modules are imported here; httpx, rich, json, tomllib
and cryptography are imported inside the commands that use them, so ``corral --help``
starts fast.

Errors are handled once, in :meth:`CorralGroup.main` (which ``CliRunner`` also calls):

* :class:`~control_plane.cli.errors.CliError` → ``error: <message>``, its exit code (1);
* click usage errors → ``error: <message>`` on one line, exit 2;
* anything else → :class:`~control_plane.cli.errors.InternalError`, one line, exit 1.
* stdout closed by its reader (``corral ... | head``, ``| less`` then ``q``) → nothing on
  stderr and the status git and kubectl end with: the process dies of SIGPIPE, which a shell
  shows as 141 (128 + 13); where there is no SIGPIPE (Windows) it exits 141.  This is git's
  ``check_pipe()`` (write_or_die.c): restore SIGPIPE's default action, raise it, exit 141 if
  still alive.  Python ignores SIGPIPE (so a closed socket is an exception, not a death), so
  the CLI gets ``BrokenPipeError`` and turns it into that ending at its entry point.

``--debug`` adds the traceback (on stderr) before that line.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from control_plane import __version__
from control_plane.cli.activations import activations
from control_plane.cli.associations import associations
from control_plane.cli.audit import audit
from control_plane.cli.baselines import baselines
from control_plane.cli.calendars import calendars
from control_plane.cli.commands import commands
from control_plane.cli.completion import COMPLETE_VAR, PROG_NAME, completion, install_callback
from control_plane.cli.compliance import compliance
from control_plane.cli.context import Runtime
from control_plane.cli.documents import documents
from control_plane.cli.errors import CliError, InternalError, one_line
from control_plane.cli.groups import groups
from control_plane.cli.inventory import inventory
from control_plane.cli.login import login
from control_plane.cli.mw import mw
from control_plane.cli.nodes import nodes
from control_plane.cli.parameters import params
from control_plane.cli.patch import patch
from control_plane.cli.run import run
from control_plane.cli.schedule import schedule
from control_plane.cli.session import session
from control_plane.cli.sessions import sessions
from control_plane.cli.tokens import policies, tokens, whoami
from control_plane.cli.webhooks import webhooks

# The status of a CLI whose reader went away: what a shell reports for a death by SIGPIPE.
EXIT_BROKEN_PIPE = 128 + 13


def _error(message: str) -> None:
    click.echo(f"error: {one_line(message)}", err=True)


class StdoutClosed(Exception):
    """The reader of stdout went away (not an OSError: click would end it as exit 1)."""


class CorralGroup(click.Group):
    """A click group whose ``main`` turns every failure into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, BrokenPipeError):  # as raised by a write to stdout; a socket's
                raise StdoutClosed() from exc  # reaches here as ConnectionFailed
            runtime = ctx.find_object(Runtime)
            if runtime is not None and runtime.debug:
                traceback.print_exc(file=sys.stderr)
            if isinstance(exc, CliError):
                raise
            raise InternalError(
                f"unexpected {type(exc).__name__}: {exc} (run `corral --debug ...` for details)"
            ) from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name or PROG_NAME, complete_var or COMPLETE_VAR, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self, args: Sequence[str] | None, prog_name: str, complete_var: str, extra: Any
    ) -> int:
        stdout = sys.stdout
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            _flush_stdout()
        except StdoutClosed:
            return EXIT_BROKEN_PIPE
        except SystemExit:
            # click itself ends a closed pipe met while parsing (--help) with sys.exit, after
            # swapping in a stdout that swallows the final flush.
            if sys.stdout is not stdout:
                return EXIT_BROKEN_PIPE
            raise
        except BrokenPipeError:
            return EXIT_BROKEN_PIPE
        except CliError as exc:
            _error(exc.message)
            return exc.exit_code
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except click.UsageError as exc:
            hint = ""
            bad_value = isinstance(exc, click.BadParameter) and not isinstance(
                exc, click.MissingParameter
            )
            if exc.ctx is not None and not bad_value:
                hint = f" (see '{exc.ctx.command_path} --help')"
            _error(exc.format_message() + hint)
            return exc.exit_code
        except click.ClickException as exc:
            _error(exc.format_message())
            return exc.exit_code
        except click.Abort:
            _error("aborted")
            return 1
        except Exception as exc:  # raised while parsing, before invoke() could wrap it
            _error(f"unexpected {type(exc).__name__}: {exc}")
            return 1
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


@click.group(
    name=PROG_NAME,
    cls=CorralGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--profile",
    "profile_name",
    metavar="NAME",
    help="Profile to use (default: the current one, set by `corral login`).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option(
    "--install-completion",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=install_callback,
    help="Install shell completion for your $SHELL (bash, zsh or fish) and exit.",
)
@click.version_option(__version__, "--version", prog_name=PROG_NAME)
@click.pass_context
def cli(ctx: click.Context, profile_name: str | None, debug: bool) -> None:
    """Operate a Corral control plane: activations and managed nodes.

    Start with `corral login --url URL --token TOKEN --ca-hash sha256:HEX`.
    CORRAL_URL, CORRAL_TOKEN and CORRAL_CA_FILE override the profile's fields.
    """
    runtime = ctx.ensure_object(Runtime)
    runtime.profile_name = profile_name
    runtime.debug = debug


cli.add_command(login)
cli.add_command(activations)
cli.add_command(nodes)
cli.add_command(documents)
cli.add_command(completion)
cli.add_command(run)
cli.add_command(commands)
cli.add_command(groups)
cli.add_command(webhooks)
cli.add_command(tokens)
cli.add_command(whoami)
cli.add_command(policies)
cli.add_command(audit)
cli.add_command(params)
cli.add_command(schedule)
cli.add_command(associations)
cli.add_command(compliance)
cli.add_command(inventory)
cli.add_command(mw)
cli.add_command(calendars)
cli.add_command(baselines)
cli.add_command(patch)
cli.add_command(session)
cli.add_command(sessions)


def _flush_stdout() -> None:
    """Write what is buffered now, where a closed pipe can still be handled."""
    if sys.stdout is not None:
        sys.stdout.flush()


def _die_of_sigpipe() -> None:
    """End as git does when its reader has gone: quietly, by SIGPIPE (status 141)."""
    try:  # the interpreter flushes stdout at exit: let that go nowhere instead of failing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sigpipe = getattr(signal, "SIGPIPE", None)
    if sigpipe is not None:
        signal.signal(sigpipe, signal.SIG_DFL)
        os.kill(os.getpid(), sigpipe)
    sys.exit(EXIT_BROKEN_PIPE)


def main() -> None:
    code = cli.main(prog_name=PROG_NAME, standalone_mode=False)
    if code == EXIT_BROKEN_PIPE:
        _die_of_sigpipe()
    sys.exit(code)
