"""The registration record and status file in the state dir, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.errors import ConfigError, NotRegistered


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file, fsync, then rename: a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Registration:
    node_id: str
    url: str
    registered_at: float
    credential_expires_at: float
    credential_issued_at: float
    ca_hash: str


def save_registration(config: AgentConfig, reg: Registration) -> None:
    write_atomic(config.state_file, json.dumps(asdict(reg), indent=2).encode(), 0o600)


def load_registration(config: AgentConfig) -> Registration:
    path = config.state_file
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotRegistered(
            f"{config.state_dir} holds no registration: run 'corral-agent register' first"
        ) from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{path} is corrupted; register again with --force") from None
    try:
        return Registration(**raw)
    except TypeError:
        raise ConfigError(f"{path} is corrupted; register again with --force") from None


def save_status(config: AgentConfig, status: dict[str, Any]) -> None:
    write_atomic(config.status_file, json.dumps(status).encode())


def load_status(config: AgentConfig) -> dict[str, Any]:
    try:
        data = json.loads(config.status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
