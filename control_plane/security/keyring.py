"""The key ring: key-encryption keys (KEKs) that wrap the data keys of SecureString values.

Where the key ring comes from, first match wins:

1. ``CORRAL_KEYRING``: the key ring JSON inline (read-only here: ``create``/``rotate`` refuse);
2. ``CORRAL_KEYRING_FILE``: the path of a key ring file;
3. ``<data dir>/keyring.json``.

An empty variable counts as unset.  The file format::

    {"version": 1, "keys": [{"key_id": "k-1a2b3c4d", "created_at": "2026-01-01T00:00:00.000Z",
                             "key": "<base64 of 32 random bytes>", "state": "active"}]}

The newest active key (by ``created_at``, later in the list on a tie) is current and seals new
values; every other key stays to open what it sealed.  A key ring file must not be accessible by
group or others (as ssh demands of private keys) and is written atomically, mode 0600.  A missing
key ring is not an error until a SecureString is used.  The ``keys`` commands rewrite the whole
file and must not run concurrently with each other.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import datetime as dt
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from control_plane.errors import KeyRingError
from control_plane.services.clock import Clock, rfc3339, system_clock

KEYRING_FILE = "keyring.json"
ENV_INLINE = "CORRAL_KEYRING"
ENV_FILE = "CORRAL_KEYRING_FILE"
KEY_BYTES = 32
FORMAT_VERSION = 1

KeyState = Literal["active", "retired"]
_STATES: tuple[KeyState, ...] = ("active", "retired")
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIELDS = {"key_id", "created_at", "key", "state"}
_HOW_TO_CREATE = f"run 'corral-server keys create' (or set {ENV_INLINE} or {ENV_FILE})"


def valid_key_id(key_id: object) -> bool:
    return isinstance(key_id, str) and _KEY_ID.fullmatch(key_id) is not None


@dataclass(frozen=True)
class Key:
    """One KEK; its material never appears in ``repr``."""

    key_id: str
    created_at: dt.datetime
    state: KeyState
    material: bytes = field(repr=False)


class KeyRing:
    """The KEKs from one source; ``path`` is where changes are saved (None: read-only)."""

    def __init__(
        self,
        keys: builtins.list[Key],
        *,
        source: str,
        path: Path | None,
        exists: bool,
        clock: Clock = system_clock,
    ) -> None:
        self._keys = list(keys)
        self.source = source
        self.path = path
        self.exists = exists
        self._clock = clock

    @classmethod
    def load(
        cls, data_dir: Path, env: Mapping[str, str] | None = None, clock: Clock = system_clock
    ) -> KeyRing:
        """The key ring from the environment or the data dir; empty (not an error) if none."""
        env = os.environ if env is None else env
        inline = env.get(ENV_INLINE, "").strip()
        if inline:
            keys = _parse(inline, ENV_INLINE)
            return cls(keys, source=ENV_INLINE, path=None, exists=True, clock=clock)
        file_name = env.get(ENV_FILE, "").strip()
        path = Path(file_name) if file_name else data_dir / KEYRING_FILE
        raw = _read_private(path)
        keys = [] if raw is None else _parse(raw, str(path))
        return cls(keys, source=str(path), path=path, exists=raw is not None, clock=clock)

    @classmethod
    def load_or_create(
        cls, data_dir: Path, env: Mapping[str, str] | None = None, clock: Clock = system_clock
    ) -> KeyRing:
        """``load``, adding a first key to a missing or empty key ring (``init``, dev)."""
        ring = cls.load(data_dir, env, clock)
        if not ring._keys:
            ring.create()
        return ring

    def current(self) -> Key:
        """The key that seals new values."""
        active = [(k.created_at, i, k) for i, k in enumerate(self._keys) if k.state == "active"]
        if not active:
            if not self._keys:
                raise KeyRingError(f"no key ring at {self.source}: {_HOW_TO_CREATE}")
            raise KeyRingError(
                f"key ring {self.source} has no active key: run 'corral-server keys create'"
            )
        return max(active, key=lambda item: (item[0], item[1]))[2]

    def get(self, key_id: str) -> Key:
        """The key ``key_id``, whatever its state."""
        for key in self._keys:
            if key.key_id == key_id:
                return key
        if not self._keys:
            raise KeyRingError(
                f"value encrypted with key {key_id}, but there is no key ring at {self.source}: "
                f"restore it, or {_HOW_TO_CREATE}"
            )
        raise KeyRingError(
            f"value encrypted with key {key_id}, which is not in the key ring ({self.source})"
        )

    def list(self) -> builtins.list[dict[str, Any]]:
        """Ids, creation times, states and which is current: never the key material."""
        current = self.current().key_id if any(k.state == "active" for k in self._keys) else None
        return [
            {
                "key_id": k.key_id,
                "created_at": _timestamp(k.created_at),
                "state": k.state,
                "current": k.key_id == current,
            }
            for k in self._keys
        ]

    def create(self) -> Key:
        """Add a new active key, which becomes current, and save the ring."""
        known = {k.key_id for k in self._keys}
        key_id = _new_key_id()
        while key_id in known:
            key_id = _new_key_id()
        # Milliseconds, as the file keeps them.
        now = dt.datetime.fromtimestamp(round(self._clock(), 3), dt.UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        latest = max((k.created_at for k in self._keys), default=now)
        # A clock set back must not leave the new key older than the current one.
        key = Key(key_id, max(now, latest), "active", secrets.token_bytes(KEY_BYTES))
        self._save([*self._keys, key])
        return key

    def rotate(self) -> Key:
        """A new current key; every other key is retired and stays to open old values."""
        retired = [replace(k, state="retired") for k in self._keys]
        previous, self._keys = self._keys, retired
        try:
            return self.create()
        except BaseException:
            self._keys = previous
            raise

    def remove(self, key_id: str) -> None:
        """Drop a key (after ``rotate --rewrap``); values it sealed can no longer be opened."""
        key = self.get(key_id)
        if key.state == "active" and self.current().key_id == key_id:
            raise KeyRingError(f"{key_id} is the current key: rotate before removing it")
        self._save([k for k in self._keys if k.key_id != key_id])

    def _save(self, keys: builtins.list[Key]) -> None:
        if self.path is None:
            raise KeyRingError(
                f"the key ring comes from {ENV_INLINE} and cannot be changed here: "
                f"edit the variable, or keep the key ring in a file ({ENV_FILE})"
            )
        _write_private(self.path, _serialize(keys))
        self._keys = keys
        self.exists = True


def _new_key_id() -> str:
    return "k-" + secrets.token_hex(4)


def _timestamp(when: dt.datetime) -> str:
    return rfc3339(when.timestamp()) or ""


def _serialize(keys: list[Key]) -> bytes:
    doc = {
        "version": FORMAT_VERSION,
        "keys": [
            {
                "key_id": k.key_id,
                "created_at": _timestamp(k.created_at),
                "key": base64.b64encode(k.material).decode("ascii"),
                "state": k.state,
            }
            for k in keys
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _parse(raw: str | bytes, source: str) -> list[Key]:
    """Keys from key ring JSON; errors name the source and the field, never a key."""

    def bad(what: str) -> KeyRingError:
        return KeyRingError(f"{source}: malformed key ring: {what}")

    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise bad(f"not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise bad('expected an object {"version": 1, "keys": [...]}')
    if doc.get("version") != FORMAT_VERSION:
        raise bad(f"unsupported version {doc.get('version')!r} (expected {FORMAT_VERSION})")
    if extra := sorted(set(doc) - {"version", "keys"}):
        raise bad(f"unknown field {extra[0]!r}")
    keys: list[Key] = []
    for i, item in enumerate(doc["keys"]):
        key = _parse_key(item, f"keys[{i}]", bad)
        if any(k.key_id == key.key_id for k in keys):
            raise bad(f"key id {key.key_id} appears twice")
        keys.append(key)
    return keys


def _parse_key(item: object, where: str, bad: Callable[[str], KeyRingError]) -> Key:
    if not isinstance(item, dict):
        raise bad(f"{where} is not an object")
    if missing := sorted(_FIELDS - set(item)):
        raise bad(f"{where} lacks {missing[0]!r}")
    if extra := sorted(set(item) - _FIELDS):
        raise bad(f"{where} has unknown field {extra[0]!r}")
    key_id, created, material, state = (item[f] for f in ("key_id", "created_at", "key", "state"))
    if not valid_key_id(key_id):
        raise bad(f"{where}.key_id must be 1-64 letters, digits, '_', '.' or '-'")
    try:
        created_at = dt.datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise bad(f"{where}.created_at must be an RFC 3339 time with a zone")
    try:
        decoded = base64.b64decode(material, validate=True) if isinstance(material, str) else b""
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise bad(f"{where}.key must be the base64 of {KEY_BYTES} bytes")
    if state not in _STATES:
        raise bad(f"{where}.state must be 'active' or 'retired'")
    return Key(key_id, created_at.astimezone(dt.UTC), state, decoded)


def _read_private(path: Path) -> bytes | None:
    """The file's bytes, None if it does not exist; refused if group or others may access it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyRingError(f"cannot read key ring {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyRingError(f"key ring {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyRingError(
                f"key ring {path} has permissions {mode:04o}, which are too open: "
                f"it must be accessible by its owner only (chmod 600 {path})"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _write_private(path: Path, content: bytes) -> None:
    """Write ``content`` atomically with mode 0600: temp file, fsync, rename, fsync the dir."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if hasattr(os, "O_DIRECTORY"):
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise KeyRingError(f"cannot write key ring {path}: {exc.strerror or exc}") from None
