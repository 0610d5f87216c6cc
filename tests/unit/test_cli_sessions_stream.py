"""The CLI's end of a session's stream against an in-test websockets server on 127.0.0.1 that
plays the relay and the agent's end (an ``Endpoint``, as the agent has): the shell's exit
status, output, escape, resize, signals and the endings it reports; port forwarding with
two local connections at once, half-closes and a connection the node closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import socket
import termios
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Connection, Endpoint
from control_plane.cli.context import Runtime
from control_plane.cli.errors import CliError
from control_plane.cli.main import cli
from control_plane.cli.session_forward import forward
from control_plane.cli.session_stream import (
    Channel,
    Outcome,
    StreamTarget,
    describe_close,
    shell,
    stream_url,
)
from control_plane.cli.session_terminal import pipe_chunks, raw_mode, tty_chunks

SID = "s-0123456789abcdef0123"
NODE = "mi-0123456789abcdef0"
PATH = f"/v1/sessions/{SID}/stream"
TOKEN = "crl_t"
Script = Callable[["FakeNode", Endpoint], Awaitable[None]]


class FakeNode:
    """The relay and the agent in one: each websocket the CLI opens is taken by the agent's
    Endpoint as its own dialled connection; ``script`` drives the agent, and when it returns
    the websockets are closed with CLOSE_SESSION_ENDED, as the relay does."""

    def __init__(self, script: Script, *, refuse: tuple[int, dict[str, Any]] | None = None):
        self.script = script
        self.refuse = refuse
        self.requests: list[Request] = []
        self.conns: list[ServerConnection] = []
        self.frames: list[dc.Frame] = []  # what the agent received
        self.errors: list[BaseException] = []
        self._incoming: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self._arrived = asyncio.Event()

    def data(self, stream: int = 0) -> bytes:
        return b"".join(f.payload for f in self.frames if f.type == dc.DATA and f.stream == stream)

    def of(self, kind: int) -> list[dc.Frame]:
        return [f for f in self.frames if f.type == kind]

    async def receive(self, agent: Endpoint) -> dc.Frame | None:
        frame = await agent.receive()
        if frame is not None:
            self.frames.append(frame)
            self._arrived.set()
        return frame

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not check():
                self._arrived.clear()
                if not check():
                    await self._arrived.wait()

    def _process(self, conn: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if self.refuse is None:
            return None
        status, body = self.refuse
        return conn.respond(status, json.dumps(body))

    async def _handler(self, conn: ServerConnection) -> None:
        self.conns.append(conn)
        self._arrived.set()
        await self._incoming.put(conn)
        await conn.wait_closed()

    async def _take(self) -> Connection:
        return await self._incoming.get()

    async def _drive(self, agent: Endpoint) -> None:
        try:
            await self.script(self, agent)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            for conn in self.conns:
                await conn.close(wire.CLOSE_SESSION_ENDED, "the session has ended")

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve; yields the base URL (``http://127.0.0.1:PORT``)."""
        async with serve(
            self._handler, "127.0.0.1", 0, process_request=self._process,
            max_size=dc.MAX_FRAME, compression=None,
        ) as server:  # fmt: skip
            port = next(iter(server.sockets)).getsockname()[1]
            agent = Endpoint(SID, self._take, grace=5.0, describe_close=describe_close)
            running = asyncio.create_task(agent.run())
            driving = asyncio.create_task(self._drive(agent))
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                for task in (driving, running):
                    task.cancel()
                await asyncio.gather(driving, running, return_exceptions=True)
        assert not [e for e in self.errors if not isinstance(e, asyncio.CancelledError)]


def channel(url: str, grace: float = 5.0) -> Channel:
    return Channel(SID, StreamTarget(stream_url(url, PATH), TOKEN, None), grace=grace)


async def no_input() -> AsyncIterator[bytes]:
    """A stdin that never sends anything and never ends."""
    await asyncio.Event().wait()
    yield b""  # pragma: no cover


# Agent scripts ---------------------------------------------------------------------------------


async def echo_line_then_exit_3(node: FakeNode, agent: Endpoint) -> None:
    await agent.send(dc.DATA, b"$ ")
    while b"\n" not in node.data():
        await node.receive(agent)
    await agent.send(dc.DATA, node.data().replace(b"\n", b"\r\n") + b"bye\r\n")
    await agent.send_json(dc.EXIT, {"status": 3})
    await agent.send_json(dc.CLOSED, {"reason": "the program exited"})


async def read_until_closed(node: FakeNode, agent: Endpoint) -> None:
    while (frame := await node.receive(agent)) is not None:
        if frame.type == dc.CLOSED:
            return


async def pump(node: FakeNode, agent: Endpoint) -> None:
    """Receive in the background (so ``until`` sees frames) until the script's end."""
    while await node.receive(agent) is not None:
        pass


# The shell, through `corral session start` -----------------------------------------------------


@contextlib.contextmanager
def node_in_thread(node_script: Script) -> Iterator[tuple[str, FakeNode]]:
    """A FakeNode in a thread of its own: the CLI runs its own event loop in this one."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        node = FakeNode(node_script)
        stop = asyncio.Event()
        async with node.serving() as url:
            box.update(url=url, node=node, stop=stop, loop=asyncio.get_running_loop())
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: box.update(done=asyncio.run(main())))
    thread.start()
    try:
        assert started.wait(10)
        yield box["url"], box["node"]
    finally:
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
    assert "done" in box  # the node's own checks passed


def test_start_sends_piped_stdin_and_exits_with_the_remote_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        created.append(request)
        body = {"session_id": SID, "node_id": NODE, "document": "Corral-StartShell",
                "run_as": "ops", "status": "Connecting", "stream_path": PATH}  # fmt: skip
        return httpx.Response(201, json=body)

    with node_in_thread(echo_line_then_exit_3) as (url, node):
        monkeypatch.setenv("CORRAL_CONFIG", str(tmp_path / "none.toml"))
        monkeypatch.setenv("CORRAL_URL", url)
        monkeypatch.setenv("CORRAL_TOKEN", TOKEN)
        result = CliRunner().invoke(
            cli, ["session", "start", NODE, "--param", "shell=bash", "--reason", "ticket 42"],
            input=b"exit 3\n", obj=Runtime(transport=httpx.MockTransport(api)),
        )  # fmt: skip
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert result.stdout_bytes == b"$ exit 3\r\nbye\r\n"
    assert result.stderr == f"Starting session with SessionId: {SID}\n"
    assert node.data() == b"exit 3\n"  # as piped: no ^D, no escape processing
    assert json.loads(created[0].content) == {
        "node_id": NODE, "document": "Corral-StartShell", "parameters": {"shell": "bash"},
        "reason": "ticket 42", "cols": 80, "rows": 24,
    }  # fmt: skip
    (upgrade,) = node.requests
    assert upgrade.path == PATH and upgrade.headers["Authorization"] == f"Bearer {TOKEN}"


# The shell's endings ------------------------------------------------------------------------


async def closed_for_idleness(node: FakeNode, agent: Endpoint) -> None:
    await agent.send(dc.DATA, b"$ ")
    await agent.send_json(dc.CLOSED, {"reason": "idle for 20 minutes"})


async def terminated_by_bob(node: FakeNode, agent: Endpoint) -> None:
    await agent.send(dc.DATA, b"$ ")
    await agent.connected.wait()  # the HELLOs exchanged, "$ " written
    frame = dc.Frame(dc.TERMINATE, json.dumps({"reason": "terminated by bob"}).encode())
    await node.conns[-1].send(frame.encode())


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        (closed_for_idleness, Outcome(1, "session ended: idle for 20 minutes")),
        (terminated_by_bob, Outcome(1, f"session {SID} terminated: terminated by bob")),
    ],
)
def test_a_session_ended_without_exit_reports_why(script: Script, outcome: Outcome) -> None:
    async def main() -> tuple[Outcome, bytes]:
        out = BytesIO()
        async with FakeNode(script).serving() as url:
            ended = await shell(channel(url), pipe_chunks(BytesIO(b"")), out, tty=False)
        return ended, out.getvalue()

    assert asyncio.run(main()) == (outcome, b"$ ")


def test_a_refused_stream_is_final_and_one_line() -> None:
    error = {"error": {"code": "forbidden", "message": f"{SID} is not your session"}}

    async def main() -> None:
        async with FakeNode(read_until_closed, refuse=(403, error)).serving() as url:
            await shell(channel(url, grace=30.0), no_input(), BytesIO(), tty=False)

    with pytest.raises(CliError) as caught:
        asyncio.run(asyncio.wait_for(main(), 10))  # not the 30 s grace
    assert str(caught.value) == f"session {SID}: {SID} is not your session (forbidden)"


def test_a_tty_session_sends_keys_and_resizes_and_leaves_on_tilde_dot() -> None:
    async def main() -> tuple[FakeNode, Outcome]:
        node = FakeNode(pump)
        master, slave = pty.openpty()
        try:
            before = termios.tcgetattr(slave)
            async with node.serving() as url:
                with raw_mode(slave):
                    keys = tty_chunks(slave)
                    task = asyncio.create_task(
                        shell(channel(url), keys, BytesIO(), tty=True, size=lambda: (100, 30))
                    )
                    os.write(master, b"ls\r")
                    await node.until(lambda: node.data() == b"ls\r")
                    os.kill(os.getpid(), signal.SIGWINCH)
                    await node.until(lambda: bool(node.of(dc.RESIZE)))
                    os.write(master, b"~~\r~.")
                    outcome = await asyncio.wait_for(task, 10)
                assert termios.tcgetattr(slave) == before
        finally:
            os.close(master)
            os.close(slave)
        return node, outcome

    node, outcome = asyncio.run(main())
    assert outcome == Outcome(255, f"disconnected from session {SID}", terminate=True)
    assert node.data() == b"ls\r~\r"  # ~~ sent one ~; ~. was not sent
    (resize,) = node.of(dc.RESIZE)
    assert json.loads(resize.payload) == {"cols": 100, "rows": 30}


def test_sigterm_ends_the_session_and_restores_the_terminal() -> None:
    async def main() -> tuple[FakeNode, Outcome]:
        node = FakeNode(read_until_closed)
        master, slave = pty.openpty()
        try:
            before = termios.tcgetattr(slave)
            async with node.serving() as url:
                with raw_mode(slave):
                    task = asyncio.create_task(
                        shell(channel(url), tty_chunks(slave), BytesIO(), tty=True)
                    )
                    os.write(master, b"x")
                    await node.until(lambda: node.data() == b"x")
                    os.kill(os.getpid(), signal.SIGTERM)
                    outcome = await asyncio.wait_for(task, 10)
                assert termios.tcgetattr(slave) == before
        finally:
            os.close(master)
            os.close(slave)
        return node, outcome

    node, outcome = asyncio.run(main())
    assert outcome == Outcome(143, f"session {SID} ended: SIGTERM")  # CLOSED went through
    (closed,) = node.of(dc.CLOSED)
    assert json.loads(closed.payload) == {"reason": "the client was stopped (SIGTERM)"}


# Port forwarding ------------------------------------------------------------------------------


async def upper_echo(node: FakeNode, agent: Endpoint) -> None:
    """Each stream's bytes back in upper case; a half-close answered with one; ``reset``
    answered with a full CLOSE, as a refused or reset target connection is."""
    while (frame := await node.receive(agent)) is not None:
        if frame.type == dc.DATA and frame.payload == b"reset":
            await agent.send_json(dc.CLOSE, {"reason": "connection reset by db"}, frame.stream)
        elif frame.type == dc.DATA:
            await agent.send(dc.DATA, frame.payload.upper(), frame.stream)
        elif frame.type == dc.CLOSE and frame.flags & dc.FLAG_HALF:
            await agent.send(dc.DATA, b"!", frame.stream)  # still flows the other way
            await agent.send(dc.CLOSE, b"{}", frame.stream, flags=dc.FLAG_HALF)
        elif frame.type == dc.CLOSED:
            return


def test_port_forward_carries_two_connections_at_once_with_half_closes() -> None:
    async def main() -> tuple[FakeNode, Outcome, list[str]]:
        node = FakeNode(upper_echo)
        notes: list[str] = []
        async with node.serving() as url:
            listener = socket.create_server(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            task = asyncio.create_task(forward(channel(url), listener, notes.append))
            a_in, a_out = await asyncio.open_connection("127.0.0.1", port)
            await node.until(lambda: len(node.of(dc.OPEN)) == 1)
            b_in, b_out = await asyncio.open_connection("127.0.0.1", port)
            await node.until(lambda: len(node.of(dc.OPEN)) == 2)
            a_out.write(b"hello")
            b_out.write(b"world")
            assert await b_in.readexactly(5) == b"WORLD"
            assert await a_in.readexactly(5) == b"HELLO"
            a_out.write_eof()  # a half-close: the answer still comes, then EOF
            assert await a_in.read() == b"!"
            b_out.write(b" again")
            assert await b_in.readexactly(6) == b" AGAIN"
            b_out.write(b"reset")
            assert await b_in.read() == b""  # the node closed it
            for writer in (a_out, b_out):
                writer.close()
            os.kill(os.getpid(), signal.SIGINT)
            outcome = await asyncio.wait_for(task, 10)
        return node, outcome, notes

    node, outcome, notes = asyncio.run(main())
    assert outcome == Outcome(0)  # the CLOSED went through: nothing to terminate
    assert [f.stream for f in node.of(dc.OPEN)] == [1, 2]
    assert node.data(1) == b"hello" and node.data(2) == b"world againreset"
    assert [(f.stream, f.flags) for f in node.of(dc.CLOSE)] == [(1, dc.FLAG_HALF)]
    assert notes == ["connection 2 closed: connection reset by db"]
    assert json.loads(node.of(dc.CLOSED)[0].payload)["reason"].startswith(
        "the client stopped forwarding"
    )
    assert all(f.stream == 0 for f in node.frames if f.type not in (dc.OPEN, dc.DATA, dc.CLOSE))
