"""Port forwarding on the node (agent/sessions/port.py) to a real TCP echo server: streams are
independent, bytes round-trip, a half-close goes through as TCP's, a refused connection and
one stream too many come back as CLOSE with the reason, and a bad Port body is refused."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions.port import MAX_STREAMS
from tests.unit.test_session_support import Operator, agent_side, start_body

PORT = wire.SESSION_TYPE_PORT


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """Echoes each connection's bytes; at the client's EOF, closes its side too."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_streams_round_trip_and_half_close(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_server() as port, agent_side(tmp_path) as (relay, manager):
            body = start_body(PORT, port=port, host="127.0.0.1")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.endpoint.send(dc.OPEN, b"", 1)
            await op.endpoint.send(dc.OPEN, b"", 2)
            one, two = b"1" * 100_000, b"two\n"
            await op.send(one, 1)
            await op.send(two, 2)
            await op.until(lambda: op.streams.get(2) == bytearray(two), "stream 2's echo")
            await op.until(lambda: len(op.streams.get(1, b"")) == len(one), "stream 1's echo")
            assert op.streams[1] == one and not op.closes
            await op.endpoint.send(dc.OPEN, b"", 1)  # already open: ignored
            await op.send(b"nobody", 99)  # never opened: dropped
            await op.send(b"again", 1)
            await op.until(lambda: op.streams[1] == one + b"again", "stream 1's echo")
            # stream 1: our EOF -> the echo server's EOF -> theirs, as a half CLOSE
            await op.endpoint.send(dc.CLOSE, b"", 1, flags=dc.FLAG_HALF)
            await op.until(lambda: 1 in op.closes, "stream 1's CLOSE")
            assert op.closes[1].flags & dc.FLAG_HALF and list(op.closes) == [1]
            await op.send(b"still\n", 2)  # stream 2 goes on
            await op.until(lambda: op.streams[2] == two + b"still\n", "stream 2's echo")
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_a_refused_connection_is_closed_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(PORT, port=free_port(), host="127.0.0.1")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.endpoint.send(dc.OPEN, b"", 7)
            await op.send(b"lost", 7)  # for a stream not connected yet: dropped with it
            await op.until(lambda: 7 in op.closes, "the CLOSE")
            frame = op.closes[7]
            assert not frame.flags & dc.FLAG_HALF
            reason = json.loads(frame.payload)["reason"]
            assert reason.startswith(f"cannot connect to 127.0.0.1:{body['port']}: ")
            assert "refused" in reason.lower()
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_one_stream_past_the_limit_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with echo_server() as port, agent_side(tmp_path) as (relay, manager):
            body = start_body(PORT, port=port, host="127.0.0.1")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            for stream in range(1, MAX_STREAMS + 2):
                await op.endpoint.send(dc.OPEN, b"", stream)
                await op.send(b"x", stream)
            await op.until(lambda: MAX_STREAMS + 1 in op.closes, "the last stream's CLOSE")
            reason = json.loads(op.closes[MAX_STREAMS + 1].payload)["reason"]
            assert reason == f"too many connections: at most {MAX_STREAMS} at once"
            await op.until(lambda: len(op.streams) == MAX_STREAMS, "every other echo")
            assert list(op.closes) == [MAX_STREAMS + 1]
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_the_operators_full_close_ends_the_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        accepted, ended = asyncio.Event(), asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            await reader.read()  # until the agent's side closes
            ended.set()
            writer.close()

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        async with server, agent_side(tmp_path) as (relay, manager):
            port = server.sockets[0].getsockname()[1]
            body = start_body(PORT, port=port)  # host None: localhost
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.endpoint.send(dc.OPEN, b"", 1)
            await op.send(b"hello", 1)
            async with asyncio.timeout(30):
                await accepted.wait()
            await op.endpoint.send_json(dc.CLOSE, {"reason": "the local client went away"}, 1)
            async with asyncio.timeout(30):
                await ended.wait()
            await op.finish("done")
            await op.aclose()

    asyncio.run(scenario())


def test_a_port_session_without_a_valid_port_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            for port, host in ((None, None), (0, None), (70000, None), (22, "")):
                body = start_body(PORT, port=port, host=host)
                manager.start(body)
                op = Operator(relay, body["session_id"])
                reason = (await op.until_closed())["reason"]
                assert "a Port session" in reason, reason
                await op.aclose()

    asyncio.run(scenario())
