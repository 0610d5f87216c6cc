"""Debian and Ubuntu: ``dpkg -i`` (an older file installs over a newer one too: a rollback).
``--force-confold`` keeps an edited /etc/corral/agent.toml without asking; nothing prompts."""

from __future__ import annotations

from pathlib import Path


class Installer:
    name = "dpkg"

    def argv(self, file: Path, *, downgrade: bool) -> list[str]:
        return ["dpkg", "--force-confold", "-i", str(file)]

    @property
    def env(self) -> dict[str, str]:
        return {"DEBIAN_FRONTEND": "noninteractive"}
