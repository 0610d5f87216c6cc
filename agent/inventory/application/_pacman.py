"""pacman's installed packages, read from its local database: one directory per package
under /var/lib/pacman/local, its ``desc`` file holding ``%NAME%``-style sections each
followed by its value lines and a blank line.

Version is pacman's full version (epoch:pkgver-pkgrel, compared with pacman's rules),
Publisher the Packager, ApplicationType the package's groups (comma-separated),
InstalledTime the %INSTALLDATE%, PackageId name-version-arch (the package file's stem).
"""

from __future__ import annotations

import os

from agent.inventory.application import architecture, item, rfc3339
from agent.inventory.base import CollectContext, CollectError, Item

LOCAL = "/var/lib/pacman/local"


def present(ctx: CollectContext) -> bool:
    return ctx.path(LOCAL + "/ALPM_DB_VERSION").is_file() or _has_packages(ctx)


def _has_packages(ctx: CollectContext) -> bool:
    local = ctx.path(LOCAL)
    try:
        return any(entry.is_dir() for entry in os.scandir(local))
    except OSError:
        return False


def collect(ctx: CollectContext) -> list[Item]:
    local = ctx.path(LOCAL)
    try:
        entries = sorted(e.name for e in os.scandir(local) if e.is_dir())
    except OSError as exc:
        raise CollectError(f"pacman: cannot read {LOCAL}: {exc.strerror}") from None
    items: list[Item] = []
    for entry in entries:
        try:
            text = (local / entry / "desc").read_text("utf-8", "replace")
        except OSError as exc:
            ctx.warn(f"pacman: {LOCAL}/{entry}/desc: {exc.strerror}; skipped")
            continue
        desc = _sections(text)
        name, version = _one(desc, "NAME"), _one(desc, "VERSION")
        if not name or not version:
            ctx.warn(f"pacman: {LOCAL}/{entry}/desc has no %NAME% or %VERSION%; skipped")
            continue
        arch = _one(desc, "ARCH")
        installed = _one(desc, "INSTALLDATE")
        items.append(
            item(
                {
                    "Name": name,
                    "Version": version,
                    "Summary": _one(desc, "DESC"),
                    "URL": _one(desc, "URL"),
                    "Architecture": architecture(arch),
                    "Publisher": _one(desc, "PACKAGER"),
                    "ApplicationType": ",".join(desc.get("GROUPS", [])),
                    "InstalledTime": rfc3339(int(installed)) if installed.isdigit() else None,
                    "PackageId": f"{name}-{version}-{arch}" if arch else f"{name}-{version}",
                    "PackageManager": "pacman",
                }
            )
        )
    return items


def _sections(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        if len(line) > 2 and line[0] == "%" and line[-1] == "%":
            current = found.setdefault(line[1:-1], [])
        elif not line:
            current = None
        elif current is not None:
            current.append(line)
    return found


def _one(desc: dict[str, list[str]], key: str) -> str:
    values = desc.get(key)
    return values[0] if values else ""
