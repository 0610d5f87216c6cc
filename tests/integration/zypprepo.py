"""A SUSE-like package repository and a throw-away root for zypper tests, built with the
real tools: rpmbuild (tiny noarch packages), createrepo_c, and modifyrepo_c to add an
updateinfo.xml whose updates zypper shows as patches (category, severity, issued date,
CVE references).  The root gets an rpm database under usr/lib/sysimage/rpm (as SLES 15.5+
and Tumbleweed), the old versions installed with rpm, an os-release and the repository
added with ``zypper --root``.  Nothing of the host's packages is touched."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

# Debian's rpm keeps its own database in ~/.rpmdb: always name the one inside the root.
DBPATH = "/usr/lib/sysimage/rpm"
TOOLS = ("zypper", "rpm", "rpmbuild", "createrepo_c", "modifyrepo_c")

_SPEC = """\
Name: {name}
Version: {version}
Release: {release}
Summary: The {name} package
License: MIT
Vendor: Corral Tests
BuildArch: noarch
{requires}
%description
{name} for Corral's zypper tests.
%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo {version} > %{{buildroot}}/usr/share/{name}/VERSION
%files
/usr/share/{name}/VERSION
"""

OS_RELEASE = 'NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\nID="sles"\nID_LIKE="suse"\n'


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=120)


def build_rpm(
    work: Path, name: str, version: str, release: str = "1", requires: Sequence[str] = ()
) -> Path:
    """A noarch rpm holding one file, /usr/share/<name>/VERSION."""
    spec = work / f"{name}-{version}-{release}.spec"
    spec.write_text(
        _SPEC.format(
            name=name,
            version=version,
            release=release,
            requires="\n".join(f"Requires: {r}" for r in requires),
        )
    )
    top = work / "rpmbuild"
    _run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", str(spec)])
    return top / "RPMS/noarch" / f"{name}-{version}-{release}.noarch.rpm"


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
        refs = "".join(
            f'<reference href="https://www.cve.org/CVERecord?id={cve}" id="{cve}" '
            f'title="{cve}" type="cve"/>'
            for cve in patch.cves
        )
        packages = "".join(
            f'<package name="{name}" epoch="0" version="{version}" release="{release}" '
            f'arch="noarch" src="{name}-{version}-{release}.src.rpm">'
            f"<filename>{name}-{version}-{release}.noarch.rpm</filename></package>"
            for name, version, release in patch.packages
        )
        severity = f"<severity>{patch.severity}</severity>" if patch.severity else ""
        updates.append(
            f'<update from="tests@example.org" status="stable" type={quoteattr(patch.category)}'
            f' version="1"><id>{patch.id}</id><title>{patch.title or patch.id}</title>'
            f'{severity}<release>Corral Tests</release><issued date="{patch.issued}"/>'
            f"<references>{refs}</references><description>{patch.title}</description>"
            f'<pkglist><collection short="corral"><name>Corral</name>{packages}'
            "</collection></pkglist></update>"
        )
    return '<?xml version="1.0" encoding="UTF-8"?>\n<updates>' + "".join(updates) + "</updates>\n"


@dataclass
class Repo:
    path: Path
    rpms: dict[str, Path] = field(default_factory=dict)  # "name-version-release" -> file

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def make_repo(path: Path, rpms: Sequence[Path], patches: Sequence[Patch]) -> Repo:
    path.mkdir(parents=True)
    repo = Repo(path)
    for rpm in rpms:
        shutil.copy2(rpm, path / rpm.name)
        repo.rpms[rpm.name.removesuffix(".noarch.rpm")] = rpm
    _run(["createrepo_c", "--quiet", str(path)])
    if patches:
        info = path.parent / f"{path.name}-updateinfo.xml"
        info.write_text(updateinfo_xml(patches))
        _run(["modifyrepo_c", "--mdtype=updateinfo", str(info), str(path / "repodata")])
    return repo


def make_root(root: Path, installed: Sequence[Path], repo_url: str, alias: str = "corral") -> Path:
    """A root with ``installed`` rpms in its database and ``repo_url`` added as ``alias``
    (no GPG check: the test packages are unsigned), its metadata not yet fetched."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text(OS_RELEASE)
    rpm = ["rpm", "--root", str(root), "--dbpath", DBPATH]
    _run([*rpm, "--initdb"])
    if installed:
        _run([*rpm, "-i", *map(str, installed)])
    zypper = ["zypper", "--root", str(root), "--non-interactive", "--quiet"]
    _run([*zypper, "addrepo", "--no-gpgcheck", repo_url, alias])
    return root


def installed_versions(root: Path) -> dict[str, str]:
    """name -> version-release, read with rpm (not with the code under test)."""
    done = _run(
        [
            "rpm",
            "--root",
            str(root),
            "--dbpath",
            DBPATH,
            "-qa",
            "--qf",
            "%{NAME} %{VERSION}-%{RELEASE}\n",
        ]
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if line)
