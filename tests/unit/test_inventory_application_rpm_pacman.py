"""AWS:Application from rpm and pacman databases, for real: the test builds packages
(rpmbuild; a pacman package archive with its .PKGINFO), installs them with the real tools
into a throw-away root (``rpm -i --justdb --dbpath``, ``pacman -U --root --dbpath``) and
the collectors read that root through the same tools and files as on a node."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from agent.inventory.application import _linux, _pacman, _rpm
from agent.inventory.base import CollectContext, CollectError
from agent.tools import Completed, run_tool

_SPEC = """\
Name: {name}
Version: {version}
Release: {release}
{epoch}
Summary: {summary}
License: MIT
Group: Applications/System
URL: https://example.org/{name}
Vendor: Corral Tests
BuildArch: {arch}
%description
The long description.
Second line.
%files
"""


def _rpmbuild(tmp: Path, name: str, version: str, release: str, epoch: str, arch: str) -> Path:
    spec = tmp / f"{name}.spec"
    spec.write_text(
        _SPEC.format(
            name=name,
            version=version,
            release=release,
            epoch=f"Epoch: {epoch}" if epoch else "",
            summary=f"The {name} package",
            arch=arch,
        )
    )
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {tmp / 'top'}", str(spec)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (found,) = (tmp / "top/RPMS").rglob(f"{name}-{version}-{release}.*.rpm")
    return found


@pytest.mark.skipif(
    shutil.which("rpm") is None or shutil.which("rpmbuild") is None,
    reason="rpm and rpmbuild are not installed (apt-get install rpm)",
)
def test_rpm_database_read_with_rpm(tmp_path: Path) -> None:
    root = tmp_path / "root"
    db = root / "var/lib/rpm"
    packages = [
        _rpmbuild(tmp_path, "corral-test", "1.2.3", "4.el9", "2", "noarch"),
        _rpmbuild(tmp_path, "corral-lib", "0.9~rc1", "1", "", "x86_64"),
    ]
    subprocess.run(["rpm", "--initdb", "--dbpath", str(db)], check=True, timeout=60)
    subprocess.run(
        [
            "rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--ignorearch",
            "--dbpath",
            str(db),
            *map(str, packages),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ctx = CollectContext(platform="Linux", run=run_tool, root=root)
    assert _rpm.present(ctx)
    items = sorted(_linux.collect(ctx), key=lambda i: i["Name"])
    for i in items:
        assert i.pop("InstalledTime").endswith("Z")
    assert items == [
        {
            "Name": "corral-lib",
            "Publisher": "Corral Tests",
            "Version": "0.9~rc1",
            "Release": "1",
            "ApplicationType": "Applications/System",
            "Architecture": "x86_64",
            "URL": "https://example.org/corral-lib",
            "Summary": "The corral-lib package",
            "PackageId": "corral-lib-0.9~rc1-1.src.rpm",
            "PackageManager": "rpm",
        },
        {
            "Name": "corral-test",
            "Publisher": "Corral Tests",
            "Version": "1.2.3",
            "Release": "4.el9",
            "Epoch": "2",
            "ApplicationType": "Applications/System",
            "Architecture": "noarch",
            "URL": "https://example.org/corral-test",
            "Summary": "The corral-test package",
            "PackageId": "corral-test-1.2.3-4.el9.src.rpm",
            "PackageManager": "rpm",
        },
    ]
    assert not ctx.warnings


def test_rpm_failures_are_one_line_errors(tmp_path: Path) -> None:
    db = tmp_path / "usr/lib/sysimage/rpm"
    db.mkdir(parents=True)
    (db / "rpmdb.sqlite").write_bytes(b"not a database")

    def missing(argv: list[str], env: object, timeout: float) -> Completed:
        raise FileNotFoundError(argv[0])

    ctx = CollectContext(platform="Linux", run=missing, root=tmp_path)
    with pytest.raises(CollectError, match="rpm: a database is in /usr/lib/sysimage/rpm but rpm"):
        _linux.collect(ctx)
    if shutil.which("rpm") is None:
        return
    ctx = CollectContext(platform="Linux", run=run_tool, root=tmp_path)
    with pytest.raises(CollectError, match=r"rpm -qa failed: .*\(exit 1\)"):
        _linux.collect(ctx)


def _pacman_package(tmp: Path, name: str, version: str, arch: str, group: str) -> Path:
    build = tmp / f"build-{name}"
    (build / f"usr/share/{name}").mkdir(parents=True)
    (build / f"usr/share/{name}/README").write_text("hello\n")
    (build / ".PKGINFO").write_text(
        f"pkgname = {name}\npkgbase = {name}\npkgver = {version}\n"
        f"pkgdesc = The {name} package\nurl = https://example.org/{name}\n"
        "builddate = 1700000000\npackager = Corral Tests <tests@example.org>\n"
        f"size = 6\narch = {arch}\n" + (f"group = {group}\n" if group else "") + "license = MIT\n"
    )
    archive = tmp / f"{name}-{version}-{arch}.pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build / ".PKGINFO", ".PKGINFO")
        tar.add(build / "usr", "usr")
    return archive


def _pacman_argv() -> list[str] | None:
    if shutil.which("pacman") is None:
        return None
    if os.geteuid() == 0:
        return ["pacman"]
    fakeroot = shutil.which("fakeroot")  # pacman -U insists on root
    return [fakeroot, "pacman"] if fakeroot else None


@pytest.mark.skipif(
    _pacman_argv() is None,
    reason="pacman is not installed (apt-get install pacman-package-manager), or the tests"
    " run as a user other than root without fakeroot (pacman -U insists on root)",
)
def test_pacman_database_installed_by_pacman(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/pacman").mkdir(parents=True)
    config = tmp_path / "pacman.conf"
    config.write_text(
        "[options]\nSigLevel = Never\nLocalFileSigLevel = Never\nArchitecture = auto\n"
    )
    archives = [
        _pacman_package(tmp_path, "corral-test", "1:2.0.1-3", "x86_64", "corral-group"),
        _pacman_package(tmp_path, "corral-docs", "0.5-1", "any", ""),
    ]
    argv = _pacman_argv()
    assert argv is not None
    subprocess.run(
        [
            *argv,
            "-U",
            "--noconfirm",
            "--config",
            str(config),
            "--root",
            str(root),
            "--dbpath",
            str(root / "var/lib/pacman"),
            "--logfile",
            str(tmp_path / "pacman.log"),
            "--cachedir",
            str(tmp_path / "cache"),
            "--gpgdir",
            str(tmp_path / "gpg"),
            "--hookdir",
            str(tmp_path / "hooks"),
            *map(str, archives),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (root / "var/lib/pacman/local/junk").mkdir()  # a directory without a desc file
    ctx = CollectContext(platform="Linux", run=run_tool, root=root)
    assert _pacman.present(ctx)
    items = _linux.collect(ctx)
    for i in items:
        assert i.pop("InstalledTime").endswith("Z")
    assert items == [
        {
            "Name": "corral-docs",
            "Version": "0.5-1",
            "Summary": "The corral-docs package",
            "URL": "https://example.org/corral-docs",
            "Architecture": "any",
            "Publisher": "Corral Tests <tests@example.org>",
            "PackageId": "corral-docs-0.5-1-any",
            "PackageManager": "pacman",
        },
        {
            "Name": "corral-test",
            "Version": "1:2.0.1-3",
            "Summary": "The corral-test package",
            "URL": "https://example.org/corral-test",
            "Architecture": "x86_64",
            "Publisher": "Corral Tests <tests@example.org>",
            "ApplicationType": "corral-group",
            "PackageId": "corral-test-1:2.0.1-3-x86_64",
            "PackageManager": "pacman",
        },
    ]
    assert ctx.warnings == [
        "pacman: /var/lib/pacman/local/junk/desc: No such file or directory; skipped"
    ]
