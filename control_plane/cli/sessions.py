"""``corral sessions``: the sessions there are and were, and what was recorded of them.

``list`` and ``show`` are the records (``aws ssm describe-sessions``); ``terminate`` ends a
session (both ends are told, the node kills its processes); ``replay`` plays a recording's
output back in the terminal with its timing (idle gaps cut to 2 s, as asciinema's
``idle_time_limit``); ``export`` writes the server's asciicast v2 export of it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final
from urllib.parse import quote

import click

from agent import wire
from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import BadResponse, CliError
from control_plane.cli.output import Column, emit_list, emit_object, field

if TYPE_CHECKING:
    from agent.sessions.recording import Event

IDLE_LIMIT: Final = 2.0  # seconds: a longer pause in a recording is replayed as this long
SHOW_FIELDS: Final = (
    "session_id", "node_id", "status", "status_reason", "owner", "document", "session_type",
    "parameters", "run_as", "reason", "started_at", "connected_at", "ended_at",
    "duration_seconds", "exit_status", "recording",
)  # fmt: skip


def _owner(row: Any) -> Any:
    owner = row.get("owner")
    return owner.get("name") or owner.get("token_id") if isinstance(owner, dict) else owner


LIST_COLUMNS: list[Column] = [
    field("session_id"),
    field("node_id"),
    field("status"),
    ("owner", _owner),
    field("document"),
    field("run_as"),
    field("started_at"),
    ("duration", lambda r: r.get("duration_seconds")),
    ("exit", lambda r: r.get("exit_status")),
]


def session_id_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not wire.SESSION_ID_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a session id (s- and 20 hex digits)")
    return value


def _path(session_id: str, *rest: str) -> str:
    return "/".join(["/v1/sessions", quote(session_id, safe=""), *rest])


session_id_argument = click.argument("session_id", metavar="ID", callback=session_id_arg)


@click.group()
def sessions() -> None:
    """Sessions: list and show them, end one, replay or export a recording."""


@sessions.command("list")
@click.option("--state", type=click.Choice(["active", "history"], case_sensitive=False),
              default="active", show_default=True,
              help="Live sessions, or those that ended.")  # fmt: skip
@click.option("--node", metavar="NODE", help="Only the sessions on this node (id or name).")
@max_items_option
@output_option
@pass_runtime
def list_sessions(
    rt: Runtime, state: str, node: str | None, max_items: int | None, output: str
) -> None:
    """Sessions, newest first: yours, and those on nodes you may see."""
    from control_plane.cli.inventory import node_id_of

    params = {"state": state.capitalize()}
    with rt.client() as api:
        if node is not None:
            params["node_id"] = node_id_of(api, node)
        rows = api.get_list("/v1/sessions", "sessions", params=params, max_items=max_items)
    emit_list(rows, LIST_COLUMNS, output)


@sessions.command()
@session_id_argument
@output_option
@pass_runtime
def show(rt: Runtime, session_id: str, output: str) -> None:
    """A session's record: who, where, which document, its status, its recording."""
    with rt.client() as api:
        found = api.get(_path(session_id))
    if not isinstance(found, dict):
        raise BadResponse(f"{api.url} answered GET {_path(session_id)} with no object")
    emit_object(found, output, SHOW_FIELDS)


@sessions.command()
@session_id_argument
@pass_runtime
def terminate(rt: Runtime, session_id: str) -> None:
    """End a session: both ends are told and the node ends its processes."""
    with rt.client() as api:
        found = api.post(_path(session_id, "terminate"))
    status = found.get("status") if isinstance(found, dict) else None
    if not isinstance(status, str):
        raise BadResponse(f"{api.url} answered POST {_path(session_id, 'terminate')} oddly")
    click.echo(f"session {session_id}: {status}")


@sessions.command()
@session_id_argument
@click.option("--speed", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Play faster (2: twice as fast); 0: no pauses at all.")  # fmt: skip
@pass_runtime
def replay(rt: Runtime, session_id: str, speed: float) -> None:
    """Play back what a session printed, with its timing."""
    from agent.sessions.recording import RecordingError, events

    with rt.client() as api:
        data = b"".join(api.stream(_path(session_id, "recording")))
    try:
        recorded = list(events(data))
    except RecordingError as exc:
        raise CliError(f"the recording of {session_id} does not parse: {exc}") from None
    play(recorded, sys.stdout.buffer, speed=speed)


def play(
    recorded: Iterable[Event],
    out: BinaryIO,
    *,
    speed: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Write the output events to ``out``, each after its pause since the last (at most
    IDLE_LIMIT, divided by ``speed``; 0: none)."""
    from agent.sessions.recording import OUTPUT

    last = 0.0
    for event in recorded:
        if event.kind != OUTPUT:
            continue
        pause, last = min(max(0.0, event.time - last), IDLE_LIMIT), event.time
        if speed > 0 and pause > 0:
            sleep(pause / speed)
        out.write(event.data)
        out.flush()


@sessions.command()
@session_id_argument
@click.option("--format", "fmt", type=click.Choice(["asciicast"]), default="asciicast",
              show_default=True, help="asciicast v2 (asciinema's).")  # fmt: skip
@click.option("--output", "-o", "target", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (default: stdout).", metavar="FILE")  # fmt: skip
@pass_runtime
def export(rt: Runtime, session_id: str, fmt: str, target: Path | None) -> None:
    """Export a session's recording (play it with `asciinema play FILE`)."""
    path = _path(session_id, "recording")
    with rt.client() as api:
        chunks = api.stream(path, params={"format": fmt})
        if target is None:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            return
        part = target.with_name(target.name + ".part")  # a failure leaves FILE as it was
        try:
            with part.open("wb") as file:
                for chunk in chunks:
                    file.write(chunk)
            part.replace(target)
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
    click.echo(f"exported session {session_id} to {target}", err=True)
