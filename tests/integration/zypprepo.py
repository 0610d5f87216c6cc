"""A SUSE-like package repository and a throw-away root for zypper tests, built as
rpmrepo.py builds dnf's (the same tiny noarch rpms, createrepo_c, modifyrepo_c) with an
updateinfo.xml whose updates zypper shows as patches (category, severity, issued date, CVE
references).  The root gets an rpm database under usr/lib/sysimage/rpm (as SLES 15.5+ and
Tumbleweed), the old versions installed with rpm, an os-release and the repository added
with ``zypper --root``.  Nothing of the host's packages is touched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tests.integration import rpmrepo
from tests.integration.rpmrepo import Repo, run

# Debian's rpm keeps its own database in ~/.rpmdb: always name the one inside the root.
DBPATH = "/usr/lib/sysimage/rpm"
TOOLS = ("zypper", "rpm", "rpmbuild", "createrepo_c", "modifyrepo_c")

OS_RELEASE = 'NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\nID="sles"\nID_LIKE="suse"\n'


build_rpm = rpmrepo.build_rpm  # the same tiny noarch rpms as dnf's tests


def missing_tools() -> list[str]:
    return rpmrepo.missing_tools(TOOLS)


@dataclass(frozen=True)
class Patch:
    """One updateinfo <update>: zypper's patch ``id``."""

    id: str
    category: str  # security, recommended, optional, feature, document, yast
    severity: str  # critical, important, moderate, low ("" -> none written)
    issued: int  # epoch seconds
    packages: tuple[tuple[str, str, str], ...]  # (name, version, release), noarch
    cves: tuple[str, ...] = ()
    title: str = ""


def updateinfo_xml(patches: Sequence[Patch]) -> str:
    updates = []
    for patch in patches:
        severity = f"<severity>{patch.severity}</severity>" if patch.severity else ""
        packages = [(name, 0, version, release) for name, version, release in patch.packages]
        updates.append(
            f'<update from="tests@example.org" status="stable" type={quoteattr(patch.category)}'
            f' version="1"><id>{patch.id}</id><title>{patch.title or patch.id}</title>'
            f'{severity}<release>Corral Tests</release><issued date="{patch.issued}"/>'
            f"<references>{rpmrepo.references_xml(patch.cves)}</references>"
            f"<description>{patch.title}</description>{rpmrepo.pkglist_xml(packages)}</update>"
        )
    return rpmrepo.updates_xml(updates)


def make_repo(path: Path, rpms: Sequence[Path], patches: Sequence[Patch]) -> Repo:
    return rpmrepo.publish(path, rpms, updateinfo_xml(patches) if patches else "")


def make_root(root: Path, installed: Sequence[Path], repo_url: str, alias: str = "corral") -> Path:
    """A root with ``installed`` rpms in its database and ``repo_url`` added as ``alias``
    (no GPG check: the test packages are unsigned), its metadata not yet fetched."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(OS_RELEASE)
    rpm = ["rpm", "--root", str(root), "--dbpath", DBPATH]
    run([*rpm, "--initdb"])
    if installed:
        run([*rpm, "-i", *map(str, installed)])
    zypper = ["zypper", "--root", str(root), "--non-interactive", "--quiet"]
    run([*zypper, "addrepo", "--no-gpgcheck", repo_url, alias])
    return root


def installed_versions(root: Path) -> dict[str, str]:
    """name -> version-release (the test packages have no epoch), read with rpm."""
    return rpmrepo.installed_versions(root, DBPATH)
