"""rpm's database of installed packages, as the dnf and zypper Patchers read it: ``rpm
--root ROOT -qa --qf QUERY`` records (fields and records split by control characters), the
versions written ``[epoch:]version-release`` as dnf and zypper write them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from agent.patching.base import PackageError
from agent.patching.model import Package
from agent.tools import Completed

# Where rpm keeps its database: SLES 15.5+, Tumbleweed and Fedora 36+, then the older place.
DB_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")
FS, RS = "\x1f", "\x1e"
QUERY = (
    FS.join(
        ("%{NAME}", "%{ARCH}", "%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}", "%{INSTALLTIME}")
    )
    + RS
)


def installed(
    tool: Callable[[list[str]], Completed], root: Path, *, find_db: bool = False
) -> list[Package]:
    """The packages installed in ``root``, read with ``rpm`` run through ``tool``.
    ``find_db``: name the database found in the root (``--dbpath``) rather than leave it to
    rpm's ``%_dbpath`` (Debian's own rpm would otherwise use ~/.rpmdb)."""
    argv = ["rpm", "--root", str(root)]
    db = next((d for d in DB_DIRS if (root / d.lstrip("/")).is_dir()), None) if find_db else None
    if db is not None:
        argv += ["--dbpath", db]
    done = tool([*argv, "-qa", "--qf", QUERY])
    if done.returncode != 0:
        raise PackageError(f"rpm -qa failed: {done.reason()}")
    return parse_installed(done.stdout)


def parse_installed(stdout: str) -> list[Package]:
    """``rpm -qa --qf QUERY`` records; gpg-pubkey pseudo packages left out."""
    found: list[Package] = []
    for record in stdout.split(RS):
        fields = record.strip("\n").split(FS)
        if len(fields) != 4 or fields[0] in ("", "gpg-pubkey"):
            continue
        name, arch, version, stamp = fields
        found.append(
            Package(
                name=name,
                arch="" if arch == "(none)" else arch,
                version=version,
                installed_time=float(stamp) if stamp.isdigit() else None,
            )
        )
    return sorted(found, key=lambda p: (p.name, p.arch))
