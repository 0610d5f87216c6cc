"""An Arch-like package repository and a throw-away root for pacman tests, built with the
real tools: package archives written by hand (a .PKGINFO and one file, packed with bsdtar
as makepkg does), ``repo-add`` for the repository database, and ``pacman -U`` to install the
old versions into the root.  The root's own etc/pacman.conf (the one agent/patching/pacman.py
reads for a root other than /) names the repository with a ``file://`` Server and
``SigLevel = Never``.  Nothing of the host's packages is touched."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("pacman", "repo-add", "bsdtar")
BUILDDATE = 1709251200  # 2024-03-01T00:00:00Z; a package's build date is this + its index


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), check=True, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def build_package(
    work: Path,
    name: str,
    version: str,
    *,
    depends: Sequence[str] = (),
    builddate: int = BUILDDATE,
    arch: str = "any",
) -> Path:
    """``name-version-arch.pkg.tar.gz`` holding usr/share/<name>/VERSION."""
    build = work / f"build-{name}-{version}"
    (build / f"usr/share/{name}").mkdir(parents=True)
    (build / f"usr/share/{name}/VERSION").write_text(f"{version}\n")
    (build / ".PKGINFO").write_text(
        f"pkgname = {name}\npkgbase = {name}\npkgver = {version}\n"
        f"pkgdesc = The {name} package\nurl = https://example.org/{name}\n"
        f"builddate = {builddate}\npackager = Corral Tests <tests@example.org>\n"
        f"size = 8\narch = {arch}\nlicense = MIT\n" + "".join(f"depend = {d}\n" for d in depends)
    )
    archive = work / f"{name}-{version}-{arch}.pkg.tar.gz"
    _run(["bsdtar", "-czf", str(archive), ".PKGINFO", "usr"], cwd=build)
    return archive


@dataclass
class Repo:
    path: Path
    name: str

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def make_repo(path: Path, packages: Sequence[Path], name: str = "corral") -> Repo:
    """A repository ``name`` in ``path``: the archives and ``name.db`` by repo-add (which
    keeps the newest version of each package)."""
    path.mkdir(parents=True)
    for archive in packages:
        shutil.copy2(archive, path / archive.name)
    _run(
        [
            "repo-add",
            "--quiet",
            str(path / f"{name}.db.tar.gz"),
            *(str(path / a.name) for a in packages),
        ]
    )
    return Repo(path, name)


def pacman_conf(servers: dict[str, str]) -> str:
    repos = "".join(
        f"[{name}]\nServer = {url}\nSigLevel = Never\n" for name, url in servers.items()
    )
    return "[options]\nArchitecture = auto\nSigLevel = Never\nLocalFileSigLevel = Never\n" + repos


def pacman_argv(root: Path) -> list[str]:
    return [
        "pacman",
        "--noconfirm",
        "--config",
        str(root / "etc/pacman.conf"),
        "--root",
        str(root),
        "--dbpath",
        str(root / "var/lib/pacman"),
        "--cachedir",
        str(root / "var/cache/pacman/pkg"),
        "--logfile",
        str(root / "var/log/pacman.log"),
        "--gpgdir",
        str(root / "etc/pacman.d/gnupg"),
        "--hookdir",
        str(root / "etc/pacman.d/hooks"),
    ]


def make_root(root: Path, installed: Sequence[Path], repo: Repo) -> Path:
    """A root with an Arch os-release, its pacman.conf naming ``repo``, and ``installed``
    archives installed by ``pacman -U`` (sync databases not yet fetched)."""
    (root / "etc/pacman.d/hooks").mkdir(parents=True)
    (root / "var/lib/pacman").mkdir(parents=True)
    (root / "var/cache/pacman/pkg").mkdir(parents=True)
    (root / "var/log").mkdir(parents=True)
    (root / "etc/os-release").write_text('NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n')
    (root / "etc/pacman.conf").write_text(pacman_conf({repo.name: repo.url}))
    if installed:
        _run([*pacman_argv(root), "-U", *map(str, installed)])
    return root


def installed_versions(root: Path) -> dict[str, str]:
    """name -> version, read from the local database's desc files (not by the code under
    test)."""
    found = {}
    for desc in (root / "var/lib/pacman/local").glob("*/desc"):
        lines = desc.read_text().splitlines()
        found[lines[lines.index("%NAME%") + 1]] = lines[lines.index("%VERSION%") + 1]
    return found
