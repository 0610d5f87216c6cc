"""A server that closes the control channel while the agent signs in (a restarting server
sends its challenge and goes: close 1012) is a transport failure the daemon retries, never an
exception that ends the agent.  Found under load: the agent died with "unhandled errors in a
TaskGroup" one poll after the server said 1012."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Close

from agent import wire
from agent.errors import TransportError
from agent.transport import websocket
from agent.transport.websocket import WebSocketTransport


class ClosingConn:
    """Sends the challenge, then is closed by the server (1012) before the auth goes."""

    close_code = 1012
    close_reason = "the server is restarting"

    def __init__(self) -> None:
        self.closed = False

    async def recv(self) -> str:
        return json.dumps({"type": wire.FRAME_CHALLENGE, "nonce": "n"})

    async def send(self, _data: str) -> None:
        raise ConnectionClosedOK(Close(1012, self.close_reason), None)

    async def close(self) -> None:
        self.closed = True


class Proof:
    node_id = "mi-0123456789abcdef0"

    def proof(self, nonce: str) -> tuple[float, str]:
        return 0.0, "sig"


def test_a_channel_closed_during_sign_in_is_a_transport_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = ClosingConn()

    async def connect(*_args: Any, **_kw: Any) -> ClosingConn:
        return conn

    monkeypatch.setattr(websocket, "connect", connect)
    transport = WebSocketTransport.__new__(WebSocketTransport)
    transport.credentials = Proof()  # type: ignore[assignment]
    transport._url = "wss://127.0.0.1:1/v1/agent/connect"
    transport._ssl = None  # type: ignore[assignment]
    transport._conn = None
    transport._reader = transport._renewer = None
    transport._failure = None
    transport._connecting = asyncio.Lock()

    async def main() -> None:
        with pytest.raises(TransportError, match=r"closed \(1012 the server is restarting\)"):
            await transport.poll([], 1.0)

    asyncio.run(main())
