"""``corral-agent register``: pin the server's CA by hash, make a key pair, prove the
activation code, and keep the node id and certificate the server issues."""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass

import httpx

from agent import wire
from agent.config import AgentConfig
from agent.errors import (
    AlreadyRegistered,
    ConfigError,
    RegistrationError,
    ServerRejected,
    TransportError,
)
from agent.http import check_response, describe, make_client, pinned_context
from agent.identity import NodeKey
from agent.state import Registration, save_registration, write_atomic
from agent.timeparse import parse_rfc3339

_CA_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class RegisterRequest:
    url: str
    activation_id: str
    activation_code: str
    ca_hash: str
    name: str = ""
    force: bool = False


def normalize_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme != "https" or not parsed.hostname:
        raise RegistrationError(f"malformed URL {url!r}: expected https://HOST[:PORT]")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise RegistrationError(f"malformed URL {url!r}: bad port")
    if parsed.username is not None or parsed.password is not None:
        raise RegistrationError(f"malformed URL {url!r}: credentials do not belong in the URL")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise RegistrationError(f"malformed URL {url!r}: give only https://HOST[:PORT]")
    return f"https://{parsed.netloc}"


def _prepare_state_dir(config: AgentConfig, force: bool) -> None:
    if config.state_file.exists() and not force:
        raise AlreadyRegistered(
            f"{config.state_dir} is already registered; use --force to register it again"
        )
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(config.state_dir, 0o700)
        probe = config.state_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except PermissionError:
        raise ConfigError(f"cannot write to {config.state_dir}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"cannot use {config.state_dir}: {exc.strerror}") from None


async def fetch_pinned_ca(url: str, expected_hash: str) -> bytes:
    """Fetch the CA over an unverified connection and accept it only if its hash matches."""
    async with make_client(url, verify=False) as client:
        try:
            response = await client.get(wire.ROUTE_CA)
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {url}: {describe(exc)}") from None
    if response.status_code != 200:
        raise RegistrationError(
            f"{url} did not serve a CA certificate (HTTP {response.status_code})"
        )
    try:
        actual = wire.ca_pin(response.text)
    except ValueError:
        raise RegistrationError(
            f"{url} did not serve a PEM certificate at {wire.ROUTE_CA}"
        ) from None
    if actual != expected_hash:
        raise RegistrationError(
            f"CA hash mismatch: {url} presents {actual}, expected {expected_hash}; "
            "refusing to register"
        )
    return response.text.encode()


async def register(config: AgentConfig, req: RegisterRequest) -> Registration:
    url = normalize_url(req.url)
    ca_hash = req.ca_hash.strip().lower()
    if not _CA_HASH_RE.match(ca_hash):
        raise RegistrationError("--ca-hash must be sha256: followed by 64 hex digits")
    _prepare_state_dir(config, req.force)
    ca_pem = await fetch_pinned_ca(url, ca_hash)
    write_atomic(config.ca_file, ca_pem)
    key = NodeKey.generate()
    async with make_client(url, pinned_context(config.ca_file)) as client:
        try:
            response = await client.post(
                wire.ROUTE_REGISTER,
                json={
                    "activation_id": req.activation_id,
                    "activation_code": req.activation_code,
                    "public_key": key.public_key_b64,
                    "name": req.name,
                    "hostname": socket.gethostname(),
                },
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"cannot reach {url}: {describe(exc)}") from None
    try:
        answer = check_response(response)
    except ServerRejected as exc:
        raise RegistrationError(f"registration refused: {exc.message}") from None
    if req.force:
        # Reports owed by the previous identity cannot be delivered by the new one.
        outbox = config.outbox_file
        for stale in (
            outbox,
            outbox.with_name(outbox.name + "-wal"),
            outbox.with_name(outbox.name + "-shm"),
            config.status_file,
            config.next_key_file,
        ):
            stale.unlink(missing_ok=True)
    key.save(config.key_file)
    write_atomic(config.cert_file, str(answer["certificate"]).encode())
    now = time.time()
    registration = Registration(
        node_id=str(answer["node_id"]),
        url=url,
        registered_at=now,
        credential_issued_at=now,
        credential_expires_at=parse_rfc3339(str(answer["credential_expires_at"])),
        ca_hash=ca_hash,
    )
    save_registration(config, registration)
    return registration
