"""What the node has installed, what the server offers, and the one error of this folder.

``PACKAGE`` (written by the package, beside the vendored runtime: ``Path(sys.prefix).parent``)
says how this agent was installed: ``{"name", "version", "format", "arch"}``.  No such file:
the agent was installed with pip, and pip upgrades it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.errors import AgentError

PACKAGE_NAME = "corral-agent"
# The server's file-name rule (the contract): name_version_arch.ext.
FILE_RE = re.compile(
    r"^(corral-agent|corral-server)_([0-9][0-9A-Za-z.+~-]*)_([a-z0-9_]+)\.(deb|rpm|apk|pkg\.tar\.zst)$"
)
VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+~-]{0,63}$")
# What Corral-UpdateAgent's version parameter accepts: a version, or "latest".
REQUESTED_RE = re.compile(r"^(latest|[0-9][0-9A-Za-z.+~-]{0,63})$")
PACKAGE_FILE_MAX_BYTES = 64 * 1024


class UpdateError(AgentError):
    """The upgrade cannot go on; one line saying why (the step's Failed message)."""


class Stopped(UpdateError):
    """The step was cancelled or timed out before anything was installed."""


@dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str
    format: str
    arch: str


@dataclass(frozen=True)
class Entry:
    """One package of the manifest."""

    name: str
    version: str
    format: str
    arch: str
    file: str
    sha256: str
    size: int


class Installer(Protocol):
    name: str  # the tool, for messages: dpkg, rpm, apk, pacman

    def argv(self, file: Path, *, downgrade: bool) -> list[str]:
        """The command installing ``file`` over the installed version (older when
        ``downgrade``: a rollback)."""

    @property
    def env(self) -> dict[str, str]: ...


def read_installed(path: Path) -> InstalledPackage | None:
    """The PACKAGE file at ``path``; None when there is none (a pip install)."""
    try:
        raw = path.read_bytes()[:PACKAGE_FILE_MAX_BYTES]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UpdateError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise UpdateError(f"{path} is not valid JSON") from None
    fields = ("name", "version", "format", "arch")
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
        raise UpdateError(f"{path} must hold name, version, format and arch as strings")
    if not VERSION_RE.match(data["version"]):
        raise UpdateError(f"{path}: invalid version {data['version'][:64]!r}")
    return InstalledPackage(*(str(data[f]) for f in fields))
