"""What a package provider is: the seam between "this package, this version, present or
absent" and the node's package manager.  State Manager's ``corral:ensurePackage`` uses it
now; Patch Manager will use the same seam (and add listing upgrades to it) later.

A provider speaks its package manager's machine formats (``dpkg-query -W -f=...``), never
its human output, and raises :class:`PackageError` with a one-line message when the package
manager refuses or fails.
"""

from __future__ import annotations

import re
from typing import Protocol

from agent.errors import AgentError

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
