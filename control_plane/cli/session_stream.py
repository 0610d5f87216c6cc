"""The operator's end of a session's stream (``corral session start``): the websocket dialled
to the relay, an :class:`~agent.sessions.endpoint.Endpoint` over it, and the shell's loop.

The stream is ``wss://<the profile's host>/v1/sessions/{id}/stream`` with the operator's token
as Bearer, trusting only the profile's CA (``ws://`` and no TLS for an ``http://`` profile).
A refused upgrade is final for 401, 403 (``CLOSE_SESSION_FORBIDDEN``) and 404
(``CLOSE_SESSION_UNKNOWN``), and so is a certificate that does not verify; anything else is
dialled again by the endpoint within its grace.

The shell (:func:`shell`): what is typed goes out as DATA (through ssh's ``~`` escape when
stdin is a tty), the peer's DATA is written to stdout as it comes, SIGWINCH sends RESIZE, and
the session's end decides the exit status: the remote program's (EXIT), 1 when it ended
otherwise (CLOSED, TERMINATE), 255 after ``~.``, 128+N after signal N.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Connection, ConnectionGone, Endpoint, SessionLost
from control_plane import __version__
from control_plane.cli.errors import CliError, one_line
from control_plane.cli.session_terminal import EscapeFilter

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

OPEN_TIMEOUT: Final = 10.0
GRACE: Final = 30.0  # seconds without the relay before the session is given up
FINISH_TIMEOUT: Final = 5.0  # for our CLOSED to reach the relay
EXIT_LINGER: Final = 2.0  # after EXIT, for the peer's CLOSED
EXIT_DETACHED: Final = 255  # ssh's status after ``~.``
STOP_SIGNALS: Final = ("SIGINT", "SIGTERM", "SIGHUP")


@dataclass(frozen=True)
class StreamTarget:
    url: str
    token: str | None
    ssl: ssl.SSLContext | None


def stream_url(base_url: str, stream_path: str) -> str:
    """``https://host:8443`` + ``/v1/sessions/s-…/stream`` → ``wss://host:8443/v1/…``."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{stream_path}"


@dataclass(frozen=True)
class Outcome:
    """How a session ended for this end: the exit status, a line for stderr, and what to do
    next (``terminate``: ask the server to end the session, nothing may be left running)."""

    status: int
    message: str | None = None
    terminate: bool = False


def exit_status(value: Any) -> int:
    """The remote program's status as this process's (a signal -N as a shell shows it)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 1
    if value < 0:
        return min(128 - value, 255)
    return value if value <= 255 else 1


def frame_json(frame: dc.Frame) -> dict[str, Any]:
    try:
        value = json.loads(frame.payload or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def frame_reason(frame: dc.Frame) -> str:
    return one_line(str(frame_json(frame).get("reason") or ""))


# Dialling -------------------------------------------------------------------------------------


async def dial(target: StreamTarget) -> ClientConnection:
    """One websocket to the relay; refusals mapped as the endpoint expects."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus

    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    try:
        return await connect(
            target.url,
            ssl=target.ssl,
            additional_headers=headers,
            user_agent_header=f"corral-cli/{__version__}",
            open_timeout=OPEN_TIMEOUT,
            max_size=dc.MAX_FRAME,
            compression=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        text = _refusal_text(status, exc.response.body)
        if status == 403:
            raise ConnectionGone(wire.CLOSE_SESSION_FORBIDDEN, text) from None
        if status == 404:
            raise ConnectionGone(wire.CLOSE_SESSION_UNKNOWN, text) from None
        if status == 401:
            raise SessionLost(text) from None
        raise ConnectionGone(None, text) from None
    except ssl.SSLCertVerificationError as exc:
        raise SessionLost(f"TLS verification failed: {exc.verify_message}") from None
    except InvalidHandshake as exc:
        raise ConnectionGone(None, f"no session stream at {target.url}: {exc}") from None


def _refusal_text(status: int, body: bytes | bytearray | None) -> str:
    """The API's ``{"error": {"code", "message"}}`` as ``message (code)``, else the status."""
    try:
        error = json.loads(body or b"")["error"]
        return one_line(f"{error['message']} ({error['code']})")
    except (ValueError, KeyError, TypeError):
        return f"the relay refused the stream: HTTP {status}"


def describe_close(exc: Exception) -> ConnectionGone:
    """A websocket failure as the endpoint's ConnectionGone (with the close code, if any)."""
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return ConnectionGone(exc.rcvd.code, exc.rcvd.reason)
    return ConnectionGone(None, str(exc) or type(exc).__name__)


class Channel:
    """An Endpoint on the session's stream, run as a task; the websocket it last dialled is
    closed when the channel is."""

    def __init__(self, session_id: str, target: StreamTarget, *, grace: float = GRACE) -> None:
        self._target = target
        self._conn: ClientConnection | None = None
        self.endpoint = Endpoint(session_id, self._dial, grace=grace, describe_close=describe_close)
        self.runner: asyncio.Task[None] | None = None

    async def _dial(self) -> Connection:
        self._conn = await dial(self._target)
        return self._conn

    async def __aenter__(self) -> Channel:
        self.runner = asyncio.create_task(self.endpoint.run(), name="session-endpoint")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        runner = self.runner
        if runner is not None and not runner.done():
            runner.cancel()
        if runner is not None:
            with contextlib.suppress(asyncio.CancelledError, SessionLost):
                await runner
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a websocket already gone
                await conn.close()

    def lost(self) -> CliError | None:
        """The endpoint's SessionLost, as the one-line error to end with, if it failed."""
        runner = self.runner
        if runner is None or not runner.done() or runner.cancelled():
            return None
        exc = runner.exception()
        if isinstance(exc, SessionLost):
            return CliError(f"session {self.endpoint.session_id}: {exc}")
        if exc is not None:
            raise exc
        return None

    async def finish(self, reason: str) -> bool:
        """Send CLOSED and wait (bounded) until the relay has it: acknowledged, or the relay
        closed the stream after passing it on.  False: not known to have arrived."""
        runner = self.runner
        if runner is None or runner.done():
            return False
        ender = asyncio.create_task(self.endpoint.end(reason))
        racing = {ender, runner}
        await asyncio.wait(
            racing, timeout=FINISH_TIMEOUT + 1.0, return_when=asyncio.FIRST_COMPLETED
        )
        arrived = self.endpoint.out.unacked_frames == 0 or (
            runner.done() and not runner.cancelled() and runner.exception() is None
        )
        ender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ender
        return arrived


@contextlib.contextmanager
def on_signals(names: tuple[str, ...], act: Callable[[int], None]) -> Iterator[None]:
    """``act(signum)`` on each of the signals named (those this platform has) in the block."""
    loop = asyncio.get_running_loop()
    numbers = [getattr(signal, n) for n in names if hasattr(signal, n)]
    for number in numbers:
        loop.add_signal_handler(number, act, number)
    try:
        yield
    finally:
        for number in numbers:
            loop.remove_signal_handler(number)


# The shell ------------------------------------------------------------------------------------


async def shell(
    channel: Channel,
    keys: AsyncIterator[bytes],
    out: BinaryIO,
    *,
    tty: bool,
    size: Callable[[], tuple[int, int]] | None = None,
) -> Outcome:
    """Run an interactive session until it ends; ``size`` (a tty's) is sent on SIGWINCH."""
    ep = channel.endpoint
    detached = asyncio.Event()
    stopped: list[int] = []
    stop = asyncio.Event()
    resized = asyncio.Event()

    def on_stop(signum: int) -> None:
        stopped.append(signum)
        stop.set()

    async def typing() -> None:
        escape = EscapeFilter() if tty else None
        with contextlib.suppress(SessionLost):
            async for chunk in keys:
                data, leave = escape.feed(chunk) if escape else (chunk, False)
                if data:
                    await ep.send(dc.DATA, data)
                if leave:
                    detached.set()
                    return
            if tty:  # the terminal hung up: as the shell's own ^D
                await ep.send(dc.DATA, b"\x04")

    async def resizing() -> None:
        assert size is not None
        with contextlib.suppress(SessionLost):
            while True:
                await resized.wait()
                resized.clear()
                cols, rows = size()
                await ep.send_json(dc.RESIZE, {"cols": cols, "rows": rows})

    async with channel:
        printing = asyncio.create_task(_print_output(ep, out))
        helpers = [asyncio.create_task(typing())]
        if size is not None:
            helpers.append(asyncio.create_task(resizing()))
        waits = [asyncio.create_task(detached.wait()), asyncio.create_task(stop.wait())]
        try:
            with on_signals(STOP_SIGNALS, on_stop), _on_winch(resized, enabled=size is not None):
                await asyncio.wait([printing, *waits], return_when=asyncio.FIRST_COMPLETED)
                if printing.done():
                    outcome = printing.result()
                    if outcome is None:
                        raise channel.lost() or CliError(
                            f"session {ep.session_id}: the stream ended"
                        )
                    return outcome
                if detached.is_set():
                    message = f"disconnected from session {ep.session_id}"
                    return Outcome(EXIT_DETACHED, message, terminate=True)
                name = signal.Signals(stopped[0]).name
                arrived = await channel.finish(f"the client was stopped ({name})")
                message = f"session {ep.session_id} ended: {name}"
                return Outcome(128 + stopped[0], message, terminate=not arrived)
        finally:
            await cancel(printing, *helpers, *waits)


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _print_output(ep: Endpoint, out: BinaryIO) -> Outcome | None:
    """Write the peer's output until the session ends; its outcome (None: the stream was
    lost before the session ended)."""
    status: int | None = None
    while True:
        if status is None:
            frame = await ep.receive()
        else:  # after EXIT only CLOSED is left to come: do not wait for it for long
            try:
                async with asyncio.timeout(EXIT_LINGER):
                    frame = await ep.receive()
            except TimeoutError:
                return Outcome(status)
        if frame is None:
            return None if status is None else Outcome(status)
        if frame.type == dc.DATA and frame.stream == 0:
            out.write(frame.payload)
            out.flush()
        elif frame.type == dc.EXIT:
            status = exit_status(frame_json(frame).get("status"))
        elif frame.type in (dc.CLOSED, dc.TERMINATE):
            if status is not None:
                return Outcome(status)
            reason = frame_reason(frame) or "no reason given"
            if frame.type == dc.TERMINATE:
                return Outcome(1, f"session {ep.session_id} terminated: {reason}")
            return Outcome(1, f"session ended: {reason}")


@contextlib.contextmanager
def _on_winch(resized: asyncio.Event, *, enabled: bool) -> Iterator[None]:
    if not enabled or not hasattr(signal, "SIGWINCH"):
        yield
        return
    with on_signals(("SIGWINCH",), lambda _signum: resized.set()):
        yield
