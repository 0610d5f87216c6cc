"""The node key: made on the node, saved 0600, and a damaged key file is a one-line error."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.errors import ConfigError
from agent.identity import NodeKey


def test_saved_key_is_mode_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = NodeKey.generate()
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]
    loaded = NodeKey.load(path)
    assert loaded.public_key_b64 == key.public_key_b64
    # The loaded key signs for the same public key.
    public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key_b64))
    public.verify(base64.b64decode(loaded.sign_b64(b"payload")), b"payload")


def test_saving_over_a_world_readable_file_leaves_it_private(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    NodeKey.generate().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_saving_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        NodeKey.generate().save(tmp_path / "node.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "node.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"not base64 at all!",
        base64.b64encode(b"short"),  # base64, but not a 32-byte key
        b"",
        b"\xff\xfe\xfd",
    ],
    ids=["not-base64", "wrong-length", "empty", "binary"],
)
def test_corrupted_key_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="is corrupted: register the node again") as caught:
        NodeKey.load(path)
    assert "\n" not in caught.value.message


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is missing: register the node again"):
        NodeKey.load(tmp_path / "node.key")


def test_public_key_is_32_bytes_of_base64() -> None:
    assert len(base64.b64decode(NodeKey.generate().public_key_b64, validate=True)) == 32
    assert NodeKey.generate().public_key_b64 != NodeKey.generate().public_key_b64
