"""Package distribution: the catalog, the signing key, the signed manifest, lookups."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from control_plane.errors import NotFound
from control_plane.services.packages.catalog import Catalog, PackageFile, bundled_dir
from control_plane.services.packages.manifest import manifest_bytes
from control_plane.services.packages.names import AGENT
from control_plane.services.packages.signing import SigningKey
from control_plane.services.packages.updates import UPDATE_DOCUMENT, check_update


def package_dirs(packages_dir: Path) -> list[Path]:
    """``packages_dir``, then a packaged server's bundled packages."""
    bundled = bundled_dir()
    return [packages_dir] + ([bundled] if bundled is not None else [])


class PackageService:
    def __init__(self, data_dir: Path, dirs: list[Path]) -> None:
        self._data_dir = data_dir
        self.catalog = Catalog(dirs)
        self._key: SigningKey | None = None
        self._lock = threading.Lock()  # one hashing pass at a time (threads share the cache)

    def signing_key(self) -> SigningKey:
        """Loaded (made if missing) on first use; blocking."""
        if self._key is None:
            self._key = SigningKey.load_or_create(self._data_dir)
        return self._key

    async def start(self) -> None:
        await asyncio.to_thread(self.signing_key)

    async def manifest(self) -> tuple[bytes, str]:
        """The manifest's bytes and their base64 signature."""
        return await asyncio.to_thread(self._manifest)

    def _manifest(self) -> tuple[bytes, str]:
        key = self.signing_key()
        with self._lock:
            body = manifest_bytes(key.key_id, self.catalog.files())
        return body, key.sign_b64(body)

    async def file(self, name: str) -> PackageFile:
        """The package file called ``name`` with its checksum; NotFound otherwise."""

        def find() -> PackageFile | None:
            with self._lock:
                return self.catalog.find(name)

        found = await asyncio.to_thread(find)
        if found is None:
            raise NotFound(f"no package file {name[:200]!r} on this server")
        return found

    def versions(self, name: str = AGENT) -> list[str]:
        """Versions of ``name`` the server has (any format or architecture); names only."""
        return sorted({p.version for p, _path in self.catalog.names().values() if p.name == name})

    def check_update(self, document: str, values: dict[str, Any]) -> None:
        """The commands' hook: refuse an upgrade to a version the server does not have."""
        if document == UPDATE_DOCUMENT:  # a directory listing, no hashing
            check_update(document, values, self.versions(), str(self.catalog.dirs[0]))
