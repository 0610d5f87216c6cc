"""A RHEL-like package repository and a throw-away root for dnf tests, built with the real
tools: rpmbuild (tiny noarch packages), createrepo_c, and modifyrepo_c to add an
updateinfo.xml (advisories: type, severity, issued date, CVE references) as dnf reads it.
zypprepo.py builds its SUSE-like repository with the same rpms and pieces of updateinfo.

The root gets its own etc/dnf/dnf.conf and etc/yum.repos.d (dnf --installroot reads those
inside the root when they exist, so none of the host's dnf configuration is used), an
os-release, and the old versions installed with ``rpm --root -i --nodeps --noscripts``.
Its rpm database is wherever rpm's ``%_dbpath`` puts it inside the root (Debian's rpm:
root/root/.rpmdb) -- the same place dnf --installroot and ``rpm --root`` look.  Nothing of
the host's packages is touched."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

TOOLS = ("dnf", "rpm", "rpmbuild", "createrepo_c", "modifyrepo_c")

_SPEC = """\
Name: {name}
Version: {version}
Release: {release}
{epoch}
Summary: The {name} package
License: MIT
Vendor: Corral Tests
BuildArch: noarch
{requires}
%description
{name} for Corral's package manager tests.
%install
mkdir -p %{{buildroot}}/usr/share/{name}
echo {version} > %{{buildroot}}/usr/share/{name}/VERSION
%files
/usr/share/{name}/VERSION
"""

OS_RELEASE = (
    'NAME="Red Hat Enterprise Linux"\nVERSION="9.3 (Plow)"\nID="rhel"\n'
    'ID_LIKE="fedora"\nVERSION_ID="9.3"\n'
)
DNF_CONF = "[main]\ngpgcheck=1\ninstall_weak_deps=False\nskip_if_unavailable=False\n"


def missing_tools(tools: Sequence[str] = TOOLS) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=120)


def build_rpm(
    work: Path,
    name: str,
    version: str,
    release: str = "1",
    *,
    epoch: int = 0,
    requires: Sequence[str] = (),
) -> Path:
    """A noarch rpm holding one file, /usr/share/<name>/VERSION."""
    spec = work / f"{name}-{version}-{release}.spec"
    spec.write_text(
        _SPEC.format(
            name=name,
            version=version,
            release=release,
            epoch=f"Epoch: {epoch}" if epoch else "",
            requires="\n".join(f"Requires: {r}" for r in requires),
        )
    )
    top = work / "rpmbuild"
    run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", str(spec)])
    return top / "RPMS/noarch" / f"{name}-{version}-{release}.noarch.rpm"


@dataclass(frozen=True)
class Advisory:
    """One updateinfo <update>: a dnf advisory."""

    id: str
    type: str  # security, bugfix, enhancement, newpackage
    severity: str  # Critical, Important, Moderate, Low ("" -> none written)
    issued: str  # "YYYY-MM-DD HH:MM:SS" (UTC)
    packages: tuple[tuple[str, int, str, str], ...]  # (name, epoch, version, release), noarch
    cves: tuple[str, ...] = ()
    title: str = ""
    updated: str = ""  # a later <updated date>, "" -> none written


def references_xml(cves: Sequence[str]) -> str:
    """An update's <reference> elements, one per CVE."""
    return "".join(
        f'<reference href="https://www.cve.org/CVERecord?id={cve}" id="{cve}" '
        f'title="{cve}" type="cve"/>'
        for cve in cves
    )


def pkglist_xml(packages: Sequence[tuple[str, int, str, str]]) -> str:
    """An update's <pkglist>: (name, epoch, version, release) of noarch packages."""
    listed = "".join(
        f'<package name="{name}" epoch="{epoch}" version="{version}" release="{release}" '
        f'arch="noarch" src="{name}-{version}-{release}.src.rpm">'
        f"<filename>{name}-{version}-{release}.noarch.rpm</filename></package>"
        for name, epoch, version, release in packages
    )
    return f'<pkglist><collection short="corral"><name>Corral</name>{listed}</collection></pkglist>'


def updates_xml(updates: Sequence[str]) -> str:
    """An updateinfo.xml document holding ``updates`` (<update> elements)."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n<updates>' + "".join(updates) + "</updates>\n"


def updateinfo_xml(advisories: Sequence[Advisory]) -> str:
    updates = []
    for adv in advisories:
        severity = f"<severity>{adv.severity}</severity>" if adv.severity else ""
        updated = f'<updated date="{adv.updated}"/>' if adv.updated else ""
        title = escape(adv.title or adv.id)
        updates.append(
            f'<update from="tests@example.org" status="final" type={quoteattr(adv.type)}'
            f' version="2"><id>{adv.id}</id><title>{title}</title>'
            f'{severity}<release>Corral Tests</release><issued date="{adv.issued}"/>{updated}'
            f"<references>{references_xml(adv.cves)}</references>"
            f"<description>{title}</description>{pkglist_xml(adv.packages)}</update>"
        )
    return updates_xml(updates)


@dataclass
class Repo:
    path: Path
    rpms: dict[str, Path] = field(default_factory=dict)  # "name-version-release" -> file

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def rpm(self, name: str, version: str, release: str = "1") -> Path:
        return self.rpms[f"{name}-{version}-{release}"]


def make_repo(path: Path, rpms: Sequence[Path], advisories: Sequence[Advisory]) -> Repo:
    return publish(path, rpms, updateinfo_xml(advisories) if advisories else "")


def publish(path: Path, rpms: Sequence[Path], updateinfo: str) -> Repo:
    """A repository at ``path`` holding ``rpms`` (createrepo_c), with ``updateinfo`` (an
    updateinfo.xml document, "" for none) added by modifyrepo_c."""
    path.mkdir(parents=True)
    repo = Repo(path)
    for rpm in rpms:
        shutil.copy2(rpm, path / rpm.name)
        repo.rpms[rpm.name.removesuffix(".noarch.rpm")] = rpm
    run(["createrepo_c", "--quiet", str(path)])
    if updateinfo:
        info = path.parent / f"{path.name}-updateinfo.xml"
        info.write_text(updateinfo)
        run(["modifyrepo_c", "--mdtype=updateinfo", str(info), str(path / "repodata")])
    return repo


def repo_file(repo_id: str, baseurl: str, *, gpgcheck: bool = False) -> str:
    return f"[{repo_id}]\nname={repo_id}\nbaseurl={baseurl}\ngpgcheck={int(gpgcheck)}\n"


def make_root(
    root: Path, installed: Sequence[Path], repo_url: str, repo_id: str = "corral"
) -> Path:
    """A root with ``installed`` rpms in its database and ``repo_url`` as ``repo_id`` (no GPG
    check: the test packages are unsigned), its metadata not yet fetched."""
    (root / "etc/dnf").mkdir(parents=True)
    (root / "etc/yum.repos.d").mkdir()
    (root / "etc/os-release").write_text(OS_RELEASE)
    (root / "etc/dnf/dnf.conf").write_text(DNF_CONF)
    (root / f"etc/yum.repos.d/{repo_id}.repo").write_text(repo_file(repo_id, repo_url))
    rpm = ["rpm", "--root", str(root)]
    run([*rpm, "--initdb"])
    if installed:
        run([*rpm, "-i", "--nodeps", "--noscripts", *map(str, installed)])
    return root


def installed_versions(root: Path, dbpath: str = "") -> dict[str, str]:
    """name -> [epoch:]version-release, read with rpm (not with the code under test) from
    the database rpm's ``%_dbpath`` names in ``root``, or from ``dbpath`` in it."""
    rpm = ["rpm", "--root", str(root), *(["--dbpath", dbpath] if dbpath else [])]
    done = run([*rpm, "-qa", "--qf", "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n"])
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if line)
