"""The package provider for this node, chosen here and nowhere else.

Providers are tried in the order of ``PROVIDERS``; the first whose tools are on this node is
used, and its module is imported only then.  Only apt/dpkg (Debian, Ubuntu) exists today.
Later ones plug in as one module each beside ``apt.py`` and one row here, in the order they
should be preferred::

    ("dnf",    ("dnf", "rpm"),            "agent.patching.dnf"),     # Fedora, RHEL, Amazon Linux
    ("zypper", ("zypper", "rpm"),         "agent.patching.zypper"),  # SUSE
    ("pacman", ("pacman",),               "agent.patching.pacman"),  # Arch
    ("windows", ...),  ("macos", ...)                                # beside the OS checks
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable

from agent.patching.base import PackageError, PackageProvider

# name, the tools that must be on PATH, the module holding ``Provider``.
PROVIDERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("apt", ("apt-get", "dpkg-query"), "agent.patching.apt"),
)

Which = Callable[[str], str | None]


def provider_name(which: Which = shutil.which) -> str:
    """The name of the package manager this node has, or PackageError."""
    for name, tools, _module in PROVIDERS:
        if all(which(tool) for tool in tools):
            return name
    known = ", ".join(name for name, _, _ in PROVIDERS)
    raise PackageError(f"no supported package manager on this node (Corral knows: {known})")


def package_provider(
    root: str = "/", *, timeout: float = 3600.0, which: Which = shutil.which
) -> PackageProvider:
    """The provider for this node's package manager, managing the tree at ``root``; each
    package manager command it runs is killed after ``timeout`` seconds."""
    chosen = provider_name(which)
    module = next(m for name, _, m in PROVIDERS if name == chosen)
    provider: PackageProvider = importlib.import_module(module).Provider(root, timeout=timeout)
    return provider
