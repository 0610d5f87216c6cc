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

from agent.patching.base import PackageError, PackageProvider, PatchProvider

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


# Patch Manager: the provider for each baseline operating system (agent/patching/platform.py
# says which this node is), the tool it needs, and its module (each defines ``Patcher``).
PATCHERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    **dict.fromkeys(("UBUNTU", "DEBIAN", "RASPBIAN"), (("apt", "apt-get", "agent.patching.apt"),)),
    **dict.fromkeys(
        (
            "REDHAT_ENTERPRISE_LINUX",
            "CENTOS",
            "ROCKY_LINUX",
            "ALMA_LINUX",
            "ORACLE_LINUX",
            "AMAZON_LINUX",
            "AMAZON_LINUX_2",
            "AMAZON_LINUX_2022",
            "AMAZON_LINUX_2023",
        ),
        (("dnf", "dnf", "agent.patching.dnf"), ("yum", "yum", "agent.patching.dnf")),
    ),
    "SUSE": (("zypper", "zypper", "agent.patching.zypper"),),
    "ARCH": (("pacman", "pacman", "agent.patching.pacman"),),
    "ALPINE": (("apk", "apk", "agent.patching.apk"),),
    "MACOS": (("macos", "softwareupdate", "agent.patching.macos"),),
    "WINDOWS": (("windows_update", "powershell.exe", "agent.patching.windows_update"),),
}


def patch_provider(
    operating_system: str,
    root: str = "/",
    *,
    timeout: float = 3600.0,
    which: Which = shutil.which,
) -> PatchProvider:
    """The patch provider for ``operating_system`` (whose packages are in ``root``), or
    PackageError naming the tool that is missing."""
    choices = PATCHERS.get(operating_system)
    if choices is None:
        raise PackageError(f"Patch Manager has no provider for {operating_system}")
    for name, tool, module in choices:
        if which(tool):
            loaded = importlib.import_module(module)
            factory = loaded.YumPatcher if name == "yum" else loaded.Patcher
            provider: PatchProvider = factory(root, timeout=timeout)
            return provider
    tools = " or ".join(tool for _, tool, _ in choices)
    raise PackageError(f"{operating_system} is patched with {tools}, which is not on this node")
