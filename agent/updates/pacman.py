"""Arch Linux: ``pacman -U`` of the file (an older one too: pacman warns and downgrades).
The file's SHA-256 has been checked against the manifest signed with the pinned key."""

from __future__ import annotations

from pathlib import Path


class Installer:
    name = "pacman"

    def argv(self, file: Path, *, downgrade: bool) -> list[str]:
        return ["pacman", "-U", "--noconfirm", str(file)]

    @property
    def env(self) -> dict[str, str]:
        return {}
