"""A server shutdown never fails on a control channel whose agent is already closing it."""

from __future__ import annotations

import asyncio

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.protocol import State

from control_plane.serve import ChannelProtocol


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
    return None


def _closing(cls: type[WebSocketsSansIOProtocol]) -> tuple[WebSocketsSansIOProtocol, FakeTransport]:
    config = Config(_app, ws=cls)
    config.load()
    protocol = cls(config, ServerState(), {}, _loop=asyncio.new_event_loop())
    transport = FakeTransport()
    protocol.transport = transport  # type: ignore[assignment]
    protocol.handshake_complete = True
    protocol.conn.state = State.CLOSING  # the agent's close frame was received and answered
    return protocol, transport


def test_uvicorns_protocol_fails_on_a_closing_channel() -> None:
    protocol, _ = _closing(WebSocketsSansIOProtocol)
    try:
        with pytest.raises(InvalidState):
            protocol.shutdown()
    finally:
        protocol.loop.close()


def test_a_closing_channel_is_simply_closed_at_shutdown() -> None:
    protocol, transport = _closing(ChannelProtocol)
    try:
        protocol.shutdown()
        assert transport.closed
        assert protocol.queue.get_nowait()["type"] == "websocket.disconnect"
    finally:
        protocol.loop.close()
