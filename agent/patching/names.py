"""Patch names in a baseline's ApprovedPatches and RejectedPatches, per OS, as AWS accepts
them ("Package name formats for approved and rejected patch lists"), and matching them
against a package.

- Debian family (UBUNTU, DEBIAN, RASPBIAN): ``name`` as AWS; Corral also takes
  ``name:arch`` and ``name=version`` (``openssl``, ``libc6:amd64``, ``openssl=3.0.11-1``).
- RPM family (RHEL, CentOS, Rocky, Alma, Oracle, Amazon Linux, SUSE): ``name``,
  ``name.arch``, ``name-version-release.arch``, ``name-epoch:version-release.arch``,
  with ``*`` wildcards (``kernel*``, ``openssl-1:3.0.7-27.el9.x86_64``); advisory and CVE
  ids (``RHSA-2024:1234``, ``CVE-2024-0727``) name the packages they fix.
- WINDOWS: KB ids (``KB5034441``) and MSRC bulletin ids (``MS17-010``).
- MACOS, ARCH, ALPINE (Corral's): ``name`` or ``name-version``, ``*`` wildcards.

Matching is case-insensitive, ``*`` matches any run of characters.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Final

from agent.patching.model import Package

DEBIAN_FAMILY: Final = frozenset({"UBUNTU", "DEBIAN", "RASPBIAN"})
RPM_FAMILY: Final = frozenset(
    {
        "REDHAT_ENTERPRISE_LINUX",
        "CENTOS",
        "ROCKY_LINUX",
        "ALMA_LINUX",
        "ORACLE_LINUX",
        "AMAZON_LINUX",
        "AMAZON_LINUX_2",
        "AMAZON_LINUX_2022",
        "AMAZON_LINUX_2023",
        "SUSE",
    }
)
MAX_CHARS: Final = 100
# A patch group (the node tag ``Patch Group`` / ``PatchGroup``): AWS's PatchGroup rule.
PATCH_GROUP_RE: Final = re.compile(r"^[\w\s.:/=+\-@]{1,256}$")

_DEBIAN = re.compile(r"[a-z0-9*][a-z0-9+.*-]*(?::[a-z0-9*-]+)?(?:=[0-9*][A-Za-z0-9.+~:*-]*)?")
_RPM = re.compile(r"[A-Za-z0-9_*][A-Za-z0-9_+.*-]*(?::?[A-Za-z0-9_+.*~^-]+)*")
_WINDOWS = re.compile(r"(?:KB[0-9]{4,8}|MS[0-9]{2}-[0-9]{3})", re.IGNORECASE)
_OTHER = re.compile(r"[A-Za-z0-9_@*][A-Za-z0-9_@+.*:~-]*")
_FORMATS = {
    "debian": "name, name:arch or name=version (openssl, libc6:amd64, openssl=3.0.11-1)",
    "rpm": "name, name.arch, name-version-release.arch or name-epoch:version-release.arch "
    "(kernel*, openssl-1:3.0.7-27.el9.x86_64)",
    "windows": "a KB id (KB5034441) or an MSRC bulletin id (MS17-010)",
    "other": "a package name, or name-version, * as a wildcard",
}


def _family(operating_system: str) -> str:
    if operating_system in DEBIAN_FAMILY:
        return "debian"
    if operating_system in RPM_FAMILY:
        return "rpm"
    if operating_system == "WINDOWS":
        return "windows"
    return "other"


def check(operating_system: str, name: str, where: str) -> str:
    """``name`` if it is a patch name in ``operating_system``'s format, else ValueError
    saying which formats are accepted."""
    family = _family(operating_system)
    pattern = {"debian": _DEBIAN, "rpm": _RPM, "windows": _WINDOWS, "other": _OTHER}[family]
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_CHARS or not pattern.fullmatch(name):
        shown = name[:MAX_CHARS] if isinstance(name, str) else name
        raise ValueError(
            f"{where}: {shown!r} is not a patch name for {operating_system}: "
            f"{_FORMATS[family]}, at most {MAX_CHARS} characters"
        )
    return name


def spellings(operating_system: str, package: Package) -> list[str]:
    """The names a list entry may match ``package`` by."""
    family = _family(operating_system)
    name, arch, version = package.name, package.arch, package.version
    if family == "windows":
        return [s for s in (package.kb, *package.advisories, package.title) if s]
    found = [name]
    if family == "debian":
        if arch:
            found.append(f"{name}:{arch}")
        if version:
            found.append(f"{name}={version}")
        return found
    if family == "rpm":
        found += [*package.advisories, *package.cves]  # approved lists take RHSA/CVE ids
        epoch, _, plain = version.rpartition(":") if ":" in version else ("", "", version)
        if arch:
            found.append(f"{name}.{arch}")
        if plain:
            found.append(f"{name}-{plain}")
            found.append(f"{name}-{epoch or '0'}:{plain}")
            if arch:
                found.append(f"{name}-{plain}.{arch}")
                found.append(f"{name}-{epoch or '0'}:{plain}.{arch}")
        return found
    if version:
        found.append(f"{name}-{version}")
    return found


def matches(operating_system: str, entries: tuple[str, ...], package: Package) -> str | None:
    """The first entry of ``entries`` naming ``package``, or None."""
    if not entries:
        return None
    names = [s.lower() for s in spellings(operating_system, package)]
    for entry in entries:
        pattern = entry.lower()
        if any(fnmatch.fnmatchcase(n, pattern) for n in names):
            return entry
    return None
