"""The node's key pair: made on the node, private key file mode 0600, never sent anywhere.

Ed25519 through PyNaCl (libsodium): the daemon signs a challenge every 15 minutes, and
libsodium costs it ~1 MB where ``cryptography``'s bindings cost ~8 MB of the 35 MB budget.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from nacl.signing import SigningKey

from agent.errors import ConfigError


class NodeKey:
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: Path) -> NodeKey:
        try:
            raw = base64.b64decode(path.read_bytes().strip(), validate=True)
            if len(raw) != 32:
                raise ValueError("wrong length")
            return cls(SigningKey(raw))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing: register the node again") from None
        except PermissionError:
            raise ConfigError(f"cannot read {path}: permission denied") from None
        except (binascii.Error, ValueError):
            raise ConfigError(f"{path} is corrupted: register the node again") from None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64encode(bytes(self._key)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self._key.verify_key)).decode()

    def sign_b64(self, payload: bytes) -> str:
        return base64.b64encode(self._key.sign(payload).signature).decode()
