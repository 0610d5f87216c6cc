"""HTTPS long-poll transport: ``POST /v1/agent/poll`` held ~20 s, ``POST /v1/agent/messages``.

Every request carries a short-lived node access token (see agent/credentials.py); a 401 that is
only an expired or superseded token is retried once with a fresh one.
"""

from __future__ import annotations

from typing import Any

import httpx

from agent import wire
from agent.config import AgentConfig
from agent.credentials import Credentials
from agent.errors import ServerRejected, TransportError
from agent.http import check_response, describe
from agent.wire import Message


class HttpsTransport:
    def __init__(self, config: AgentConfig, credentials: Credentials) -> None:
        self._url = credentials.registration.url
        self._client = credentials.client
        self.credentials = credentials

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            token = await self.credentials.token()
            try:
                response = await self._client.post(
                    path, json=body, headers={"authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach {self._url}: {describe(exc)}") from None
            try:
                return check_response(response)
            except ServerRejected as exc:
                if (
                    exc.status == 401
                    and exc.code in (wire.ERR_TOKEN_EXPIRED, wire.ERR_UNAUTHORIZED)
                    and attempt == 1
                ):
                    self.credentials.invalidate()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        answer = await self._post(wire.ROUTE_POLL, {"acks": acks, "wait_seconds": wait})
        messages: list[Message] = answer.get("messages", [])
        return messages

    async def send(self, messages: list[Message]) -> list[str]:
        answer = await self._post(wire.ROUTE_MESSAGES, {"messages": messages})
        acked: list[str] = answer.get("acked", [])
        return acked

    async def aclose(self) -> None:
        """The client belongs to the credentials; nothing of our own to close."""
