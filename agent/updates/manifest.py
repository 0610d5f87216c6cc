"""The server's signed package manifest, and the package signing key this node pins.

The manifest is JSON bytes (``{"schema": 1, "key_id": "sha256:<hex>", "packages": [...]}``)
signed with the server's Ed25519 package signing key; the signature (base64) comes in the
``X-Corral-Signature`` header.  It is checked over the exact bytes received, before they are
parsed.  The key is pinned in ``<state_dir>/package-signing.pem`` (the install script writes
it; an agent without one fetches it once over its CA-pinned TLS and keeps it): a manifest
signed by any other key is refused, whatever the server says its key now is.

PEM is SubjectPublicKeyInfo; for Ed25519 its DER is a fixed 12-byte prefix and the raw
32-byte key (RFC 8410), which is all PyNaCl needs.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.updates.base import FILE_RE, VERSION_RE, Entry, UpdateError

KEY_FILE = "package-signing.pem"
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 10_000
PACKAGE_MAX_BYTES = 1024 * 1024 * 1024  # no agent package is near 1 GiB
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
_PEM_END = "-----END PUBLIC KEY-----"


def raw_public_key(pem: str) -> bytes:
    """The raw 32-byte Ed25519 key of a PEM SubjectPublicKeyInfo."""
    text = pem.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        raise UpdateError("the package signing key is not a PEM public key")
    body = text[len(_PEM_BEGIN) : -len(_PEM_END)]
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise UpdateError("the package signing key's PEM is not valid base64") from None
    if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        raise UpdateError("the package signing key is not an Ed25519 public key")
    return der[len(_SPKI_PREFIX) :]


def key_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def verify_signature(body: bytes, signature_b64: str, raw_key: bytes) -> None:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UpdateError("the manifest's signature is not valid base64") from None
    try:
        VerifyKey(raw_key).verify(body, signature)
    except (BadSignatureError, ValueError):
        raise UpdateError(
            "the package manifest's signature does not match the pinned signing key "
            f"({key_id(raw_key)}): refusing it"
        ) from None


@dataclass(frozen=True)
class Manifest:
    key_id: str
    packages: tuple[Entry, ...]

    def find(self, name: str, version: str, fmt: str, arch: str) -> Entry | None:
        for entry in self.packages:
            if (entry.name, entry.version, entry.format, entry.arch) == (name, version, fmt, arch):
                return entry
        return None

    def versions(self, name: str, fmt: str, arch: str) -> list[str]:
        from agent.updates.versions import compare

        wanted = (name, fmt, arch)
        found = {e.version for e in self.packages if (e.name, e.format, e.arch) == wanted}
        return sorted(found, key=functools.cmp_to_key(compare))


def verify(body: bytes, signature_b64: str, raw_key: bytes) -> Manifest:
    """The manifest, once its signature over ``body`` checks with the pinned key."""
    try:
        verify_signature(body, signature_b64, raw_key)
    except UpdateError:
        claimed = _claimed_key_id(body)
        if claimed and claimed != key_id(raw_key):
            raise UpdateError(
                f"the server signs packages with {claimed[:80]}, but this node pinned "
                f"{key_id(raw_key)}: refusing (if the key was replaced on purpose, replace "
                f"{KEY_FILE} in the agent's state dir)"
            ) from None
        raise
    try:
        data = json.loads(body)
    except ValueError:
        raise UpdateError("the package manifest is not valid JSON") from None
    if not isinstance(data, dict) or data.get("schema") != 1:
        raise UpdateError("the package manifest is not schema 1")
    if data.get("key_id") != key_id(raw_key):
        raise UpdateError("the package manifest names another signing key than the pinned one")
    raw = data.get("packages")
    if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
        raise UpdateError("the package manifest has no valid package list")
    return Manifest(key_id(raw_key), tuple(_entry(item) for item in raw))


def _claimed_key_id(body: bytes) -> str | None:
    """The key id an unverified manifest claims (only to say why it is refused)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    claimed = data.get("key_id") if isinstance(data, dict) else None
    return claimed if isinstance(claimed, str) else None


def _entry(item: Any) -> Entry:
    strings = ("name", "version", "format", "arch", "file", "sha256")
    if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in strings):
        raise UpdateError("the package manifest has an invalid entry")
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= PACKAGE_MAX_BYTES:
        raise UpdateError(f"the package manifest has an invalid size for {item['file'][:100]}")
    sha = item["sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise UpdateError(f"the package manifest has an invalid sha256 for {item['file'][:100]}")
    if not FILE_RE.match(item["file"]) or not VERSION_RE.match(item["version"]):
        raise UpdateError(f"the package manifest has an invalid file name {item['file'][:100]!r}")
    name, version, fmt, arch, file = (item[k] for k in strings[:5])
    return Entry(name, version, fmt, arch, file, sha, size)


def pinned_key(state_dir: Path) -> bytes | None:
    """The pinned key's raw bytes; None when this node has not pinned one yet."""
    path = state_dir / KEY_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UpdateError(f"cannot read the pinned package signing key {path}: {exc}") from None
    return raw_public_key(text)


def pin(state_dir: Path, pem: str) -> bytes:
    """Keep the key the server sent (the first time only); its raw bytes."""
    from agent.state import write_atomic

    raw = raw_public_key(pem)
    write_atomic(state_dir / KEY_FILE, (pem.strip() + "\n").encode("ascii"), 0o644)
    return raw
