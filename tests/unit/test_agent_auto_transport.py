"""``transport = "auto"``: the control channel first, the long-poll where the channel is
unavailable (for RETRY_CHANNEL_SECONDS), never a switch because the server is down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.errors import TransportError
from agent.transport import auto
from agent.transport.auto import AutoTransport
from agent.transport.websocket import ChannelUnavailable


class Fake:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, Any]] = []
        self.error: Exception | None = None

    async def poll(self, acks: list[str], wait: float) -> list[Any]:
        self.calls.append(("poll", list(acks)))
        if self.error is not None:
            raise self.error
        return [self.name]

    async def send(self, messages: list[Any]) -> list[str]:
        self.calls.append(("send", messages))
        if self.error is not None:
            raise self.error
        return [self.name]


def make(monkeypatch: pytest.MonkeyPatch) -> tuple[AutoTransport, Fake, Fake, list[float]]:
    now = [1000.0]
    monkeypatch.setattr(auto.time, "monotonic", lambda: now[0])
    transport = AutoTransport.__new__(AutoTransport)
    channel, https = Fake("channel"), Fake("https")
    transport._channel = channel  # type: ignore[assignment]
    transport._https_transport = https  # type: ignore[assignment]
    transport._long_poll_until = 0.0
    return transport, channel, https, now


def test_the_channel_is_used_while_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    transport, _channel, https, _ = make(monkeypatch)
    assert asyncio.run(transport.poll(["a1"], 20)) == ["channel"]
    assert asyncio.run(transport.send([{"id": "m"}])) == ["channel"]
    assert https.calls == []


def test_an_unavailable_channel_falls_back_and_is_retried_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport, channel, https, now = make(monkeypatch)
    channel.error = ChannelUnavailable("HTTP 404")
    # The acks the channel could not deliver go by long-poll instead: none is lost.
    assert asyncio.run(transport.poll(["a1", "a2"], 20)) == ["https"]
    assert https.calls == [("poll", ["a1", "a2"])]
    channel.calls.clear()
    assert asyncio.run(transport.send([{"id": "m"}])) == ["https"]
    assert channel.calls == []  # not tried again yet
    now[0] += auto.RETRY_CHANNEL_SECONDS
    channel.error = None
    assert asyncio.run(transport.poll([], 20)) == ["channel"]


def test_a_server_that_is_down_is_not_a_reason_to_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transport, channel, https, _ = make(monkeypatch)
    channel.error = TransportError("cannot reach the server: connection refused")
    with pytest.raises(TransportError):
        asyncio.run(transport.poll([], 20))
    assert https.calls == [] and transport.using_channel
