"""``corral-server init``: a complete data dir with private keys, and it never clobbers one
without --force."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import stat
from pathlib import Path

import pytest

from control_plane.config import load_config
from control_plane.datadir import init_data_dir
from control_plane.errors import SetupError, Unauthorized
from control_plane.services.clock import system_clock
from control_plane.services.operators import OperatorService
from control_plane.store.db import Database

PRIVATE = ("ca.key", "server.key", "node_token.key", "config.toml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def authenticates(data_dir: Path, token: str) -> bool:
    async def check() -> bool:
        db = Database(load_config(data_dir).async_database_url)
        try:
            await OperatorService(db, system_clock).authenticate(token)
        except Unauthorized:
            return False
        finally:
            await db.close()
        return True

    return asyncio.run(check())


def test_init_creates_a_complete_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    result = init_data_dir(data_dir, ["corral.example"], listen="[::1]:9443")
    names = {p.name for p in data_dir.iterdir()}
    assert {"ca.pem", "server.pem", "corral.db", *PRIVATE} <= names
    for name in PRIVATE:
        assert mode(data_dir / name) == 0o600, name
    assert result.url == "https://corral.example:9443"  # the first --hostname
    assert result.ca_file == str(data_dir / "ca.pem")
    der = ssl.PEM_cert_to_DER_cert((data_dir / "ca.pem").read_text())
    assert result.ca_hash == "sha256:" + hashlib.sha256(der).hexdigest()
    config = load_config(data_dir)
    assert (config.listen, config.hostnames) == ("[::1]:9443", ["corral.example"])
    assert authenticates(data_dir, result.admin_token)
    assert not authenticates(data_dir, result.admin_token + "x")


def test_init_url_without_hostnames_is_the_listen_address(tmp_path: Path) -> None:
    assert init_data_dir(tmp_path / "v6", [], listen="[::1]:9443").url == "https://[::1]:9443"
    assert init_data_dir(tmp_path / "any", [], listen="0.0.0.0:8443").url == (
        "https://127.0.0.1:8443"
    )


def test_init_refuses_an_initialized_dir_without_force(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    first = init_data_dir(data_dir, [])
    ca_before = (data_dir / "ca.pem").read_bytes()
    with pytest.raises(SetupError, match="already holds a Corral server; use --force"):
        init_data_dir(data_dir, [])
    assert (data_dir / "ca.pem").read_bytes() == ca_before
    assert authenticates(data_dir, first.admin_token)


def test_force_replaces_the_server_but_nothing_else(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    first = init_data_dir(data_dir, [])
    (data_dir / "notes.txt").write_text("mine", encoding="utf-8")
    second = init_data_dir(data_dir, [], force=True)
    assert second.ca_hash != first.ca_hash
    assert not authenticates(data_dir, first.admin_token)
    assert authenticates(data_dir, second.admin_token)
    assert (data_dir / "notes.txt").read_text(encoding="utf-8") == "mine"
    for name in PRIVATE:
        assert mode(data_dir / name) == 0o600, name


def test_a_dir_with_only_a_config_counts_as_initialized(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir()
    (data_dir / "config.toml").write_text("[server]\n", encoding="utf-8")
    with pytest.raises(SetupError, match="already holds a Corral server"):
        init_data_dir(data_dir, [])


def test_unusable_dir_is_a_setup_error(tmp_path: Path) -> None:
    # The tests may run as root, which ignores permissions: a path under a regular file
    # cannot be created by anyone.
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(SetupError, match=r"cannot use .*file/x") as caught:
        init_data_dir(tmp_path / "file" / "x", [])
    assert "\n" not in caught.value.message


def test_bad_listen_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    data_dir = tmp_path / "srv"
    with pytest.raises(SetupError, match="invalid --listen"):
        init_data_dir(data_dir, [], listen="::1:8443")
    assert not data_dir.exists()


def test_audit_retention_is_written_to_the_config_and_a_bad_one_writes_nothing(
    tmp_path: Path,
) -> None:
    with pytest.raises(SetupError, match="invalid duration"):
        init_data_dir(tmp_path / "bad", [], audit_retention="0d")
    assert not (tmp_path / "bad").exists()
    init_data_dir(tmp_path / "srv", [], audit_retention="90d")
    config = load_config(tmp_path / "srv")
    assert config.audit_retention_seconds == 90 * 86400
