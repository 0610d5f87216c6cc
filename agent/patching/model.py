"""What a patch provider reports and is asked to do: packages (installed, or an available
update) with the metadata a baseline's rules look at, a scan, and an install's outcome.

Vocabulary is AWS's where AWS has one: ``classification`` and ``severity`` are the values a
baseline's CLASSIFICATION and SEVERITY (MSRC_SEVERITY on Windows) filters compare with, in
the OS's own spelling (RHEL: Security, Bugfix, Enhancement, Newpackage; SUSE: Security,
Recommended, Optional, Feature, Document, Yast; Windows: SecurityUpdates, CriticalUpdates
...); ``section`` and ``priority`` are Debian's (SECTION, PRIORITY filters).  An empty string
means the package manager has no such metadata (pacman, apk, brew): docs/patching.md says how
rules apply then.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Package:
    """One package at one version: installed, or an update the repositories offer."""

    name: str
    arch: str = ""  # "amd64", "x86_64", "noarch", "" where the manager has none
    version: str = ""  # the full version string as the manager writes it (epoch included)
    classification: str = ""
    severity: str = ""
    release_time: float | None = None  # epoch seconds the update was released; None unknown
    repository: str = ""  # apt: the suite ("bookworm-security"); dnf/zypper: the repo id
    section: str = ""  # Debian section ("libs", "admin"); "" elsewhere
    priority: str = ""  # Debian priority (Required, Important, Standard, Optional, Extra)
    security: bool = False  # the manager marks this version as a security update
    advisories: tuple[str, ...] = ()  # RHSA-2024:1234, SUSE-SU-..., KB ids behind it
    cves: tuple[str, ...] = ()
    title: str = ""  # a human title (Windows updates, advisories); "" -> the name
    kb: str = ""  # Windows: the KB id ("KB5034441"); "" elsewhere
    installed_time: float | None = None  # installed packages: when, if the manager knows

    @property
    def key(self) -> str:
        """The patch's identity on the node: ``name.arch`` (``name`` with no arch), the KB id
        on Windows."""
        if self.kb:
            return self.kb
        return f"{self.name}.{self.arch}" if self.arch else self.name

    def with_version(self, version: str) -> Package:
        return replace(self, version=version)


@dataclass
class Scan:
    """What the node has and what its repositories offer, changing nothing."""

    product: str  # the PRODUCT filter value for this node ("Ubuntu22.04", "Debian12" ...)
    installed: list[Package]  # one per installed (name, arch); metadata where known
    updates: list[Package]  # the newest available version of each upgradable (name, arch)
    reboot_required: bool = False  # the node already waits for a reboot (a kernel, libc)
    notes: list[str] = field(default_factory=list)  # warnings worth showing the operator
    manager_seconds: float = 0.0  # wall time spent in the package manager's own commands


@dataclass
class InstallOutcome:
    """What an install did.  A failure of the whole transaction (a lock, an unreachable
    repository, a dependency on a BLOCKed package) is raised as PackageError instead."""

    installed: list[Package]  # packages whose version changed (new versions)
    failed: dict[str, str] = field(default_factory=dict)  # patch key -> the manager's reason
    reboot_required: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """A baseline's extra repository (AWS's PatchSource): ``configuration`` is the package
    manager's own repository text (a sources.list line, a yum .repo section ...)."""

    name: str
    products: tuple[str, ...]
    configuration: str
