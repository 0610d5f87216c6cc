"""The node's key pair: made on the node, private key file mode 0600, never sent anywhere."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.errors import ConfigError


class NodeKey:
    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
            return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: register the node again") from None
        except PermissionError:
            raise ConfigError(f"cannot read {path}: permission denied") from None
        except (binascii.Error, ValueError):
            raise ConfigError(f"{path} is corrupted: register the node again") from None

    def save(self, path: Path) -> None:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(raw))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @property
    def public_key_b64(self) -> str:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign_b64(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload)).decode()
