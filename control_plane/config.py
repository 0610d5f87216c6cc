"""The server's typed configuration, read from ``<data-dir>/config.toml``.

One object per program (CONVENTIONS.md): everything the server reads from its config file is a
field here with a type and a default; an unknown or mistyped key is a one-line error.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.errors import SetupError

CONFIG_FILE = "config.toml"
DEFAULT_LISTEN = "127.0.0.1:8443"


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    listen: str = DEFAULT_LISTEN
    hostnames: list[str] = field(default_factory=list)
    database_url: str = ""
    node_credential_days: int = 90
    node_token_minutes: int = 15
    max_request_bytes: int = 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    poll_hold_seconds: float = 20.0
    # Control channel pings: a half-open connection is closed after two intervals.
    channel_ping_seconds: float = 20.0
    # Control channels signing in at once; more are refused with 503 (services/openings.py).
    channel_max_opening: int = 128
    # Access control and audit (docs/security.md).
    audit_retention: str = "365d"
    audit_sign_interval_seconds: float = 3600.0
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 100
    node_rate_limit_per_second: float = 10.0
    node_rate_limit_burst: int = 50
    # Compliance: how long status changes are kept (docs/compliance.md).
    compliance_history_retention: str = "90d"
    # Inventory (docs/inventory.md): how long item changes are kept, and each node's upload
    # budget (a node over it has its uploads refused until the budget refills).
    inventory_history_retention: str = "30d"
    inventory_upload_mib_per_hour: float = 64.0
    # Session Manager's preferences (docs/sessions.md), as SSM's SSM-SessionManagerRunShell:
    # a session document's inputs override the first two.  "off": no limit.
    session_idle_timeout: str = "20m"
    session_max_duration: str = "off"
    session_run_as_default_user: str = "corral-user"
    session_recording: bool = True
    session_resume_grace_seconds: float = 30.0
    session_connect_timeout_seconds: float = 30.0
    session_max_open: int = 1000
    # Package distribution (docs/install.md): the agent/server packages served to nodes;
    # "" means <data_dir>/packages.
    packages_dir: str = ""

    @property
    def inventory_history_retention_seconds(self) -> float:
        return duration_seconds(self.inventory_history_retention)

    @property
    def compliance_history_retention_seconds(self) -> float:
        return duration_seconds(self.compliance_history_retention)

    @property
    def session_idle_timeout_seconds(self) -> float | None:
        off = self.session_idle_timeout == "off"
        return None if off else duration_seconds(self.session_idle_timeout)

    @property
    def session_max_duration_seconds(self) -> float | None:
        off = self.session_max_duration == "off"
        return None if off else duration_seconds(self.session_max_duration)

    @property
    def audit_retention_seconds(self) -> float:
        return duration_seconds(self.audit_retention)

    @property
    def packages_path(self) -> Path:
        """Relative to the data dir unless absolute."""
        return self.data_dir / (self.packages_dir or "packages")

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.data_dir / "ca.key"

    @property
    def cert_file(self) -> Path:
        return self.data_dir / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "server.key"

    @property
    def secret_file(self) -> Path:
        """HMAC key for node access tokens and registration challenges."""
        return self.data_dir / "node_token.key"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "corral.db"

    @property
    def sync_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.db_path}"

    @property
    def async_database_url(self) -> str:
        url = self.sync_database_url
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        if url.startswith("postgresql://"):
            return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        return url


_FIELDS = {f.name: f for f in dataclasses.fields(ServerConfig) if f.name != "data_dir"}
_TYPES: dict[str, tuple[type, ...]] = {
    "listen": (str,),
    "hostnames": (list,),
    "database_url": (str,),
    "node_credential_days": (int,),
    "node_token_minutes": (int,),
    "max_request_bytes": (int,),
    "shutdown_grace_seconds": (int, float),
    "poll_hold_seconds": (int, float),
    "channel_ping_seconds": (int, float),
    "channel_max_opening": (int,),
    "audit_retention": (str,),
    "audit_sign_interval_seconds": (int, float),
    "rate_limit_per_second": (int, float),
    "rate_limit_burst": (int,),
    "node_rate_limit_per_second": (int, float),
    "node_rate_limit_burst": (int,),
    "compliance_history_retention": (str,),
    "inventory_history_retention": (str,),
    "inventory_upload_mib_per_hour": (int, float),
    "session_idle_timeout": (str,),
    "session_max_duration": (str,),
    "session_run_as_default_user": (str,),
    "session_recording": (bool,),
    "session_resume_grace_seconds": (int, float),
    "session_connect_timeout_seconds": (int, float),
    "session_max_open": (int,),
    "packages_dir": (str,),
}
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """``365d``, ``12h``, ``30m``, ``90s``."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise SetupError(f"invalid duration {text!r}: expected a number and s, m, h or d")
    return float(int(match.group(1)) * _UNIT[match.group(2)])


def load_config(data_dir: Path) -> ServerConfig:
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(
            f"{path} not found: run 'corral-server init --data-dir {data_dir}' first"
        ) from None
    except PermissionError:
        raise SetupError(f"cannot read {path}: permission denied") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SetupError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"server"}
    if unknown:
        raise SetupError(
            f"{path}: unknown setting {sorted(unknown)[0]} (settings go under [server])"
        )
    server = raw.get("server", {})
    if not isinstance(server, dict):
        raise SetupError(f"{path}: [server] must be a table")
    values: dict[str, Any] = {}
    for key, value in server.items():
        if key not in _FIELDS:
            raise SetupError(f"{path}: unknown setting server.{key}")
        if (isinstance(value, bool) and bool not in _TYPES[key]) or not isinstance(
            value, _TYPES[key]
        ):
            raise SetupError(f"{path}: server.{key} has the wrong type")
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not (math.isfinite(value) and value > 0)
        ):
            raise SetupError(f"{path}: server.{key} must be a positive number")
        values[key] = value
    if not all(isinstance(h, str) and h for h in values.get("hostnames", [])):
        raise SetupError(f"{path}: server.hostnames must be a list of names")
    if "listen" in values:
        parse_listen(values["listen"])
    durations = (
        "audit_retention",
        "compliance_history_retention",
        "inventory_history_retention",
        "session_idle_timeout",
        "session_max_duration",
    )
    for key in durations:
        if key in values and not (key.startswith("session_") and values[key] == "off"):
            try:
                duration_seconds(values[key])
            except SetupError as exc:
                raise SetupError(f"{path}: server.{key}: {exc}") from None
    return ServerConfig(data_dir=data_dir, **values)


def config_to_toml(config: ServerConfig) -> dict[str, Any]:
    server = {
        name: getattr(config, name)
        for name in _FIELDS
        if getattr(config, name) != _FIELDS[name].default and name != "hostnames"
    }
    server["listen"] = config.listen
    server["hostnames"] = list(config.hostnames)
    return {"server": server}


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise SetupError(f"invalid --listen {listen!r}: expected HOST:PORT or [IPv6]:PORT")
    if host.startswith("["):
        if not host.endswith("]"):
            raise SetupError(f"invalid --listen {listen!r}: unclosed '['")
        host = host[1:-1]
        if not host:
            raise SetupError(f"invalid --listen {listen!r}: empty address")
    elif ":" in host:
        raise SetupError(f"invalid --listen {listen!r}: write IPv6 addresses as [ADDR]:PORT")
    return host, int(port_s)


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"https://{shown}:{port}"
