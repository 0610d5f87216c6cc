"""Short-lived node access tokens and the challenges that buy them.

The agent proves possession of its Ed25519 key by signing a fresh server challenge (nonce,
node id, time); the server answers with an access token good for ``ttl`` seconds.  Tokens and
challenges are HMAC-SHA256 signed with a key from the data dir, so checking one costs no
database query: the token names the node's credential generation, which the caller compares
with the node's current generation (deregistration bumps it, so old tokens die at once).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent import wire
from control_plane.errors import TokenExpired, Unauthorized

TOKEN_PREFIX = "nat."
CHALLENGE_TTL = 60.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class NodeClaims:
    node_id: str
    generation: int
    expires_at: float


class NodeTokenSigner:
    def __init__(self, key: bytes, ttl_seconds: float) -> None:
        self._key = key
        self.ttl = ttl_seconds
        self._used_nonces: dict[str, float] = {}

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, sha256).digest())

    def _seal(self, prefix: str, claims: dict[str, object]) -> str:
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        body = prefix + _b64(payload)
        return body + "." + self._sign(body.encode())

    def _open(self, prefix: str, sealed: str) -> dict[str, object]:
        if not sealed.startswith(prefix) or sealed.count(".") != prefix.count(".") + 1:
            raise Unauthorized("malformed credential")
        body, _, mac = sealed.rpartition(".")
        # Bytes, not str: compare_digest refuses non-ASCII strings with a TypeError.
        if not hmac.compare_digest(mac.encode(), self._sign(body.encode()).encode()):
            raise Unauthorized("credential signature does not verify")
        try:
            claims = json.loads(_unb64(body.removeprefix(prefix)))
        except ValueError:
            raise Unauthorized("malformed credential") from None
        if not isinstance(claims, dict):
            raise Unauthorized("malformed credential")
        return claims

    # Challenges -------------------------------------------------------------------------------
    def new_challenge(self, node_id: str) -> tuple[str, float]:
        expires = time.time() + CHALLENGE_TTL
        return self._seal("chl.", {"n": node_id, "e": expires, "r": secrets.token_hex(12)}), expires

    def check_challenge_response(
        self, node_id: str, nonce: str, timestamp: int, signature: bytes, public_key_raw: bytes
    ) -> None:
        claims = self._open("chl.", nonce)
        now = time.time()
        expires = claims.get("e")
        if claims.get("n") != node_id or not isinstance(expires, int | float):
            raise Unauthorized("challenge was issued for another node")
        if expires < now:
            raise Unauthorized("challenge expired; ask for a new one")
        if abs(now - timestamp) > CHALLENGE_TTL + 300:
            raise Unauthorized("signed time is too far from the server's clock")
        self._forget_used(now)
        if nonce in self._used_nonces:
            raise Unauthorized("challenge already used")
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public_key_raw).verify(
                signature, wire.token_signing_payload(node_id, nonce, timestamp)
            )
        except (InvalidSignature, ValueError):
            raise Unauthorized("signature does not match the node's key") from None
        self._used_nonces[nonce] = float(expires)

    def _forget_used(self, now: float) -> None:
        for used, expires in list(self._used_nonces.items()):
            if expires < now:
                del self._used_nonces[used]

    # Tokens -----------------------------------------------------------------------------------
    def issue(self, node_id: str, generation: int) -> tuple[str, float]:
        expires = time.time() + self.ttl
        return self._seal(TOKEN_PREFIX, {"n": node_id, "g": generation, "e": expires}), expires

    def verify(self, token: str) -> NodeClaims:
        claims = self._open(TOKEN_PREFIX, token)
        node_id, generation, expires = claims.get("n"), claims.get("g"), claims.get("e")
        if (
            not isinstance(node_id, str)
            or not isinstance(generation, int)
            or not isinstance(expires, int | float)
        ):
            raise Unauthorized("malformed credential")
        if expires < time.time():
            raise TokenExpired("node access token expired")
        return NodeClaims(node_id=node_id, generation=generation, expires_at=float(expires))
