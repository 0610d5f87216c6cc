"""Connection profiles in ``config.toml``, plus the environment variables that override them.

The file (mode 0600, in a 0700 directory)::

    current_profile = "dev"
    [profiles.dev]
    url = "https://127.0.0.1:8443"
    token = "crl_..."
    ca_file = "/abs/path/ca.pem"

Where it lives: ``$CORRAL_CONFIG`` if set, else ``$XDG_CONFIG_HOME/corral/config.toml``,
else ``~/.config/corral/config.toml``.  ``CORRAL_URL``, ``CORRAL_TOKEN`` and
``CORRAL_CA_FILE`` override the fields of the selected profile, and are enough on their own
when no profile exists.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control_plane.cli.errors import ConfigCorrupt, ConfigError, NoProfile

DEFAULT_PROFILE = "default"
PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENV_URL = "CORRAL_URL"
ENV_TOKEN = "CORRAL_TOKEN"
ENV_CA_FILE = "CORRAL_CA_FILE"
_FIELDS = ("url", "token", "ca_file")


@dataclass(frozen=True)
class Profile:
    """Where and how to reach one control plane.  ``ca_file`` is None only for env-only use."""

    name: str
    url: str
    token: str
    ca_file: str | None


@dataclass
class Config:
    current_profile: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CORRAL_CONFIG"):
        return Path(env["CORRAL_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.toml"


def ca_path_for(profile: str, config: Path) -> Path:
    """Where `corral login --ca-hash` keeps the fetched CA: next to the config file."""
    return config.parent / f"{profile}-ca.pem"


def load_config(path: Path) -> Config:
    """Read and check the file; a missing file is an empty config."""
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigCorrupt(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigCorrupt(f"config file {path} is corrupted: {exc}") from None
    return _parse(data, path)


def _parse(data: dict[str, Any], path: Path) -> Config:
    def bad(why: str) -> ConfigCorrupt:
        return ConfigCorrupt(f"config file {path} is corrupted: {why}")

    current = data.get("current_profile")
    if current is not None and not isinstance(current, str):
        raise bad("current_profile must be a string")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise bad("[profiles] must be a table")
    profiles: dict[str, Profile] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise bad(f"[profiles.{name}] must be a table")
        for key in ("url", "token"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise bad(f"[profiles.{name}] needs a string '{key}'")
        ca_file = table.get("ca_file")
        if ca_file is not None and not isinstance(ca_file, str):
            raise bad(f"[profiles.{name}] ca_file must be a string")
        profiles[name] = Profile(name, table["url"], table["token"], ca_file or None)
    if current is not None and current not in profiles:
        raise bad(f"current_profile {current!r} has no [profiles.{current}] table")
    return Config(current, profiles)


def save_profile(
    name: str,
    *,
    url: str,
    token: str,
    ca_file: str,
    make_current: bool = True,
    path: Path | None = None,
) -> Path:
    """Add or replace profile ``name``, keeping the others; returns the config file's path.

    Refuses (ConfigCorrupt) to overwrite a file it cannot parse.
    """
    if not PROFILE_NAME_RE.match(name):
        raise ConfigError(f"profile name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    path = config_path() if path is None else path
    config = load_config(path)
    config.profiles[name] = Profile(name, url, token, ca_file)
    if make_current or config.current_profile is None:
        config.current_profile = name
    data: dict[str, Any] = {"current_profile": config.current_profile, "profiles": {}}
    for prof in config.profiles.values():
        data["profiles"][prof.name] = {
            key: value for key in _FIELDS if (value := getattr(prof, key)) is not None
        }
    import tomli_w

    write_private(path, tomli_w.dumps(data).encode("utf-8"))
    return path


def write_private(path: Path, content: bytes) -> None:
    """Atomically write ``content`` with mode 0600; the directory is made 0700 if new."""
    directory = path.parent
    try:
        if not directory.is_dir():
            directory.mkdir(parents=True, mode=0o700)
            directory.chmod(0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(content)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def resolve(path: Path, name: str | None = None, env: Mapping[str, str] | None = None) -> Profile:
    """The profile to use: ``name`` or the current one, with env overrides applied."""
    env = os.environ if env is None else env
    overrides = {
        key: env[var]
        for key, var in (("url", ENV_URL), ("token", ENV_TOKEN), ("ca_file", ENV_CA_FILE))
        if env.get(var)
    }
    config = load_config(path)
    chosen = name or config.current_profile
    base = config.profiles.get(chosen) if chosen else None
    if name is not None and base is None:
        raise NoProfile(
            f"no profile {name!r} in {path}: run `corral login --profile {name} "
            "--url URL --token TOKEN --ca-hash sha256:HEX`"
        )
    if base is None:
        if "url" not in overrides or "token" not in overrides:
            raise NoProfile(
                "no profile configured: run `corral login --url URL --token TOKEN "
                f"--ca-hash sha256:HEX` (or set {ENV_URL} and {ENV_TOKEN})"
            )
        return Profile("env", overrides["url"], overrides["token"], overrides.get("ca_file"))
    return Profile(
        base.name,
        overrides.get("url", base.url),
        overrides.get("token", base.token),
        overrides.get("ca_file", base.ca_file),
    )
