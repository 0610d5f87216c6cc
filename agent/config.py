"""The agent's typed configuration and the layout of its state dir.

State dir (mode 0700)::

    state.json      registration: node id, server URL, when, credential expiry
    node.key        Ed25519 private key, base64 of the raw 32 bytes (mode 0600, never sent)
    node.pem        the node certificate issued by the server's CA
    ca.pem          the server's CA, pinned by hash at registration
    outbox.db       durable outbox (SQLite): reports not yet acknowledged by the server
    status.json     last successful contact, written by the running daemon
    agent.pid       the running daemon's pid, written at its start (agent/updates/restart.py)
    package-signing.pem   the server's package signing key, pinned (agent/updates/)
    updates/        packages downloaded by Corral-UpdateAgent (the new and the previous one)
    agent.toml      optional settings (see AgentConfig)
    commands/       the Run Command journal, one directory per command (agent/execution/)
    associations.json, association_slots.json   State Manager (agent/associations/)
    inventory/custom/   custom inventory files (*.json) the node's owner drops in
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

CONFIG_FILE = "agent.toml"


def default_state_dir() -> Path:
    env = os.environ.get("CORRAL_AGENT_STATE_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Corral" / "agent"
    if sys.platform == "darwin":
        if os.geteuid() == 0:
            return Path("/Library/Application Support/Corral/agent")
        return Path.home() / "Library" / "Application Support" / "Corral" / "agent"
    if os.geteuid() == 0:
        return Path("/var/lib/corral-agent")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "corral-agent"


def default_inventory_file_roots() -> tuple[str, ...]:
    """Where AWS:File inventory may look unless agent.toml says otherwise: configuration and
    installed software, never home directories or the agent's own state."""
    if sys.platform == "win32":
        return (r"C:\Program Files", r"C:\Program Files (x86)", r"C:\ProgramData")
    if sys.platform == "darwin":
        return ("/Applications", "/etc", "/Library", "/opt", "/usr/local")
    return ("/etc", "/opt", "/srv", "/usr/local", "/var/www")


def default_reboot_command() -> tuple[str, ...]:
    if sys.platform == "win32":
        return ("shutdown", "/r", "/t", "0")
    return ("shutdown", "-r", "now")


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    transport: str = "auto"
    poll_wait_seconds: float = 20.0
    heartbeat_interval_seconds: float = 300.0
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 60.0
    shutdown_budget_seconds: float = 8.0
    # Run Command: a script's reboot exit code (194 / 3010) runs this, then the step again.
    reboots_enabled: bool = True
    reboot_command: tuple[str, ...] = dataclasses.field(default_factory=default_reboot_command)
    # SIGTERM to a stopped step's process group, then SIGKILL after this long.
    kill_grace_seconds: float = 5.0
    # Fork document workers from a pre-started fork server (POSIX); false: a new interpreter.
    fork_server: bool = True
    # Stop the fork server after this long without a command (it starts again with the next
    # one, ~0.1 s); 0 keeps it running.  An idle agent is then one small process.
    fork_server_idle_seconds: float = 300.0
    # State Manager: a scheduled association runs here by itself when its slot is this long
    # past and the server has not been heard from for as long (agent/associations/).
    association_offline_grace_seconds: float = 60.0
    # Inventory: the folders (and what is below them) that AWS:File may list and hash; a
    # requested path outside them is skipped and reported.
    inventory_file_roots: tuple[str, ...] = dataclasses.field(
        default_factory=default_inventory_file_roots
    )
    # Patch Manager: the tree whose packages AWS-RunPatchBaseline scans and patches ("/";
    # another absolute path for an image or chroot kept by this node).
    patch_root: str = "/"
    # Session Manager: whether this node opens sessions at all, and how many at once (one
    # more is refused with a reason the operator sees).
    sessions_enabled: bool = True
    max_sessions: int = 20
    # Corral-UpdateAgent: how long the new agent has to start and reach the server before
    # the previous version is installed again (agent/updates/).
    update_start_timeout_seconds: float = 90.0

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def key_file(self) -> Path:
        return self.state_dir / "node.key"

    @property
    def next_key_file(self) -> Path:
        return self.state_dir / "node.key.next"

    @property
    def cert_file(self) -> Path:
        return self.state_dir / "node.pem"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.pem"

    @property
    def outbox_file(self) -> Path:
        return self.state_dir / "outbox.db"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "agent.pid"

    @property
    def commands_dir(self) -> Path:
        return self.state_dir / "commands"

    @property
    def inventory_custom_dir(self) -> Path:
        return self.state_dir / "inventory" / "custom"


_NUMBERS = {f.name for f in dataclasses.fields(AgentConfig) if f.type in ("float", float)}
_ZERO_MEANS_NEVER = {"fork_server_idle_seconds"}
_BOOLS = {f.name for f in dataclasses.fields(AgentConfig) if f.type in ("bool", bool)}
_INTS = {f.name for f in dataclasses.fields(AgentConfig) if f.type in ("int", int)}


def load_config(state_dir: Path | None) -> AgentConfig:
    state_dir = (state_dir or default_state_dir()).absolute()
    path = state_dir / CONFIG_FILE
    values: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except PermissionError:
            raise ConfigError(f"cannot read {path}: permission denied") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        for key, value in raw.items():
            if key == "transport" and isinstance(value, str):
                values[key] = value
            elif key in _NUMBERS and isinstance(value, int | float) and not isinstance(value, bool):
                if key in _ZERO_MEANS_NEVER and value == 0:
                    pass
                elif not (math.isfinite(value) and value > 0):
                    raise ConfigError(f"{path}: {key} must be positive")
                values[key] = float(value)
            elif key in _BOOLS and isinstance(value, bool):
                values[key] = value
            elif key in _INTS and isinstance(value, int) and not isinstance(value, bool):
                if value < 1:
                    raise ConfigError(f"{path}: {key} must be a positive integer")
                values[key] = value
            elif key == "inventory_file_roots":
                if not (
                    isinstance(value, list)
                    and all(isinstance(v, str) and os.path.isabs(v) for v in value)
                ):
                    raise ConfigError(
                        f"{path}: inventory_file_roots must be a list of absolute paths"
                    )
                values[key] = tuple(value)
            elif key == "patch_root":
                if not (isinstance(value, str) and os.path.isabs(value)):
                    raise ConfigError(f"{path}: patch_root must be an absolute path")
                values[key] = value
            elif key == "reboot_command":
                if not (
                    isinstance(value, list)
                    and value
                    and all(isinstance(v, str) and v for v in value)
                ):
                    raise ConfigError(f"{path}: reboot_command must be a list of strings")
                values[key] = tuple(value)
            else:
                raise ConfigError(f"{path}: unknown setting or wrong type: {key}")
    return AgentConfig(state_dir=state_dir, **values)
