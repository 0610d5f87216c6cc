"""Envelope encryption of SecureString values.

Each value gets a fresh 256-bit data key.  The value is sealed with AES-256-GCM under the data
key (fresh 96-bit nonce); the data key is sealed with AES-256-GCM under the key ring's current
KEK (another fresh nonce).  Both carry associated data binding the format version and the
parameter name (the wrap also binds the KEK id), so a blob copied to another name, or with any
field changed, does not open.  AES-GCM rather than RFC 3394 key wrap for the data key: key wrap
takes no associated data, and binding the name to the wrapped key is the point; GCM's 16-byte
tag authenticates the same way the value's does, with one primitive to get right.

The blob, JSON-able, stored as is::

    {"v": 1, "kek": "k-1a2b3c4d", "wrapped_key": b64, "key_nonce": b64,
     "nonce": b64, "ciphertext": b64}

Errors name the parameter and the KEK id, never the plaintext or any key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control_plane.errors import DecryptionFailed, InvalidRequest
from control_plane.security.keyring import Key, KeyRing, valid_key_id

VERSION = 1
NONCE_BYTES = 12
DATA_KEY_BYTES = 32
_TAG_BYTES = 16
_FIELDS = ("v", "kek", "wrapped_key", "key_nonce", "nonce", "ciphertext")
_SIZES: dict[str, Callable[[int], bool]] = {
    "wrapped_key": lambda n: n == DATA_KEY_BYTES + _TAG_BYTES,
    "key_nonce": lambda n: n == NONCE_BYTES,
    "nonce": lambda n: n == NONCE_BYTES,
    "ciphertext": lambda n: n >= _TAG_BYTES,
}


def encrypt(keyring: KeyRing, name: str, plaintext: str) -> dict[str, object]:
    """Seal ``plaintext`` for the parameter ``name`` under the current KEK."""
    try:
        data = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"the value of {name} is not valid UTF-8 text") from None
    kek = keyring.current()
    data_key = os.urandom(DATA_KEY_BYTES)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, data, _value_aad(name))
    return {
        "v": VERSION,
        "kek": kek.key_id,
        **_wrap(kek, name, data_key),
        **_b64(nonce=nonce, ciphertext=ciphertext),
    }


def decrypt(keyring: KeyRing, name: str, blob: Mapping[str, object]) -> str:
    """The plaintext of ``blob`` stored under ``name``; DecryptionFailed if it does not verify."""
    key_id, fields = _fields(name, blob)
    return _open(name, _unwrap(keyring, name, key_id, fields), fields)


def rewrap(keyring: KeyRing, name: str, blob: Mapping[str, object]) -> dict[str, object]:
    """The blob with its data key wrapped under the current KEK; the ciphertext is kept as is.

    The whole blob is verified first, so a damaged value is reported rather than carried over.
    """
    key_id, fields = _fields(name, blob)
    data_key = _unwrap(keyring, name, key_id, fields)
    _open(name, data_key, fields)
    kek = keyring.current()
    kept = {"nonce": blob["nonce"], "ciphertext": blob["ciphertext"]}
    return {"v": VERSION, "kek": kek.key_id, **_wrap(kek, name, data_key), **kept}


def _open(name: str, data_key: bytes, fields: dict[str, bytes]) -> str:
    try:
        data = AESGCM(data_key).decrypt(fields["nonce"], fields["ciphertext"], _value_aad(name))
    except InvalidTag:
        raise DecryptionFailed(
            f"cannot decrypt {name}: the value does not verify "
            "(it was tampered with, or stored under another name)"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionFailed(f"cannot decrypt {name}: the value is not UTF-8 text") from None


def _value_aad(name: str) -> bytes:
    return f"corral-securestring-v{VERSION}\x00value\x00{name}".encode()


def _key_aad(name: str, key_id: str) -> bytes:
    return f"corral-securestring-v{VERSION}\x00data-key\x00{key_id}\x00{name}".encode()


def _b64(**raw: bytes) -> dict[str, object]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in raw.items()}


def _wrap(kek: Key, name: str, data_key: bytes) -> dict[str, object]:
    key_nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(kek.material).encrypt(key_nonce, data_key, _key_aad(name, kek.key_id))
    return _b64(wrapped_key=wrapped, key_nonce=key_nonce)


def _unwrap(keyring: KeyRing, name: str, key_id: str, fields: dict[str, bytes]) -> bytes:
    kek = keyring.get(key_id)
    try:
        return AESGCM(kek.material).decrypt(
            fields["key_nonce"], fields["wrapped_key"], _key_aad(name, key_id)
        )
    except InvalidTag:
        raise DecryptionFailed(
            f"cannot decrypt {name}: its data key does not verify under key {key_id} "
            "(the blob was tampered with, stored under another name, or the key was replaced)"
        ) from None


def _fields(name: str, blob: Mapping[str, object]) -> tuple[str, dict[str, bytes]]:
    """The KEK id and the decoded binary fields; DecryptionFailed naming the first bad one."""

    def bad(what: str) -> DecryptionFailed:
        return DecryptionFailed(f"cannot decrypt {name}: the stored value is malformed ({what})")

    if not isinstance(blob, Mapping):
        raise bad("not an object")
    if missing := [f for f in _FIELDS if f not in blob]:
        raise bad(f"no {missing[0]!r}")
    if blob["v"] != VERSION or isinstance(blob["v"], bool):
        raise bad("unsupported version")
    key_id = blob["kek"]
    if not isinstance(key_id, str) or not valid_key_id(key_id):
        raise bad("'kek' is not a key id")
    out: dict[str, bytes] = {}
    for field, size_ok in _SIZES.items():
        value = blob[field]
        try:
            raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
        except (binascii.Error, ValueError):
            raw = None
        if raw is None:
            raise bad(f"{field!r} is not base64")
        if not size_ok(len(raw)):
            raise bad(f"{field!r} has the wrong length")
        out[field] = raw
    return key_id, out
