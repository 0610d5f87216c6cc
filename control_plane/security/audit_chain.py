"""The audit chain: canonical encoding, entry hashes, redaction, signed checkpoints.

Pure and database-free (PyNaCl only, which the operator CLI has), so an export can be checked
offline with this module and the public key file ``audit.pub``.

Entry hash
    ``hash = sha256(canonical({f: entry[f] for f in ENTRY_FIELDS})).hexdigest()``, where
    ``canonical(x)`` is ``json.dumps(x, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` encoded as UTF-8.  ``prev_hash`` (one of the fields) is the previous
    entry's ``hash``; entry 1 has :data:`GENESIS_HASH`, 64 zeros.

Checkpoint
    The server signs ``canonical({"v": 1, "kind", "seq_upto", "hash_upto", "time",
    "prev_checkpoint_hash", "key_id"})`` with the Ed25519 key ``audit.key`` in its data dir;
    ``checkpoint_hash`` is the SHA-256 (hex) of the same bytes.  ``kind`` is ``periodic``
    (hourly and at shutdown) or ``retention`` (written when old entries are pruned: the
    remaining chain starts after it).  Periodic checkpoints form a chain of their own: each
    one's ``prev_checkpoint_hash`` is the ``checkpoint_hash`` of the periodic checkpoint
    before it (64 zeros for the first); a retention checkpoint points at the latest periodic
    one.  ``key_id`` is the first 16 hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from control_plane.errors import InvalidRequest, SetupError
from control_plane.security.secrets import TOKEN_PREFIX

GENESIS_HASH = "0" * 64
KEY_FILE = "audit.key"
PUBLIC_KEY_FILE = "audit.pub"
PERIODIC = "periodic"
RETENTION = "retention"
CHECKPOINT_KINDS = (PERIODIC, RETENTION)

# What an entry's hash covers: every field but the hash itself.
ENTRY_FIELDS = (
    "seq",
    "id",
    "time",
    "identity_type",
    "identity_id",
    "identity_name",
    "source_ip",
    "action",
    "resource",
    "request",
    "outcome",
    "error",
    "request_id",
    "prev_hash",
)
SIGNED_CHECKPOINT_FIELDS = (
    "kind",
    "seq_upto",
    "hash_upto",
    "time",
    "prev_checkpoint_hash",
    "key_id",
)
CHECKPOINT_FIELDS = (*SIGNED_CHECKPOINT_FIELDS, "checkpoint_hash", "public_key", "signature")


def canonical(obj: Any) -> bytes:
    """The one byte encoding that hashes and signatures are computed over."""
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8", "surrogatepass")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({f: entry[f] for f in ENTRY_FIELDS})).hexdigest()


# Redaction ----------------------------------------------------------------------------------

REDACTED = "****"
MAX_STRING = 4096
MAX_ITEMS = 1000
MAX_DEPTH = 32
_SECRET_PARTS = ("secret", "password", "passwd", "passphrase", "privatekey", "apikey")
_SECRET_SUFFIXES = ("token", "credential", "credentials")
_SECRET_NAMES = frozenset({"code", "activationcode", "authcode", "authorization", "cookie"})
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def is_secret_key(key: str) -> bool:
    """Whether a field name holds a secret: ``password``, ``client_secret``, ``apiKey``,
    ``access_token``, ``activation_code``, ``Authorization``... (not ``token_id``)."""
    name = _NOT_ALNUM.sub("", key.lower())
    return (
        name in _SECRET_NAMES
        or name.endswith(_SECRET_SUFFIXES)
        or any(part in name for part in _SECRET_PARTS)
    )


def clean_text(value: str, limit: int = MAX_STRING) -> str:
    """``value`` as storable UTF-8 (lone surrogates replaced), at most ``limit`` characters
    (a cut value ends with a note of the original length)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    if len(value) > limit:
        marker = f"...(+{len(value)} chars)"
        value = value[: max(limit - len(marker), 0)] + marker[:limit]
    return value


def redact(obj: Any) -> Any:
    """A JSON-safe copy of ``obj`` with secrets replaced by ``****``.

    Masks, at any depth: values of secret-named keys (:func:`is_secret_key`), the ``value`` of
    an object whose ``type`` is ``SecureString``, and any string that looks like an operator
    token (``crl_...``).  Also makes the copy storable: keys become strings, tuples lists,
    NaN/inf and unknown types strings; long strings, long lists and deep nesting are cut.
    """
    return _redact(obj, 0)


def _redact(obj: Any, depth: int) -> Any:
    if obj is None or isinstance(obj, bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, str):
        return REDACTED if obj.startswith(TOKEN_PREFIX) else clean_text(obj)
    if depth >= MAX_DEPTH:
        return "...(too deep)"
    if isinstance(obj, Mapping):
        secure = any(
            str(k).lower() == "type" and str(v).lower() == "securestring" for k, v in obj.items()
        )
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = clean_text(str(key), 256)
            masked = is_secret_key(name) or (secure and name.lower() in ("value", "values"))
            masked = masked and value not in (None, "")
            out[name] = REDACTED if masked else _redact(value, depth + 1)
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        items = list(obj)
        kept = [_redact(v, depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            kept.append(f"...(+{len(items) - MAX_ITEMS} items)")
        return kept
    if isinstance(obj, bytes | bytearray):
        return f"<{len(obj)} bytes>"
    return clean_text(str(obj))


# Keys ---------------------------------------------------------------------------------------

# DER prefixes of Ed25519 keys in PKCS#8 and SubjectPublicKeyInfo (RFC 8410): openssl reads
# and writes the same files.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def _pem(label: str, der: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def _unpem(data: bytes, label: str, prefix: bytes) -> bytes:
    text = data.decode("ascii", "replace")
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in text or end not in text:
        raise ValueError(f"not a PEM {label}")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    der = base64.b64decode("".join(body.split()), validate=True)
    if len(der) != len(prefix) + 32 or not der.startswith(prefix):
        raise ValueError("not an Ed25519 key")
    return der[len(prefix) :]


def public_key_pem(public_key: bytes) -> bytes:
    return _pem("PUBLIC KEY", _SPKI_PREFIX + public_key)


def load_public_key(data: bytes) -> bytes:
    """The raw Ed25519 public key from ``audit.pub`` (PEM) or from base64 text."""
    try:
        if b"-----BEGIN" in data:
            return _unpem(data, "PUBLIC KEY", _SPKI_PREFIX)
        raw = base64.b64decode(data.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise InvalidRequest("not an Ed25519 public key (expected audit.pub)") from None
    if len(raw) != 32:
        raise InvalidRequest("not an Ed25519 public key (expected audit.pub)")
    return raw


class AuditKey:
    """The server's checkpoint signing key."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.public_key = bytes(key.verify_key)
        self.public_b64 = base64.b64encode(self.public_key).decode()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> AuditKey:
        return cls(SigningKey.generate())

    @classmethod
    def load_or_create(cls, data_dir: Path) -> AuditKey:
        """``audit.key`` (0600) from the data dir, made on first use; ``audit.pub`` beside it."""
        path = data_dir / KEY_FILE
        try:
            if not path.exists():
                _create_key_file(path)
            data = path.read_bytes()
        except OSError as exc:
            raise SetupError(f"cannot use {path}: {exc.strerror or exc}") from None
        try:
            key = cls(SigningKey(_unpem(data, "PRIVATE KEY", _PKCS8_PREFIX)))
        except (ValueError, binascii.Error):
            raise SetupError(f"{path} is not an Ed25519 private key") from None
        key._write_public(data_dir / PUBLIC_KEY_FILE)
        return key

    def private_pem(self) -> bytes:
        return _pem("PRIVATE KEY", _PKCS8_PREFIX + bytes(self._key))

    def _write_public(self, path: Path) -> None:
        pem = public_key_pem(self.public_key)
        try:
            if path.exists() and path.read_bytes() == pem:
                return
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
            tmp.write_bytes(pem)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise SetupError(f"cannot write {path}: {exc.strerror or exc}") from None

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload).signature).decode()


def _create_key_file(path: Path) -> None:
    """Write a new key under a temporary name, then link it in: a concurrent creator's key
    wins intact, and a crash never leaves a half-written ``audit.key``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(AuditKey.generate().private_pem())
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()


# Checkpoints --------------------------------------------------------------------------------


def checkpoint_payload(checkpoint: Mapping[str, Any]) -> bytes:
    """The bytes a checkpoint's signature and ``checkpoint_hash`` cover."""
    return canonical({"v": 1, **{f: checkpoint[f] for f in SIGNED_CHECKPOINT_FIELDS}})


def make_checkpoint(
    key: AuditKey,
    kind: str,
    seq_upto: int,
    hash_upto: str,
    time: float,
    prev_checkpoint_hash: str,
) -> dict[str, Any]:
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    fields: dict[str, Any] = {
        "kind": kind,
        "seq_upto": seq_upto,
        "hash_upto": hash_upto,
        "time": float(time),
        "prev_checkpoint_hash": prev_checkpoint_hash,
        "key_id": key.key_id,
    }
    payload = checkpoint_payload(fields)
    return {
        **fields,
        "checkpoint_hash": hashlib.sha256(payload).hexdigest(),
        "public_key": key.public_b64,
        "signature": key.sign(payload),
    }


def checkpoint_problem(checkpoint: Mapping[str, Any], trusted_key: bytes | None) -> str | None:
    """Why this checkpoint cannot be trusted, or None.  Without ``trusted_key`` the key the
    checkpoint carries is used, which proves consistency but not who signed."""
    if checkpoint["kind"] not in CHECKPOINT_KINDS:
        return f"unknown kind {checkpoint['kind']!r}"
    try:
        public_key = base64.b64decode(checkpoint["public_key"], validate=True)
        signature = base64.b64decode(checkpoint["signature"], validate=True)
        payload = checkpoint_payload(checkpoint)
    except (ValueError, TypeError, binascii.Error):
        return "malformed key, signature or field (edited?)"
    if trusted_key is not None and checkpoint["key_id"] != key_id(trusted_key):
        return f"signed by key {checkpoint['key_id']}, not the trusted key {key_id(trusted_key)}"
    verify_with = trusted_key if trusted_key is not None else public_key
    if len(verify_with) != 32 or key_id(verify_with) != checkpoint["key_id"]:
        return "carries a public key that does not match its key_id (edited?)"
    try:
        VerifyKey(verify_with).verify(payload, signature)
    except (BadSignatureError, ValueError):
        return "signature does not verify (forged or edited?)"
    if hashlib.sha256(payload).hexdigest() != checkpoint["checkpoint_hash"]:
        return "checkpoint_hash does not match its content (edited?)"
    return None
