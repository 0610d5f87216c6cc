"""Node access tokens: bought by signing a fresh server challenge with the node key, cached
until shortly before they expire.  The node certificate is renewed (with a new key) once two
thirds of its lifetime have passed.

A token comes one of two ways: the control channel signs in on its own connection
(``proof`` makes the signature, ``adopt`` keeps the token it was given), or ``token()`` buys
one over HTTPS (long-poll, uploads, key renewal).  The HTTP client is made on first use: an
agent on the control channel never loads one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from agent import wire
from agent.config import AgentConfig
from agent.errors import TransportError
from agent.identity import NodeKey
from agent.state import Registration, save_registration

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("corral.agent.credentials")

REFRESH_MARGIN = 60.0


class Credentials:
    def __init__(self, config: AgentConfig, registration: Registration) -> None:
        self._config = config
        self.registration = registration
        self._client: httpx.AsyncClient | None = None
        self._key = NodeKey.load(config.key_file)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    @property
    def client(self) -> httpx.AsyncClient:
        """One HTTPS client for whatever the node sends over HTTPS (made on first use)."""
        if self._client is None:
            from agent.http import make_client, pinned_context

            self._client = make_client(
                self.registration.url,
                pinned_context(self._config.ca_file),
                read_timeout=self._config.poll_wait_seconds + 15.0,
            )
        return self._client

    @property
    def node_id(self) -> str:
        return self.registration.node_id

    @property
    def expires_at(self) -> float:
        """When the current access token expires (0 before the first)."""
        return self._expires

    def invalidate(self) -> None:
        self._token = None

    def proof(self, nonce: str) -> tuple[int, str]:
        """(timestamp, signature) answering a challenge's nonce with the node key."""
        stamp = int(time.time())
        return stamp, self._key.sign_b64(wire.token_signing_payload(self.node_id, nonce, stamp))

    def adopt(self, token: str, expires_at: float) -> None:
        """A token the server issued on the control channel: used over HTTPS too."""
        self._token, self._expires = token, expires_at

    @property
    def fresh(self) -> bool:
        """A token is held that is not about to expire."""
        return self._token is not None and self._expires - time.time() >= REFRESH_MARGIN

    async def token(self) -> str:
        async with self._lock:
            if not self.fresh or self._token is None:
                self._token, self._expires = await self._fetch(self._key)
            return self._token

    async def _post(
        self, path: str, body: dict[str, object], token: str | None = None
    ) -> dict[str, object]:
        import httpx

        from agent.http import check_response, describe

        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self.client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {self.registration.url}: {describe(exc)}") from None
        result: dict[str, object] = check_response(response)
        return result

    async def _fetch(self, key: NodeKey) -> tuple[str, float]:
        challenge = await self._post(wire.ROUTE_CHALLENGE, {"node_id": self.node_id})
        nonce = str(challenge["nonce"])
        stamp = int(time.time())
        signature = key.sign_b64(wire.token_signing_payload(self.node_id, nonce, stamp))
        answer = await self._post(
            wire.ROUTE_TOKEN,
            {
                "node_id": self.node_id,
                "nonce": nonce,
                "timestamp": stamp,
                "signature": signature,
            },
        )
        expires = answer["expires_at"]
        return str(answer["token"]), float(expires) if isinstance(expires, int | float) else 0.0

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def renewal_due(self, now: float) -> bool:
        reg = self.registration
        lifetime = reg.credential_expires_at - reg.credential_issued_at
        return now >= reg.credential_issued_at + lifetime * 2 / 3

    async def renew(self) -> None:
        """Rotate to a new key.  The new key is on disk before the server learns it, so a crash
        in between cannot lock the node out (``recover_key`` picks the right one)."""
        new_key = NodeKey.generate()
        new_key.save(self._config.next_key_file)
        proof = new_key.sign_b64(wire.renew_signing_payload(self.node_id, new_key.public_key_b64))
        answer = await self._post(
            wire.ROUTE_RENEW,
            {"public_key": new_key.public_key_b64, "proof": proof},
            token=await self.token(),
        )
        self._config.cert_file.write_text(str(answer["certificate"]), encoding="utf-8")
        self._config.next_key_file.replace(self._config.key_file)
        self._key = new_key
        from agent.timeparse import parse_rfc3339

        self.registration.credential_issued_at = time.time()
        self.registration.credential_expires_at = parse_rfc3339(
            str(answer["credential_expires_at"])
        )
        save_registration(self._config, self.registration)
        log.info("node credential renewed", extra={"node_id": self.node_id})

    async def recover_key(self) -> None:
        """After a crash mid-renewal: if the server already knows the next key, adopt it."""
        if not self._config.next_key_file.exists():
            return
        next_key = NodeKey.load(self._config.next_key_file)
        try:
            self._token, self._expires = await self._fetch(self._key)
            self._config.next_key_file.unlink()
        except TransportError as exc:
            if getattr(exc, "status", None) != 401:
                raise
            self._token, self._expires = await self._fetch(next_key)
            self._config.next_key_file.replace(self._config.key_file)
            self._key = next_key
            log.warning(
                "adopted the key of an interrupted renewal", extra={"node_id": self.node_id}
            )
