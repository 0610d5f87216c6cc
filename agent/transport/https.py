"""HTTPS long-poll transport: ``POST /v1/agent/poll`` held ~20 s, ``POST /v1/agent/messages``,
``PUT /v1/agent/output/...`` for a step's full output.

Every request carries a short-lived node access token (see agent/credentials.py); a 401 that is
only an expired or superseded token is retried once with a fresh one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from agent import wire
from agent.config import AgentConfig
from agent.credentials import Credentials
from agent.errors import ServerRejected, TransportError
from agent.http import check_response, describe
from agent.transport.base import SendAnswer, encode, told_limit
from agent.wire import Message

_RETRY_401 = (wire.ERR_TOKEN_EXPIRED, wire.ERR_UNAUTHORIZED)


async def _chunks(path: Path, size: int, digest: Any) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of ``path``, 64 KiB at a time, read off the event loop."""
    with path.open("rb") as fh:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(fh.read, min(64 * 1024, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
            yield chunk


class HttpsTransport:
    def __init__(self, config: AgentConfig, credentials: Credentials) -> None:
        self._url = credentials.registration.url
        self._client = credentials.client
        self.credentials = credentials
        self.max_request_bytes: int | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        content = encode(body)  # exactly the bytes the sender measured
        for attempt in (1, 2):
            token = await self.credentials.token()
            try:
                response = await self._client.post(
                    path,
                    content=content,
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/json",
                    },
                )
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach {self._url}: {describe(exc)}") from None
            try:
                return check_response(response)
            except ServerRejected as exc:
                if exc.status == 401 and exc.code in _RETRY_401 and attempt == 1:
                    self.credentials.invalidate()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        answer = await self._post(wire.ROUTE_POLL, {"acks": acks, "wait_seconds": wait})
        if not isinstance(answer, dict):
            raise TransportError("the server's poll answer is not a JSON object")
        limit = told_limit(answer.get(wire.KEY_MAX_REQUEST_BYTES))
        if limit is not None:
            self.max_request_bytes = limit
        messages = answer.get("messages", [])
        return messages if isinstance(messages, list) else []

    async def send(self, messages: list[Message]) -> SendAnswer:
        answer = await self._post(wire.ROUTE_MESSAGES, {"messages": messages})
        return SendAnswer.parse(answer, messages)

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        """``PUT /v1/agent/output/{command_id}/{step_index}/{stream}``, the file's bytes as the
        body, streamed from disk in chunks (never the whole file in memory)."""
        size = (await asyncio.to_thread(path.stat)).st_size
        digest = hashlib.sha256()
        url = f"{wire.ROUTE_OUTPUT}/{command_id}/{step_index}/{stream}"
        for attempt in (1, 2):
            token = await self.credentials.token()
            digest = hashlib.sha256()
            try:
                response = await self._client.put(
                    url,
                    content=_chunks(path, size, digest),
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/octet-stream",
                        "content-length": str(size),
                    },
                    timeout=httpx.Timeout(30.0),
                )
            except httpx.HTTPError as exc:
                raise TransportError(f"cannot reach {self._url}: {describe(exc)}") from None
            try:
                check_response(response)
            except ServerRejected as exc:
                if exc.status == 401 and exc.code in _RETRY_401 and attempt == 1:
                    self.credentials.invalidate()
                    continue
                raise
            return size, digest.hexdigest()
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """The client belongs to the credentials; nothing of our own to close."""
