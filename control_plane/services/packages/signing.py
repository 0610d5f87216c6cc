"""The package signing key: Ed25519, ``<data_dir>/package-signing.key`` (PEM PKCS8, 0600).

Made when missing (``corral-server init``, and at start for a data dir made before it
existed); created exclusively, so two replicas starting at once end up with one key.  Nodes
pin its public half (``/var/lib/corral-agent/package-signing.pem``): replacing the file makes
every node refuse the server's packages.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from control_plane.errors import SetupError

KEY_FILE = "package-signing.key"


class SigningKey:
    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key()
        self.public_raw = public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = "sha256:" + hashlib.sha256(self.public_raw).hexdigest()

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        path = data_dir / KEY_FILE
        try:
            _create(path)
            data = path.read_bytes()
        except OSError as exc:
            raise SetupError(f"cannot use {path}: {exc.strerror or exc}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise SetupError(f"{path} is not a PEM private key") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise SetupError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def sign_b64(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload)).decode()

    def verify_b64(self, payload: bytes, signature: str) -> bool:
        try:
            self._key.public_key().verify(base64.b64decode(signature), payload)
        except (InvalidSignature, ValueError):
            return False
        return True


def _create(path: Path) -> None:
    """Write a new key unless the file exists: written aside, then linked into place (a
    reader never sees half a key, and of two servers starting at once one key wins)."""
    if path.exists():
        return
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
