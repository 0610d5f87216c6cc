"""``transport = "auto"`` (the default): the websocket control channel, and the HTTPS
long-poll where the channel is unavailable (a proxy that does not pass the upgrade), trying
the channel again every RETRY_CHANNEL_SECONDS.  A server that cannot be reached at all is not
a reason to switch: both would fail; the daemon backs off and retries.  The HTTPS transport
(and its HTTP client) is made only when it is first needed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig
from agent.credentials import Credentials
from agent.transport.base import SendAnswer
from agent.transport.websocket import ChannelUnavailable, WebSocketTransport
from agent.wire import Message

if TYPE_CHECKING:
    from agent.transport.https import HttpsTransport

log = logging.getLogger("corral.agent.channel")

RETRY_CHANNEL_SECONDS = 300.0


class AutoTransport:
    def __init__(self, config: AgentConfig, credentials: Credentials) -> None:
        self._config = config
        self._credentials = credentials
        self._channel = WebSocketTransport(config, credentials)
        self._https_transport: HttpsTransport | None = None
        self._long_poll_until = 0.0

    @property
    def _https(self) -> HttpsTransport:
        if self._https_transport is None:
            from agent.transport.https import HttpsTransport

            self._https_transport = HttpsTransport(self._config, self._credentials)
        return self._https_transport

    @property
    def max_request_bytes(self) -> int | None:
        """The limit told on the way in use (else the one told on the other way)."""
        https = self._https_transport.max_request_bytes if self._https_transport else None
        channel = self._channel.max_request_bytes
        if self.using_channel:
            return channel if channel is not None else https
        return https if https is not None else channel

    @property
    def using_channel(self) -> bool:
        return time.monotonic() >= self._long_poll_until

    def _fall_back(self, exc: ChannelUnavailable) -> None:
        self._long_poll_until = time.monotonic() + RETRY_CHANNEL_SECONDS
        log.warning(
            "no control channel; long-polling instead",
            extra={"error": exc.message, "retry_channel_in": RETRY_CHANNEL_SECONDS},
        )

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        if self.using_channel:
            try:
                return await self._channel.poll(acks, wait)
            except ChannelUnavailable as exc:
                self._fall_back(exc)
        return await self._https.poll(acks, wait)

    async def send(self, messages: list[Message]) -> SendAnswer:
        if self.using_channel:
            try:
                return await self._channel.send(messages)
            except ChannelUnavailable as exc:
                self._fall_back(exc)
        return await self._https.send(messages)

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        return await self._channel.upload_output(command_id, step_index, stream, path)

    async def aclose(self) -> None:
        await self._channel.aclose()
        if self._https_transport is not None:
            await self._https_transport.aclose()
