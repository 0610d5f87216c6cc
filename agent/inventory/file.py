"""AWS:File: metadata of the files AWS-GatherSoftwareInventory's ``files`` parameter names.

A spec is SSM's (amazon-ssm-agent gatherers/file): ``Path`` (a directory), ``Pattern`` (file
name patterns, Go's filepath.Match syntax: ``*``, ``?``, ``[a-z]``, ``[^a]``, ``\\`` escapes),
``Recursive``, ``DirScanLimit`` (directories scanned, SSM's default 5,000), plus Corral's
``DirDepthLimit`` (levels below Path), ``FileScanLimit`` (files kept for this spec; SSM keeps
500 over all specs) and ``Sha256`` (also hash each file, up to SHA256_MAX_BYTES).

Corral's rules beside SSM's: a spec's Path must resolve (symlinks, "..") inside one of the
agent's ``inventory_file_roots``, else it is skipped with a warning naming it; a file that is
a symlink leading outside the roots is skipped the same way; symlinked directories are not
descended into (as filepath.Walk); only regular files are listed (never a FIFO or device);
a limit reached stops that spec with a warning and keeps what was found, where SSM drops
the whole type.  Walks are in name order, so the same tree gives the same items.

Attributes: Name, Size, ModificationTime, LastAccessTime (RFC3339 UTC), InstalledDir (the
directory, as a path on the node) and Sha256 when asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from agent.inventory.base import CollectContext, FileSpec, Item

KEYS: Final = (
    "Path",
    "Pattern",
    "Recursive",
    "DirScanLimit",
    "DirDepthLimit",
    "FileScanLimit",
    "Sha256",
)
MAX_SPECS: Final = 50
MAX_PATTERNS: Final = 50
MAX_PATTERN_CHARS: Final = 256
MAX_PATH_CHARS: Final = 4096
DEFAULT_DIR_SCAN_LIMIT: Final = 5_000  # SSM's DirScanLimit default
MAX_DIR_SCAN_LIMIT: Final = 100_000
DEFAULT_DIR_DEPTH_LIMIT: Final = 32
MAX_DIR_DEPTH_LIMIT: Final = 64
DEFAULT_FILE_SCAN_LIMIT: Final = 500  # SSM's FileCountLimit
MAX_FILE_SCAN_LIMIT: Final = 10_000
MAX_FILES: Final = 10_000  # files over all specs of one gathering
SHA256_MAX_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 1024 * 1024
_WINDOWS_ABSOLUTE: Final = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


def parse_specs(raw: Sequence[Mapping[str, Any]] | str) -> tuple[FileSpec, ...]:
    """The ``files`` parameter as FileSpecs; ValueError with a one-line reason naming the
    spec (``files[2]``) and key when one is wrong."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ValueError("files is not JSON (a list of objects)") from None
    if not isinstance(raw, list | tuple):
        raise ValueError("files must be a list of objects")
    if len(raw) > MAX_SPECS:
        raise ValueError(f"files: at most {MAX_SPECS} specs, not {len(raw)}")
    return tuple(_spec(i, entry) for i, entry in enumerate(raw))


def _spec(index: int, entry: Any) -> FileSpec:
    where = f"files[{index}]"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(str(k) for k in entry if k not in KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0][:40]!r} (known: {', '.join(KEYS)})")
    path = entry.get("Path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f'{where}: Path is required (a directory, such as "/etc")')
    if len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise ValueError(f"{where}: Path is not a usable path")
    if not (path.startswith("/") or _WINDOWS_ABSOLUTE.match(path)):
        raise ValueError(f"{where}: Path must be absolute, not {path[:80]!r}")
    patterns = _patterns(where, entry.get("Pattern", ["*"]))
    return FileSpec(
        path=path,
        patterns=patterns,
        recursive=_bool(where, entry, "Recursive"),
        dir_scan_limit=_int(
            where, entry, "DirScanLimit", DEFAULT_DIR_SCAN_LIMIT, 1, MAX_DIR_SCAN_LIMIT
        ),
        dir_depth_limit=_int(
            where, entry, "DirDepthLimit", DEFAULT_DIR_DEPTH_LIMIT, 0, MAX_DIR_DEPTH_LIMIT
        ),
        file_scan_limit=_int(
            where, entry, "FileScanLimit", DEFAULT_FILE_SCAN_LIMIT, 1, MAX_FILE_SCAN_LIMIT
        ),
        sha256=_bool(where, entry, "Sha256"),
    )


def _patterns(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: Pattern must be a non-empty list of file name patterns")
    if len(value) > MAX_PATTERNS:
        raise ValueError(f"{where}: Pattern: at most {MAX_PATTERNS} patterns")
    found: list[str] = []
    for pattern in value:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(
                f"{where}: each Pattern must be a string of 1 to {MAX_PATTERN_CHARS} characters"
            )
        try:
            compile_pattern(pattern)
        except ValueError as exc:
            raise ValueError(f"{where}: Pattern {pattern[:60]!r}: {exc}") from None
        if pattern not in found:
            found.append(pattern)
    return tuple(found)


def _bool(where: str, entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false")
    return value


def _int(where: str, entry: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where}: {key} must be a whole number from {low} to {high}")
    return value


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match ``pattern`` as a regex over one file name; ValueError where Go
    answers ErrBadPattern (an unclosed ``[``, an empty class, a dangling ``\\``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    break
                low, i = _class_char(pattern, i)
                if i < n and pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                    if high < low:
                        raise ValueError(f"the range {low}-{high} is backwards")
                    ranges.append(f"{re.escape(low)}-{re.escape(high)}")
                else:
                    ranges.append(re.escape(low))
            out.append("[" + ("^" if negated else "") + "".join(ranges) + "]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise ValueError("it ends with a lone \\")
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    if i >= len(pattern):
        raise ValueError("a [ is not closed")
    c = pattern[i]
    if c in "-]":
        raise ValueError(f"{c!r} must be escaped inside [ ]")
    if c == "\\":
        i += 1
        if i >= len(pattern):
            raise ValueError("a [ is not closed")
        c = pattern[i]
    return c, i + 1


def collect(ctx: CollectContext) -> list[Item]:
    roots = _roots(ctx)
    if ctx.files and not roots:
        ctx.warn("AWS:File: no inventory_file_roots exist on this node: no file is gathered")
        return []
    items: list[Item] = []
    seen: set[tuple[str, str]] = set()
    for spec in ctx.files:
        if len(items) >= MAX_FILES:
            ctx.warn(f"AWS:File: {MAX_FILES} files gathered: {spec.path} and later specs skipped")
            break
        base = _resolve(ctx, spec.path)
        if base is None:
            continue
        if not _inside(base, roots):
            ctx.warn(f"AWS:File: {spec.path} is outside inventory_file_roots: skipped")
            continue
        if not base.is_dir():
            ctx.warn(f"AWS:File: {spec.path} is not a directory: skipped")
            continue
        found = 0
        escaped: list[str] = []
        for item in _walk(ctx, spec, base, roots, escaped):
            key = (item["InstalledDir"], item["Name"])
            if key in seen:
                continue
            if found >= spec.file_scan_limit or len(items) >= MAX_FILES:
                limit = spec.file_scan_limit if found >= spec.file_scan_limit else MAX_FILES
                ctx.warn(f"AWS:File: {spec.path}: stopped at the limit of {limit} files")
                break
            seen.add(key)
            items.append(item)
            found += 1
        if escaped:
            more = f" (and {len(escaped) - 1} more)" if len(escaped) > 1 else ""
            ctx.warn(
                f"AWS:File: {escaped[0]}{more}: a symlink leading outside "
                "inventory_file_roots: skipped"
            )
    return items


def _roots(ctx: CollectContext) -> list[Path]:
    roots: list[Path] = []
    for root in ctx.file_roots:
        try:
            roots.append(ctx.path(root).resolve(strict=True))
        except OSError:
            continue  # a root this node does not have
    return roots


def _resolve(ctx: CollectContext, path: str) -> Path | None:
    try:
        return ctx.path(path).resolve(strict=True)
    except FileNotFoundError:
        ctx.warn(f"AWS:File: {path} does not exist: skipped")
    except (OSError, RuntimeError) as exc:  # a symlink loop is a RuntimeError before 3.13
        ctx.warn(f"AWS:File: {path} cannot be resolved ({_why(exc)}): skipped")
    return None


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _walk(
    ctx: CollectContext, spec: FileSpec, base: Path, roots: list[Path], escaped: list[str]
) -> Iterator[Item]:
    """The spec's files under ``base`` (already inside the roots), depth first, in name
    order, bounded by its DirScanLimit and DirDepthLimit."""
    patterns = [compile_pattern(p) for p in spec.patterns]
    depth_limit = spec.dir_depth_limit if spec.recursive else 0
    stack: list[tuple[Path, int]] = [(base, 0)]
    scanned = 0
    while stack:
        directory, depth = stack.pop()
        if ctx.deadline is not None and time.monotonic() > ctx.deadline:
            ctx.warn(f"AWS:File: {spec.path}: the gathering's time ran out; stopped")
            return
        scanned += 1
        if scanned > spec.dir_scan_limit:
            ctx.warn(
                f"AWS:File: {spec.path}: stopped at the limit of {spec.dir_scan_limit} directories"
            )
            return
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            ctx.warn(f"AWS:File: cannot list {_node_path(ctx, directory)}: {_why(exc)}")
            continue
        subdirs: list[Path] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if depth < depth_limit:  # deeper than DirDepthLimit: not scanned
                    subdirs.append(Path(entry.path))
                continue
            if not any(p.fullmatch(entry.name) for p in patterns):
                continue
            item = _item(ctx, spec, directory, entry, roots, escaped)
            if item is not None:
                yield item
        stack.extend((sub, depth + 1) for sub in reversed(subdirs))


def _item(
    ctx: CollectContext,
    spec: FileSpec,
    directory: Path,
    entry: os.DirEntry[str],
    roots: list[Path],
    escaped: list[str],
) -> Item | None:
    target = Path(entry.path)
    shown = _node_path(ctx, target)
    if entry.is_symlink():
        try:
            target = target.resolve(strict=True)
        except (OSError, RuntimeError):
            return None  # a dangling link lists no file
        if target.is_dir():
            return None  # a link to a directory is no file (and is not descended into)
        if not _inside(target, roots):
            escaped.append(shown)  # one warning per spec, naming the first
            return None
    try:
        info = target.stat()
    except OSError as exc:
        ctx.warn(f"AWS:File: cannot read {shown}: {_why(exc)}")
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    item: Item = {
        "Name": entry.name,
        "Size": str(info.st_size),
        "ModificationTime": rfc3339(info.st_mtime),
        "LastAccessTime": rfc3339(info.st_atime),
        "InstalledDir": _node_path(ctx, directory),
    }
    if spec.sha256:
        digest = _sha256(ctx, target, shown, info.st_size)
        if digest is not None:
            item["Sha256"] = digest
    return item


def _sha256(ctx: CollectContext, path: Path, shown: str, size: int) -> str | None:
    if size > SHA256_MAX_BYTES:
        ctx.warn(
            f"AWS:File: {shown} is {size:,} bytes, over the Sha256 limit of "
            f"{SHA256_MAX_BYTES:,}: not hashed"
        )
        return None
    digest = hashlib.sha256()
    read = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                read += len(chunk)
                if read > SHA256_MAX_BYTES:  # it grew while being read
                    ctx.warn(f"AWS:File: {shown} grew past the Sha256 limit: not hashed")
                    return None
                digest.update(chunk)
    except OSError as exc:
        ctx.warn(f"AWS:File: cannot hash {shown}: {_why(exc)}")
        return None
    return digest.hexdigest()


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_path(ctx: CollectContext, path: Path) -> str:
    """``path`` (on this machine) as the node sees it: without the test root."""
    if ctx.root == Path("/"):
        return str(path)
    try:
        return "/" + path.relative_to(ctx.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
