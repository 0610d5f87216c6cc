"""``corral session``: open a session on a node, as ``aws ssm start-session`` and its plugin.

``start`` is an interactive shell (or the command of another session document): the terminal
goes raw, what is typed goes to the node, what the node prints comes back, and the command
ends with the remote program's status.  ``~.`` at the start of a line leaves (as ssh's escape)
and ends the session.  ``port-forward`` listens on a local port and carries each connection
to a port on the node (or, through it, on another host).

The terminal is session_terminal.py, the stream and the shell's loop session_stream.py, the
port forwarding session_forward.py; asyncio and websockets are imported only here, in the
commands.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import click

from agent import wire
from control_plane.cli.context import Runtime, pass_runtime
from control_plane.cli.errors import BadResponse, CliError

if TYPE_CHECKING:
    import socket
    from ssl import SSLContext

    from control_plane.cli.profiles import Profile
    from control_plane.cli.session_stream import Outcome, StreamTarget

SHELL_DOCUMENT: Final = "Corral-StartShell"
PORT_DOCUMENT: Final = "Corral-StartPortForwarding"
REMOTE_PORT_DOCUMENT: Final = "Corral-StartPortForwardingToRemoteHost"


@click.group()
def session() -> None:
    """Open a session on a node: a shell, or local TCP ports forwarded to it."""


@session.command()
@click.argument("node")
@click.option("--document", default=SHELL_DOCUMENT, show_default=True, metavar="NAME",
              help="The session document.")  # fmt: skip
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A document parameter (repeatable; a name given twice is a list).")  # fmt: skip
@click.option("--reason", metavar="TEXT", help="Why (kept in the session's record).")
@click.option("--run-as", metavar="USER",
              help="The node's user to run as (your policies decide which you may).")  # fmt: skip
@pass_runtime
def start(
    rt: Runtime,
    node: str,
    document: str,
    params: tuple[str, ...],
    reason: str | None,
    run_as: str | None,
) -> None:
    """Start an interactive session on NODE (its id or its name).

    Type ~. at the start of a line to leave; the session is then terminated.  With stdin
    not a terminal, it is sent as it is and the output is not a terminal's."""
    import asyncio

    from control_plane.cli.run import parse_params
    from control_plane.cli.session_terminal import (
        DEFAULT_SIZE,
        pipe_chunks,
        raw_mode,
        terminal_size,
        tty_chunks,
    )

    parameters = parse_params(params)
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    tty_fd = _fileno(stdin) if stdin.isatty() else None
    fds = [fd for fd in (_fileno(stdout), tty_fd) if fd is not None]
    cols, rows = terminal_size(*fds) if tty_fd is not None else DEFAULT_SIZE
    body: dict[str, Any] = {"document": document, "parameters": parameters}
    body |= {"cols": cols, "rows": rows} | ({"reason": reason} if reason is not None else {})
    if run_as is not None:
        body["run_as"] = run_as
    profile = rt.profile()
    session_id, target, _node_id = _open(rt, profile, node, body)

    def size() -> tuple[int, int]:
        return terminal_size(*fds)

    async def run() -> Outcome:
        from control_plane.cli.session_stream import Channel, shell

        keys = tty_chunks(tty_fd) if tty_fd is not None else pipe_chunks(stdin)
        tty = tty_fd is not None
        return await shell(
            Channel(session_id, target), keys, stdout, tty=tty, size=size if tty else None
        )

    with raw_mode(tty_fd) if tty_fd is not None else contextlib.nullcontext():
        outcome = asyncio.run(run())
    _conclude(rt, profile, session_id, outcome)


@session.command("port-forward")
@click.argument("node")
@click.option("--remote-port", type=click.IntRange(1, 65535), required=True, metavar="PORT",
              help="The port to reach on the node (or on --remote-host).")  # fmt: skip
@click.option("--local-port", type=click.IntRange(0, 65535), required=True, metavar="PORT",
              help="The local port to listen on (0: any free port).")  # fmt: skip
@click.option("--remote-host", metavar="HOST",
              help="Forward to this host, as the node reaches it (default: the node).")  # fmt: skip
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="The local address to listen on.")  # fmt: skip
@pass_runtime
def port_forward(
    rt: Runtime, node: str, remote_port: int, local_port: int, remote_host: str | None, bind: str
) -> None:
    """Forward local TCP connections to a port on NODE (its id or its name), or to
    --remote-host through it, until Ctrl-C.  Many connections at once share the session."""
    import asyncio

    from control_plane.cli.session_forward import forward
    from control_plane.cli.session_stream import Channel

    listener = _listen(bind, local_port)
    with contextlib.closing(listener):
        port = listener.getsockname()[1]
        parameters = {"portNumber": str(remote_port), "localPortNumber": str(port)}
        document = PORT_DOCUMENT
        if remote_host is not None:
            parameters["host"] = remote_host
            document = REMOTE_PORT_DOCUMENT
        profile = rt.profile()
        body = {"document": document, "parameters": parameters}
        session_id, target, node_id = _open(rt, profile, node, body)
        here = f"[{bind}]" if ":" in bind else bind
        click.echo(f"Forwarding {here}:{port} -> {remote_host or node_id}:{remote_port}", err=True)
        click.echo("Waiting for connections...", err=True)
        _flush_stderr()

        def note(line: str) -> None:
            click.echo(line, err=True)

        async def run() -> Outcome:
            return await forward(Channel(session_id, target), listener, note)

        outcome = asyncio.run(run())
    _conclude(rt, profile, session_id, outcome)


def _open(
    rt: Runtime, profile: Profile, node: str, body: dict[str, Any]
) -> tuple[str, StreamTarget, str]:
    """Create the session: (its id, where its stream is, the node's id)."""
    from control_plane.cli.inventory import node_id_of
    from control_plane.cli.session_stream import StreamTarget, stream_url

    tls = _tls(profile)  # a missing CA fails before a session exists
    with rt.client(profile) as api:
        node_id = node_id_of(api, node)
        created = api.post("/v1/sessions", {"node_id": node_id, **body})
    session_id = created.get("session_id") if isinstance(created, dict) else None
    path = created.get("stream_path") if isinstance(created, dict) else None
    if not isinstance(session_id, str) or not wire.SESSION_ID_RE.match(session_id):
        raise BadResponse(f"{api.url} answered POST /v1/sessions without a session id")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadResponse(f"{api.url} answered POST /v1/sessions without the stream's path")
    click.echo(f"Starting session with SessionId: {session_id}", err=True)
    _flush_stderr()
    return session_id, StreamTarget(stream_url(profile.url, path), profile.token, tls), node_id


def _tls(profile: Profile) -> SSLContext | None:
    if not profile.url.startswith("https:"):
        return None
    from control_plane.cli.client import ssl_context

    return ssl_context(profile.ca_file)


def _conclude(rt: Runtime, profile: Profile, session_id: str, outcome: Outcome) -> None:
    """Say how the session ended, end it on the server if it may live on, exit with its
    status."""
    if outcome.message:
        click.echo(outcome.message, err=True)
    if outcome.terminate:
        with rt.client(profile) as api:
            api.post(f"/v1/sessions/{session_id}/terminate")
    click.get_current_context().exit(outcome.status)


def _listen(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind``:``port`` (IPv4 or IPv6), before any session exists."""
    import socket

    try:
        infos = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        return socket.create_server(address, family=family)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).split(" (while attempting", 1)[0]
        raise CliError(f"cannot listen on {bind}:{port}: {reason}") from None


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None


def _flush_stderr() -> None:
    sys.stderr.flush()
