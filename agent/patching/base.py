"""What a package provider is: the seam between "this package, this version, present or
absent" and the node's package manager.  State Manager's ``corral:ensurePackage`` uses it
(:class:`PackageProvider`); Patch Manager uses :class:`PatchProvider` (scan, install the
approved updates), which each package manager's module also implements.

A provider speaks its package manager's machine formats (``dpkg-query -W -f=...``), never
its human output, and raises :class:`PackageError` with a one-line message when the package
manager refuses or fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from agent.errors import AgentError
from agent.patching.model import InstallOutcome, Package, Scan, Source

# Debian Policy 5.6.1: lower case letters, digits, + - . ; at least two characters, starting
# with a letter or digit.  The same rule is the document's allowedPattern.
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# Debian Policy 5.6.12: [epoch:]upstream_version[-debian_revision], upstream starting with a
# digit; letters, digits and . + ~ - (the colon only after the epoch).
PACKAGE_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")


class PackageError(AgentError):
    """The package manager refused or failed; the message says what and why, on one line."""


class PackageProvider(Protocol):
    """One package manager.  ``root`` (given to the constructor, default ``/``) is the
    file system tree whose packages it manages."""

    name: str  # "apt", later "dnf", "zypper", "pacman", "msi", "pkg"

    def installed(self, package: str) -> str | None:
        """The installed version of ``package``, or None when it is not installed."""

    def install(self, package: str, version: str | None) -> None:
        """Install ``package`` (exactly ``version`` when given: upgrading or downgrading)."""

    def remove(self, package: str) -> None:
        """Remove ``package`` (its configuration files stay, as ``apt-get remove``)."""


def check_name(package: str) -> str:
    if not PACKAGE_NAME.fullmatch(package):
        raise PackageError(
            f"invalid package name {package[:80]!r}: lower case letters, digits, '+', '-', "
            "'.', at least two characters, starting with a letter or digit"
        )
    return package


def check_version(version: str) -> str:
    if not PACKAGE_VERSION.fullmatch(version):
        raise PackageError(
            f"invalid package version {version[:80]!r}: [epoch:]upstream[-revision], "
            "starting with a digit"
        )
    return version


class PatchProvider(Protocol):
    """One package manager as Patch Manager uses it (agent/patching/operation.py).  Made as
    ``Patcher(root="/", *, timeout=3600.0, run=run_tool)``: ``root`` the tree whose packages
    it manages (a test's throw-away root), ``timeout`` the seconds each manager command may
    take, ``run`` how commands are run (tests of Windows and macOS replay recorded output
    through it)."""

    name: str  # "apt", "dnf", "yum", "zypper", "pacman", "apk", "macos", "windows_update"

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        """Installed packages and available updates with their metadata; changes nothing on
        the node (refreshing the manager's repository metadata cache aside).  ``sources``:
        extra repositories the baseline names, used for this scan only."""

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        """Install exactly ``updates`` (each at its ``version``), with the dependencies they
        need, except that no package named in ``blocked`` (rejected, RejectedPatchesAction
        BLOCK) may be installed or upgraded: if one would be, nothing is installed and
        PackageError says which and what needed it.  A locked, unreachable or failing
        package manager raises PackageError with its own message; nothing is retried."""


def blocked_by(name: str, blocked: Sequence[str]) -> str | None:
    """The entry of ``blocked`` (a BLOCK baseline's RejectedPatches: names, ``*`` wildcards,
    case-insensitive) that names package ``name``, or None."""
    import fnmatch

    lowered = name.lower()
    for entry in blocked:
        bare = entry.split("=", 1)[0].split(":", 1)[0] if "*" not in entry else entry
        if fnmatch.fnmatchcase(lowered, bare.lower()) or fnmatch.fnmatchcase(
            lowered, entry.lower()
        ):
            return entry
    return None
