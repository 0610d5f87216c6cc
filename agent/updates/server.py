"""The server's package routes, reached as the agent reaches it: its URL from the
registration, TLS pinned to its CA, the node's access token (agent/credentials.py).

Used from a document worker in one ``asyncio.run`` (all fetches of an upgrade happen before
anything is installed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from agent.errors import TransportError
from agent.updates.base import Entry, UpdateError

if TYPE_CHECKING:
    import httpx

    from agent.config import AgentConfig
    from agent.credentials import Credentials
    from agent.updates.manifest import Manifest

T = TypeVar("T")

ROUTE_MANIFEST = "/v1/packages/manifest"
ROUTE_SIGNING_KEY = "/v1/packages/signing-key"
ROUTE_FILES = "/v1/packages/files/"
SIGNATURE_HEADER = "x-corral-signature"
KEY_MAX_BYTES = 16 * 1024


class PackageServer:
    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    @property
    def url(self) -> str:
        return self._credentials.registration.url

    async def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {await self._credentials.token()}"}

    @asynccontextmanager
    async def _get(self, path: str) -> AsyncIterator[httpx.Response]:
        import httpx

        from agent.http import describe

        try:
            async with self._credentials.client.stream(
                "GET", path, headers=await self._headers()
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise UpdateError(
                        f"GET {path}: the server answered HTTP {response.status_code} "
                        f"{response.text[:200].strip()}".rstrip()
                    )
                yield response
        except httpx.HTTPError as exc:
            raise UpdateError(f"cannot reach {self.url}: {describe(exc)}") from None
        except TransportError as exc:  # the token could not be had
            raise UpdateError(exc.message) from None

    async def _small(self, path: str, limit: int) -> tuple[bytes, httpx.Headers]:
        async with self._get(path) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise UpdateError(f"GET {path}: the answer is larger than {limit} bytes")
            return bytes(body), response.headers

    async def manifest(self, limit: int) -> tuple[bytes, str]:
        """The manifest's exact bytes and its signature header."""
        body, headers = await self._small(ROUTE_MANIFEST, limit)
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise UpdateError("the server sent the package manifest without a signature")
        return body, signature

    async def signing_key(self) -> str:
        body, _ = await self._small(ROUTE_SIGNING_KEY, KEY_MAX_BYTES)
        return body.decode("ascii", "replace")

    @asynccontextmanager
    async def file(self, name: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._get(ROUTE_FILES + quote(name, safe="")) as response:
            yield response.aiter_bytes()


class ServerFetcher:
    """The flow's fetcher (agent/updates/flow.py): the manifest, verified with the pinned key
    (pinned first when this node has none), and packages into ``<state_dir>/updates/``.  Each
    call is one ``asyncio.run`` with credentials of its own (a worker has no event loop)."""

    def __init__(
        self, config: AgentConfig, say: Callable[[str], None], manifest_limit: int = 0
    ) -> None:
        from agent.updates.manifest import MANIFEST_MAX_BYTES

        self._config = config
        self._say = say
        self._limit = manifest_limit or MANIFEST_MAX_BYTES

    def _run(self, work: Callable[[PackageServer], Awaitable[T]]) -> T:
        from agent.credentials import Credentials
        from agent.state import load_registration

        registration = load_registration(self._config)

        async def main() -> T:
            credentials = Credentials(self._config, registration)
            try:
                return await work(PackageServer(credentials))
            finally:
                await credentials.aclose()

        return asyncio.run(main())

    def manifest(self) -> Manifest:
        from agent.updates import manifest

        state_dir = self._config.state_dir
        raw = manifest.pinned_key(state_dir)
        if raw is None:
            pem = self._run(lambda server: server.signing_key())
            raw = manifest.pin(state_dir, pem)
            self._say(
                f"pinned the server's package signing key {manifest.key_id(raw)} "
                f"in {state_dir / manifest.KEY_FILE}"
            )
        body, signature = self._run(lambda server: server.manifest(self._limit))
        return manifest.verify(body, signature, raw)

    def download(self, entries: list[Entry]) -> list[Path]:
        from agent.updates.download import download, prune, updates_dir

        folder = updates_dir(self._config.state_dir)
        prune(folder, {e.file for e in entries})

        async def fetch(server: PackageServer) -> list[Path]:
            return [await download(server.file, entry, folder) for entry in entries]

        return self._run(fetch)
