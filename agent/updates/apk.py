"""Alpine: ``apk add`` of the file.  ``--allow-untrusted``: apk knows no key of ours; the
file's SHA-256 has been checked against the manifest signed with the pinned key."""

from __future__ import annotations

from pathlib import Path


class Installer:
    name = "apk"

    def argv(self, file: Path, *, downgrade: bool) -> list[str]:
        return ["apk", "add", "--allow-untrusted", str(file)]

    @property
    def env(self) -> dict[str, str]:
        return {}
