"""Node identity: registration through an activation, signed-challenge tokens, renewal."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent import wire
from control_plane.errors import (
    ActivationInvalid,
    CredentialExpired,
    InvalidRequest,
    NodeDeregistered,
    Unauthorized,
)
from control_plane.security import secrets as codes
from control_plane.security.ca import CertificateAuthority
from control_plane.security.node_tokens import NodeClaims, NodeTokenSigner
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.node_names import default_name
from control_plane.services.presence import Presence
from control_plane.services.validation import check_text
from control_plane.store import activations, nodes
from control_plane.store.db import Database

log = logging.getLogger("corral.registration")


def new_node_id() -> str:
    return "mi-" + secrets.token_hex(9)[:17]


def decode_public_key(value: object) -> bytes:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("public_key must be base64") from None
    if len(raw) != 32:
        raise InvalidRequest("public_key must be a 32-byte Ed25519 key")
    return raw


class RegistrationService:
    def __init__(
        self,
        db: Database,
        ca: CertificateAuthority,
        signer: NodeTokenSigner,
        presence: Presence,
        clock: Clock,
        credential_days: int,
    ) -> None:
        self._db = db
        self._ca = ca
        self._signer = signer
        self._presence = presence
        self._clock = clock
        self._credential_days = credential_days
        self.on_registered: Callable[[], None] = lambda: None  # State Manager re-checks

    async def register(
        self,
        *,
        activation_id: str,
        activation_code: str,
        public_key: str,
        name: str,
        hostname: str,
    ) -> dict[str, Any]:
        key_raw = decode_public_key(public_key)
        check_text("name", name, 256)
        check_text("hostname", hostname, 256)
        now = self._clock()
        node_id = new_node_id()
        cert_pem, not_after = self._ca.issue_node_cert(node_id, key_raw, self._credential_days)
        async with self._db.transaction() as conn:
            activation = await activations.get(conn, activation_id)
            if activation is None:
                raise ActivationInvalid(f"activation {activation_id} does not exist (deleted?)")
            if not codes.matches(activation_code, activation["code_digest"]):
                raise ActivationInvalid("activation code is wrong")
            if activation["expires_at"] <= now:
                raise ActivationInvalid(f"activation {activation_id} has expired")
            if not await activations.claim_registration(conn, activation_id):
                raise ActivationInvalid(
                    f"activation {activation_id} has reached its registration limit "
                    f"({activation['registration_limit']})"
                )
            row: dict[str, Any] = {
                "id": node_id,
                "name": name or await default_name(conn, activation["name"] or hostname or node_id),
                "activation_id": activation_id,
                "public_key": public_key,
                "credential_expires_at": not_after.timestamp(),
                "generation": 1,
                "hostname": hostname,
                "ip_addresses": [],
                "registered_at": now,
                "last_seen": None,  # Online only once its agent polls
            }
            await nodes.insert(conn, row, dict(activation["tags"]))
        self._presence.add(node_id, 1)
        self.on_registered()
        log.info("node registered", extra={"node_id": node_id, "activation_id": activation_id})
        return {
            "node_id": node_id,
            "certificate": cert_pem.decode(),
            "credential_expires_at": rfc3339(not_after.timestamp()),
        }

    def check_node(self, node_id: str) -> None:
        """A registered node that may sign in: else the error to answer."""
        if not isinstance(node_id, str) or not wire.NODE_ID_RE.match(node_id):
            raise InvalidRequest("node_id must look like mi-0123456789abcdef0")
        node = self._presence.get(node_id)
        if node is None:
            raise Unauthorized(f"node {node_id} is not registered here")
        if node.deregistered:
            raise NodeDeregistered(f"node {node_id} is deregistered")

    def challenge(self, node_id: str) -> dict[str, Any]:
        self.check_node(node_id)
        nonce, expires = self._signer.new_challenge(node_id)
        return {"nonce": nonce, "expires_at": expires}

    async def issue_token(
        self, *, node_id: str, nonce: str, timestamp: int, signature: str
    ) -> dict[str, Any]:
        self.check_node(node_id)
        try:
            sig = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("signature must be base64") from None
        async with self._db.read() as conn:
            row = await nodes.get(conn, node_id)
        if row is None:
            raise Unauthorized(f"node {node_id} is not registered here")
        if row["credential_expires_at"] <= self._clock():
            raise CredentialExpired(f"node {node_id}'s credential expired; register the node again")
        self._signer.check_challenge_response(
            node_id, nonce, timestamp, sig, base64.b64decode(row["public_key"])
        )
        token, expires = self._signer.issue(node_id, row["generation"])
        return {"token": token, "expires_at": expires}

    def authenticate(self, token: str) -> NodeClaims:
        claims = self._signer.verify(token)
        node = self._presence.get(claims.node_id)
        if node is None:
            raise Unauthorized("unknown node")
        if node.deregistered:
            raise NodeDeregistered(f"node {claims.node_id} is deregistered")
        if node.generation != claims.generation:
            raise Unauthorized("node credential was revoked")
        return claims

    async def renew(self, node_id: str, public_key: str, proof: str) -> dict[str, Any]:
        """Swap the node's key for a new one it proves it holds; a fresh certificate."""
        key_raw = decode_public_key(public_key)
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(key_raw).verify(
                base64.b64decode(proof, validate=True),
                wire.renew_signing_payload(node_id, public_key),
            )
        except (InvalidSignature, binascii.Error, ValueError):
            raise Unauthorized("proof does not verify with the new key") from None
        cert_pem, not_after = self._ca.issue_node_cert(node_id, key_raw, self._credential_days)
        async with self._db.transaction() as conn:
            await nodes.update(
                conn, node_id, public_key=public_key, credential_expires_at=not_after.timestamp()
            )
        log.info("node credential renewed", extra={"node_id": node_id})
        return {
            "certificate": cert_pem.decode(),
            "credential_expires_at": rfc3339(not_after.timestamp()),
        }
