"""AWS:Application on Linux, for real: this machine's dpkg database (checked against
dpkg-query), dpkg and apk databases written in a throw-away root in their real formats,
and the Linux gatherer over several databases; AWS:AWSComponent."""

from __future__ import annotations

import errno
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.inventory import registry, schema
from agent.inventory.application import _apk, _dpkg, _linux
from agent.inventory.base import CollectContext, CollectError
from agent.tools import run_tool


def _ctx(root: Path = Path("/")) -> CollectContext:
    return CollectContext(platform="Linux", run=run_tool, root=root, agent_version="1.2.3")


@pytest.mark.skipif(
    shutil.which("dpkg-query") is None or not Path("/var/lib/dpkg/status").is_file(),
    reason="this machine has no dpkg database",
)
def test_this_machines_dpkg_packages_are_what_dpkg_query_lists() -> None:
    ctx = _ctx()
    collect = registry.collector(schema.APPLICATION, "Linux")
    assert collect is not None
    items = collect(ctx)
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    expected = {
        (name, version, arch)
        for status, name, version, arch in (line.split("\t") for line in done.stdout.splitlines())
        if status not in ("not-installed", "config-files")
    }
    dpkg = [i for i in items if i["PackageManager"] == "dpkg"]
    got = {(i["Name"], i["Version"], i["PackageId"].rsplit("_", 1)[1][:-4]) for i in dpkg}
    assert got == expected
    assert not ctx.warnings
    dpkg_item = next(i for i in dpkg if i["Name"] == "dpkg")
    assert dpkg_item["Architecture"] in ("x86_64", "arm64", "i386", "armhf", "ppc64el", "s390x")
    assert dpkg_item["InstalledTime"].endswith("Z")
    assert set(dpkg_item) <= set(schema.TYPES[schema.APPLICATION].all_attributes)


_STATUS = """\
Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 1497
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Multi-Arch: foreign
Version: 3.0.15-1~deb12u1
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.9)
Description: Secure Sockets Layer toolkit - cryptographic utility
 This package is part of the OpenSSL project's implementation of the SSL
 and TLS cryptographic protocols for secure communication over the
 Internet.
Homepage: https://www.openssl.org/

Package: libssl3
Status: install ok installed
Section: libs
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: i386
Multi-Arch: same
Source: openssl
Version: 3.0.15-1~deb12u1
Description: Secure Sockets Layer toolkit - shared libraries

Package: old-removed
Status: deinstall ok config-files
Architecture: all
Version: 1:0.9-2
Conffiles:
 /etc/old-removed.conf 2a1b3c4d5e6f7a8b9c0d1e2f3a4b5c6d

Package: broken
Status: install ok installed
Architecture: all
"""


def test_dpkg_status_in_a_root(tmp_path: Path) -> None:
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(_STATUS)
    (info / "openssl.list").write_text("/.\n/usr/bin/openssl\n")
    (info / "libssl3:i386.list").write_text("/.\n")
    os.utime(info / "openssl.list", (1_700_000_000, 1_700_000_000))
    os.utime(info / "libssl3:i386.list", (1_600_000_000, 1_600_000_000))
    ctx = _ctx(tmp_path)
    items = _linux.collect(ctx)
    assert items == [
        {
            "Name": "openssl",
            "Version": "3.0.15-1~deb12u1",
            "Publisher": "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
            "ApplicationType": "utils",
            "Architecture": "x86_64",
            "URL": "https://www.openssl.org/",
            "Summary": "Secure Sockets Layer toolkit - cryptographic utility",
            "PackageId": "openssl_3.0.15-1~deb12u1_amd64.deb",
            "InstalledTime": "2023-11-14T22:13:20Z",
            "PackageManager": "dpkg",
        },
        {
            "Name": "libssl3",
            "Version": "3.0.15-1~deb12u1",
            "Publisher": "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
            "ApplicationType": "libs",
            "Architecture": "i386",
            "Summary": "Secure Sockets Layer toolkit - shared libraries",
            "PackageId": "libssl3_3.0.15-1~deb12u1_i386.deb",
            "InstalledTime": "2020-09-13T12:26:40Z",
            "PackageManager": "dpkg",
        },
    ]
    # the record without a Version is reported, not guessed at
    assert ctx.warnings == [
        "dpkg: /var/lib/dpkg/status: record 4 has no Package or Version; skipped"
    ]


def test_a_database_that_cannot_be_read_fails_the_whole_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "var/lib/dpkg/status").mkdir(parents=True)  # a directory: not a dpkg node
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    (tmp_path / "lib/apk/db/installed").write_text(_APK)
    ctx = _ctx(tmp_path)
    assert not _dpkg.present(ctx)
    assert len(_linux.collect(ctx)) == 2
    status = tmp_path / "var/lib/dpkg/status"
    status.rmdir()
    status.write_text(_STATUS)
    real = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self == status:
            raise OSError(errno.EIO, "Input/output error")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    # apk was readable, but a partial list would read as dpkg's packages removed
    with pytest.raises(CollectError, match="dpkg: cannot read /var/lib/dpkg/status: Input/output"):
        _linux.collect(ctx)


# apk's installed database, as apk-tools writes it (fields of Alpine 3.20's busybox & zlib).
_APK = """\
C:Q1bl0wK2O8fjNfjG1r9B+fMxHYTj4=
P:busybox
V:1.36.1-r29
A:x86_64
S:509861
I:955392
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1716302906
c:fc5a5d7af4b5c6e2b64e9bb46b4f4c4d5de6ab65
D:so:libc.musl-x86_64.so.1
p:/bin/sh cmd:busybox=1.36.1-r29 cmd:sh=1.36.1-r29
r:busybox-initscripts
F:bin
R:busybox
a:0:0:755
Z:Q1UtiHd1IAjEQp2BMdaNx/5pfPlXc=
F:etc
R:securetty
Z:Q1mB95Hq2NUTZ599RDiSsj9w5FrOU=

C:Q1GsHMw3IGg3p0ybA5h3W9QDTBuJI=
P:zlib
V:1.3.1-r1
A:x86_64
S:53656
I:100352
T:A compression/decompression Library
U:https://zlib.net/
L:Zlib
o:zlib
m:Natanael Copa <ncopa@alpinelinux.org>
t:1714486052
c:b4a8a1b6b1e0e8e1f0c7a1d3c6e9f2a3b4c5d6e7
D:so:libc.musl-x86_64.so.1
p:so:libz.so.1=1.3.1
F:lib
R:libz.so.1
a:0:0:777
Z:Q1/yZ7NlFv8v6Mcp6f2yoK4jYq1mw=

C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=
P:no-version
A:noarch

"""


def test_apk_installed_database(tmp_path: Path) -> None:
    db = tmp_path / "lib/apk/db"
    db.mkdir(parents=True)
    (db / "installed").write_text(_APK)
    ctx = _ctx(tmp_path)
    assert _apk.present(ctx)
    items = _linux.collect(ctx)
    assert items == [
        {
            "Name": "busybox",
            "Version": "1.36.1-r29",
            "Architecture": "x86_64",
            "Summary": "Size optimized toolbox of many common UNIX utilities",
            "URL": "https://busybox.net/",
            "Publisher": "Sören Tempel <soeren+alpine@soeren-tempel.net>",
            "PackageId": "busybox-1.36.1-r29.apk",
            "PackageManager": "apk",
        },
        {
            "Name": "zlib",
            "Version": "1.3.1-r1",
            "Architecture": "x86_64",
            "Summary": "A compression/decompression Library",
            "URL": "https://zlib.net/",
            "Publisher": "Natanael Copa <ncopa@alpinelinux.org>",
            "PackageId": "zlib-1.3.1-r1.apk",
            "PackageManager": "apk",
        },
    ]
    assert ctx.warnings == ["apk: /lib/apk/db/installed: record 3 has no P: or V: line; skipped"]


def test_no_package_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CollectError, match="no package database found"):
        _linux.collect(_ctx(tmp_path))


def test_long_values_are_cut(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    long = "x" * (schema.VALUE_MAX_CHARS + 100)
    (tmp_path / "var/lib/dpkg/status").write_text(
        f"Package: big\nStatus: install ok installed\nVersion: 1.0\nDescription: {long}\n"
    )
    (item,) = _linux.collect(_ctx(tmp_path))
    assert len(item["Summary"]) == schema.VALUE_MAX_CHARS


def test_aws_component_is_the_corral_agent() -> None:
    collect = registry.collector(schema.AWS_COMPONENT, "Linux")
    assert collect is not None
    machine = platform.machine().lower()
    assert collect(_ctx()) == [
        {
            "Name": "corral-agent",
            "ApplicationType": "Corral agent",
            "Publisher": "Corral",
            "Version": "1.2.3",
            "Architecture": {"amd64": "x86_64"}.get(machine, machine),
        }
    ]
