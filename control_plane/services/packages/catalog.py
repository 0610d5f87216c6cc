"""The package files the server has: its ``packages_dir``, and a packaged server's bundled
``packages/`` directory, scanned on demand (a file dropped in is served at once).

Checksums are cached by (path, mtime, size): a manifest request re-hashes only what changed,
not gigabytes of unchanged packages.  Blocking (directory scans, hashing): call in a thread.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.updates.versions import version_key
from control_plane.services.packages.names import PackageName, parse

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PackageFile:
    package: PackageName
    path: Path
    sha256: str
    size: int

    def entry(self) -> dict[str, Any]:
        """Its line of the manifest."""
        p = self.package
        return {
            "name": p.name,
            "version": p.version,
            "format": p.format,
            "arch": p.arch,
            "file": p.file,
            "sha256": self.sha256,
            "size": self.size,
        }


def bundled_dir() -> Path | None:
    """A packaged server's own agent packages (``/opt/corral-server/packages``): present when
    ``Path(sys.prefix).parent / "PACKAGE"`` says this runtime was installed by a package."""
    home = Path(sys.prefix).parent
    return home / "packages" if (home / "PACKAGE").is_file() else None


def sort_key(p: PackageName) -> tuple[Any, ...]:
    return (p.name, version_key(p.version), p.format, p.arch)


class Catalog:
    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._sums: dict[Path, tuple[int, int, str]] = {}

    def names(self) -> dict[str, tuple[PackageName, Path]]:
        """Every package file by name (the first directory holding a name wins)."""
        found: dict[str, tuple[PackageName, Path]] = {}
        for directory in self.dirs:
            try:
                entries = list(os.scandir(directory))
            except OSError:  # not there (yet): nothing to serve from it
                continue
            for entry in entries:
                package = parse(entry.name)
                if package is None or package.file in found:
                    continue
                try:
                    if not entry.is_file():
                        continue
                except OSError:
                    continue
                found[package.file] = (package, Path(entry.path))
        return found

    def files(self) -> list[PackageFile]:
        """Every package file with its checksum, in manifest order."""
        out = []
        names = self.names()
        for package, path in names.values():
            hashed = self._hashed(package, path)
            if hashed is not None:
                out.append(hashed)
        seen = {path for _package, path in names.values()}
        for path in [p for p in self._sums if p not in seen]:
            self._sums.pop(path, None)  # removed files leave the cache
        return sorted(out, key=lambda f: sort_key(f.package))

    def find(self, file: str) -> PackageFile | None:
        """The file called ``file``, if it is a package file the server has."""
        package = parse(file)
        if package is None:
            return None
        for directory in self.dirs:
            path = directory / package.file
            try:
                if path.is_file():
                    return self._hashed(package, path)
            except OSError:
                continue
        return None

    def _hashed(self, package: PackageName, path: Path) -> PackageFile | None:
        try:
            stat = path.stat()
            cached = self._sums.get(path)
            if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
                digest = cached[2]
            else:
                digest = _sha256(path)
                self._sums[path] = (stat.st_mtime_ns, stat.st_size, digest)
        except OSError:  # removed meanwhile, unreadable: not served
            return None
        return PackageFile(package, path, digest, stat.st_size)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
