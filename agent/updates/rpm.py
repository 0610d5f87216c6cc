"""Fedora, RHEL, openSUSE: ``rpm -U`` (``--oldpackage`` for a rollback to an older file).
rpm keeps an edited config file (``%config(noreplace)``) by itself."""

from __future__ import annotations

from pathlib import Path


class Installer:
    name = "rpm"

    def argv(self, file: Path, *, downgrade: bool) -> list[str]:
        return ["rpm", "-U", *(["--oldpackage"] if downgrade else []), str(file)]

    @property
    def env(self) -> dict[str, str]:
        return {}
