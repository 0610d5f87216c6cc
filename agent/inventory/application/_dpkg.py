"""dpkg's installed packages, read from /var/lib/dpkg/status, the file dpkg-query reads
(as cheap as dpkg-query, about 12 ms CPU per 1,000 packages, and it needs no process).

Attributes as amazon-ssm-agent's ``dpkg-query -W`` format: Name (Package), Version (the full
version: epoch:upstream-revision), Publisher (Maintainer), ApplicationType (Section),
Architecture (amd64 reported as x86_64), URL (Homepage), Summary (the Description's first
line), PackageId (name_version_arch.deb).  Corral adds InstalledTime: the modification time
of the package's file list (info/<name>[:<arch>].list), which dpkg rewrites when it
installs or upgrades the package.  Packages removed with their configuration files left
(config-files) or not installed are not listed.
"""

from __future__ import annotations

import os

from agent.inventory.application import architecture, item, rfc3339
from agent.inventory.base import CollectContext, CollectError, Item

STATUS = "/var/lib/dpkg/status"
INFO = "/var/lib/dpkg/info"
# Status words whose package's files are on disk.
_PRESENT = frozenset(
    {
        "installed",
        "half-configured",
        "unpacked",
        "half-installed",
        "triggers-awaited",
        "triggers-pending",
    }
)
_FIELDS = frozenset(
    {
        "Package",
        "Status",
        "Version",
        "Architecture",
        "Maintainer",
        "Section",
        "Homepage",
        "Description",
        "Multi-Arch",
    }
)


def present(ctx: CollectContext) -> bool:
    return ctx.path(STATUS).is_file()


def collect(ctx: CollectContext) -> list[Item]:
    try:
        text = ctx.path(STATUS).read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise CollectError(f"dpkg: cannot read {STATUS}: {exc.strerror}") from None
    info = str(ctx.path(INFO))
    items: list[Item] = []
    for number, stanza in enumerate(text.split("\n\n"), 1):
        fields = _fields(stanza)
        if not fields:
            continue
        name, version = fields.get("Package", ""), fields.get("Version", "")
        status = fields.get("Status", "").split()
        if not status or status[-1] not in _PRESENT:
            continue
        if not name or not version:
            ctx.warn(f"dpkg: {STATUS}: record {number} has no Package or Version; skipped")
            continue
        arch = fields.get("Architecture", "")
        items.append(
            item(
                {
                    "Name": name,
                    "Version": version,
                    "Publisher": fields.get("Maintainer"),
                    "ApplicationType": fields.get("Section"),
                    "Architecture": architecture(arch),
                    "URL": fields.get("Homepage"),
                    "Summary": fields.get("Description"),
                    "PackageId": f"{name}_{version}_{arch}.deb",
                    "InstalledTime": _installed(info, name, arch),
                    "PackageManager": "dpkg",
                }
            )
        )
    return items


def _fields(stanza: str) -> dict[str, str]:
    """The fields of one record that we use (a continuation line belongs to the field
    above it: for Description, its long text, which we do not keep)."""
    found: dict[str, str] = {}
    for line in stanza.split("\n"):
        if not line or line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep and key in _FIELDS:
            found[key] = value.strip()
    return found


def _installed(info: str, name: str, arch: str) -> str | None:
    for candidate in (f"{name}:{arch}.list", f"{name}.list"):
        try:
            return rfc3339(os.stat(os.path.join(info, candidate)).st_mtime)
        except OSError:
            continue
    return None
