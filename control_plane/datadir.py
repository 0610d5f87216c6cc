"""``corral-server init``: a data dir with a CA, a server certificate, a secret, a config file,
the database and the first admin token."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from control_plane.config import (
    CONFIG_FILE,
    DEFAULT_LISTEN,
    ServerConfig,
    config_to_toml,
    duration_seconds,
    parse_listen,
    url_for,
)
from control_plane.errors import SetupError
from control_plane.security.ca import CertificateAuthority, ca_hash, create_ca, write_private
from control_plane.security.keyring import KeyRing
from control_plane.services.packages.signing import SigningKey
from control_plane.store import migrate

# Files init creates; --force replaces exactly these (and never anything else in the dir).
_OWNED = (
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "node_token.key",
    "audit.key",
    "audit.pub",
    "keyring.json",
    "package-signing.key",
    CONFIG_FILE,
    "corral.db",
    "corral.db-wal",
    "corral.db-shm",
    "dev",
)


@dataclass(frozen=True)
class InitResult:
    url: str
    admin_token: str
    ca_hash: str
    ca_file: str


def is_initialized(data_dir: Path) -> bool:
    return (data_dir / CONFIG_FILE).exists() or (data_dir / "ca.pem").exists()


def _prepare_dir(data_dir: Path, force: bool) -> None:
    if is_initialized(data_dir):
        if not force:
            raise SetupError(f"{data_dir} already holds a Corral server; use --force to replace it")
        for name in _OWNED:
            path = data_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except PermissionError:
        raise SetupError(f"cannot write to {data_dir}: permission denied") from None
    except OSError as exc:
        raise SetupError(f"cannot use {data_dir}: {exc.strerror}") from None


def init_data_dir(
    data_dir: Path,
    hostnames: list[str],
    force: bool = False,
    listen: str = DEFAULT_LISTEN,
    audit_retention: str = "365d",
) -> InitResult:
    data_dir = data_dir.resolve()
    host, port = parse_listen(listen)
    duration_seconds(audit_retention)  # refused before anything is written
    _prepare_dir(data_dir, force)
    config = ServerConfig(
        data_dir=data_dir,
        listen=listen,
        hostnames=list(hostnames),
        audit_retention=audit_retention,
    )
    ca_pem, ca_key = create_ca()
    config.ca_file.write_bytes(ca_pem)
    write_private(config.ca_key_file, ca_key)
    ca = CertificateAuthority.load(config.ca_file, config.ca_key_file)
    cert_pem, key_pem = ca.issue_server_cert(list(hostnames))
    config.cert_file.write_bytes(cert_pem)
    write_private(config.key_file, key_pem)
    write_private(config.secret_file, secrets.token_bytes(32))
    KeyRing.load_or_create(data_dir)  # SecureString's first key (unless supplied from outside)
    SigningKey.load_or_create(data_dir)  # signs the package manifest (docs/install.md)
    (data_dir / CONFIG_FILE).write_text(tomli_w.dumps(config_to_toml(config)), encoding="utf-8")
    os.chmod(data_dir / CONFIG_FILE, 0o600)
    migrate.upgrade(config.sync_database_url)
    token = asyncio.run(_first_token(config))
    return InitResult(
        url=url_for(hostnames[0] if hostnames else host, port),
        admin_token=token,
        ca_hash=ca_hash(ca_pem),
        ca_file=str(config.ca_file),
    )


async def _first_token(config: ServerConfig) -> str:
    from control_plane.services.clock import system_clock
    from control_plane.services.operators import OperatorService
    from control_plane.store.db import Database

    db = Database(config.async_database_url)
    try:
        _, secret = await OperatorService(db, system_clock).create_token("admin", "admin")
    finally:
        await db.close()
    return secret
