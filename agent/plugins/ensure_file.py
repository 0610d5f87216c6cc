"""``corral:ensureFile``: a file present with the declared content, mode and owner, or
absent.  Idempotent: only what differs is changed, the output names each change, and a file
already as declared is left untouched ("... nothing to do").

Content is ``content`` (text) or ``sourceUrl`` + ``sha256`` (downloaded over HTTPS as
aws:downloadContent does, at most ``MAX_SOURCE_BYTES``, only when the file's own SHA-256
differs, and checked before anything is replaced); with neither, the content is not managed
(a missing file is created empty).  New content is written to a temporary file in the same
directory, given its mode and owner, fsynced and renamed over the old one (then the
directory is fsynced): a reader sees the old file or the new one, never a part.  Mode and
owner alone are changed in place.  ``mode``, ``owner``, ``group`` left empty keep what the
file has (a new file: 0644, the agent's user and group).

Only regular files: a path that is a directory, a symbolic link or a device is refused, and
the parent directory must exist.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from agent import wire
from agent.plugins.base import PluginResult, StepContext, Stoppable, StopReason
from agent.plugins.download_content import MAX_REDIRECTS, DownloadError, source_info
from agent.plugins.output import CHUNK_BYTES

NAME = "corral:ensureFile"
PLATFORMS = frozenset({"Linux", "MacOS"})
MAX_SOURCE_BYTES = 64 * 1024 * 1024
_MODE = re.compile(r"0?[0-7]{3,4}")
_ID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")


class FileStateError(Exception):
    pass


@dataclass(frozen=True)
class Desired:
    path: Path
    present: bool
    content: bytes | None = None
    source: tuple[str, str] | None = None  # url, sha256 (lower case hex)
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @property
    def digest(self) -> str | None:
        if self.content is not None:
            return hashlib.sha256(self.content).hexdigest()
        return self.source[1] if self.source is not None else None


def _text(inputs: dict[str, Any], key: str) -> str:
    value = inputs.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FileStateError(f"{key} must be a string")
    return value


def check_path(raw: str) -> Path:
    if not raw.startswith("/") or "\x00" in raw:
        raise FileStateError(f"path must be absolute: {raw[:80]!r}")
    parts = raw.split("/")[1:]
    if raw == "/" or any(p in ("", ".", "..") for p in parts):
        raise FileStateError(
            f"path {raw[:80]!r} must name a file: no '.', '..', '//' or trailing '/'"
        )
    return Path(raw)


def _user(raw: str) -> int | None:
    if not raw:
        return None
    if not _ID_NAME.fullmatch(raw):
        raise FileStateError(f"invalid owner {raw[:40]!r}")
    if raw.isdigit():
        return int(raw)
    import pwd

    try:
        return pwd.getpwnam(raw).pw_uid
    except KeyError:
        raise FileStateError(f"no user named {raw} on this node") from None


def _group(raw: str) -> int | None:
    if not raw:
        return None
    if not _ID_NAME.fullmatch(raw):
        raise FileStateError(f"invalid group {raw[:40]!r}")
    if raw.isdigit():
        return int(raw)
    import grp

    try:
        return grp.getgrnam(raw).gr_gid
    except KeyError:
        raise FileStateError(f"no group named {raw} on this node") from None


def desired(inputs: dict[str, Any]) -> Desired:
    path = check_path(_text(inputs, "path"))
    state = _text(inputs, "state").strip() or "present"
    if state not in ("present", "absent"):
        raise FileStateError(f"state must be present or absent, not {state[:40]!r}")
    content, url, digest = _text(inputs, "content"), _text(inputs, "sourceUrl").strip(), ""
    digest = _text(inputs, "sha256").strip()
    mode_text = _text(inputs, "mode").strip()
    owner, group = _text(inputs, "owner").strip(), _text(inputs, "group").strip()
    if state == "absent":
        if content or url or digest or mode_text or owner or group:
            raise FileStateError("state absent takes only a path")
        return Desired(path, present=False)
    if content and url:
        raise FileStateError("give content or sourceUrl, not both")
    if digest and not url:
        raise FileStateError("sha256 goes with sourceUrl")
    source = None
    if url:
        try:
            source = source_info(
                {"sourceType": "HTTPS", "sourceInfo": {"url": url, "sha256": digest}}
            )
        except DownloadError as exc:
            raise FileStateError(str(exc).replace("sourceInfo.", "")) from None
    mode = None
    if mode_text:
        if not _MODE.fullmatch(mode_text):
            raise FileStateError(f"mode must be octal, as 644 or 0640: not {mode_text[:20]!r}")
        mode = int(mode_text, 8)
    return Desired(
        path,
        present=True,
        content=content.encode() if content else None,
        source=source,
        mode=mode,
        uid=_user(owner),
        gid=_group(group),
    )


def _sha256_of(fd: int) -> str:
    hasher = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, CHUNK_BYTES):
        hasher.update(chunk)
    return hasher.hexdigest()


def _owner(uid: int, gid: int) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Stopped(Exception):
    pass


class EnsureFile(Stoppable):
    name = NAME

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        try:
            want = desired(inputs)
            message = self._apply(want, ctx) if want.present else self._remove(want.path)
        except FileStateError as exc:
            return PluginResult.failed(str(exc))
        except _Stopped:
            assert self._stopped is not None
            return PluginResult(self._stopped.status, None, message=self._stopped.describe)
        except OSError as exc:
            return PluginResult.failed(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        ctx.stdout.note(message)
        return PluginResult(wire.ST_SUCCESS, 0)

    def _check_stop(self) -> None:
        if self._stopped is not None:
            raise _Stopped

    def _remove(self, path: Path) -> str:
        try:
            info = path.lstat()
        except FileNotFoundError:
            return f"{path} already absent; nothing to do"
        if not stat.S_ISREG(info.st_mode):
            raise FileStateError(f"{path} is not a regular file; not removing it")
        self._check_stop()
        path.unlink()
        _fsync_dir(path.parent)
        return f"{path}: removed ({info.st_size} bytes)"

    def _apply(self, want: Desired, ctx: StepContext) -> str:
        path = want.path
        if not path.parent.is_dir():
            raise FileStateError(f"directory {path.parent} does not exist")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return self._write(want, None, None, ctx)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FileStateError(f"{path} is a symbolic link; not replacing it") from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileStateError(f"{path} is not a regular file; not replacing it")
            digest = _sha256_of(fd) if want.digest is not None else None
            if want.digest is not None and digest != want.digest:
                return self._write(want, info, digest, ctx)
            return self._fix_attributes(want, fd, info)
        finally:
            os.close(fd)

    def _fix_attributes(self, want: Desired, fd: int, info: os.stat_result) -> str:
        mode, uid, gid = stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid
        changes: list[str] = []
        new_uid = uid if want.uid is None else want.uid
        new_gid = gid if want.gid is None else want.gid
        if (new_uid, new_gid) != (uid, gid):
            self._check_stop()
            os.fchown(fd, new_uid, new_gid)
            changes.append(f"owner {_owner(uid, gid)} -> {_owner(new_uid, new_gid)}")
        if want.mode is not None and want.mode != mode:  # after chown, which may clear setuid
            self._check_stop()
            os.fchmod(fd, want.mode)
            changes.append(f"mode {mode:04o} -> {want.mode:04o}")
        elif want.mode is None and changes and stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
        if not changes:
            shown = f"mode {mode:04o}, owner {_owner(uid, gid)}"
            return f"{want.path} already as declared ({shown}); nothing to do"
        os.fsync(fd)
        return f"{want.path}: changed {', '.join(changes)}"

    def _write(
        self, want: Desired, old: os.stat_result | None, old_digest: str | None, ctx: StepContext
    ) -> str:
        import tempfile

        path = want.path
        mode = (
            want.mode
            if want.mode is not None
            else (stat.S_IMODE(old.st_mode) if old is not None else 0o644)
        )
        uid = want.uid if want.uid is not None else (old.st_uid if old else os.geteuid())
        gid = want.gid if want.gid is not None else (old.st_gid if old else os.getegid())
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".corral")
        tmp: Path | None = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                if want.source is not None:
                    size = self._download(want.source, out, ctx)
                else:
                    out.write(want.content or b"")
                    size = len(want.content or b"")
                out.flush()
                os.fchown(out.fileno(), uid, gid)
                os.fchmod(out.fileno(), mode)
                os.fsync(out.fileno())
            self._check_stop()
            os.replace(tmp_name, path)
            tmp = None
            _fsync_dir(path.parent)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        digest = want.digest or hashlib.sha256(b"").hexdigest()
        if old is None:
            shown = f"{size} bytes, sha256 {digest}, mode {mode:04o}, owner {_owner(uid, gid)}"
            return f"{path}: created ({shown})"
        changes = [f"content sha256 {old_digest} -> {digest} ({size} bytes)"]
        if mode != stat.S_IMODE(old.st_mode):
            changes.append(f"mode {stat.S_IMODE(old.st_mode):04o} -> {mode:04o}")
        if (uid, gid) != (old.st_uid, old.st_gid):
            changes.append(f"owner {_owner(old.st_uid, old.st_gid)} -> {_owner(uid, gid)}")
        return f"{path}: changed {', '.join(changes)}"

    def _download(self, source: tuple[str, str], out: Any, ctx: StepContext) -> int:
        """Stream ``source`` into ``out``: HTTPS only (redirects too), at most
        MAX_SOURCE_BYTES, its SHA-256 checked; returns its size."""
        import httpx

        from agent.http import USER_AGENT, describe
        from agent.plugins.download_content import _require_https

        url, expected = source
        hasher = hashlib.sha256()
        size = 0
        timeout = httpx.Timeout(min(30.0, max(ctx.deadline - time.monotonic(), 0.1)))
        try:
            with httpx.Client(
                verify=True, timeout=timeout, headers={"user-agent": USER_AGENT}, trust_env=True
            ) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    with client.stream("GET", url) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers.get("location", ""))
                            _require_https(url)
                            continue
                        if response.status_code != 200:
                            raise FileStateError(f"GET {url}: HTTP {response.status_code}")
                        declared = response.headers.get("content-length", "")
                        if declared.isdigit() and int(declared) > MAX_SOURCE_BYTES:
                            raise FileStateError(self._too_big(url))
                        for chunk in response.iter_bytes(CHUNK_BYTES):
                            if self._stopped is None and time.monotonic() >= ctx.deadline:
                                self._stopped = StopReason.TIMEOUT
                            self._check_stop()
                            size += len(chunk)
                            if size > MAX_SOURCE_BYTES:
                                raise FileStateError(self._too_big(url))
                            out.write(chunk)
                            hasher.update(chunk)
                        break
                else:
                    raise FileStateError(f"GET {url}: more than {MAX_REDIRECTS} redirects")
        except httpx.HTTPError as exc:
            raise FileStateError(f"GET {url}: {describe(exc)}") from None
        except DownloadError as exc:
            raise FileStateError(str(exc)) from None
        if hasher.hexdigest() != expected:
            raise FileStateError(
                f"sha256 mismatch for {url}: expected {expected}, got {hasher.hexdigest()}; "
                "the file was not changed"
            )
        return size

    @staticmethod
    def _too_big(url: str) -> str:
        return f"GET {url}: larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB; not fetched"
