"""bench/patching.py's node: a Debian root with N installed packages and an apt repository
with a stable and a stable-security suite (Packages indexes only: a scan downloads nothing)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

SECTIONS = ("libs", "utils", "admin", "net", "python", "devel", "web", "database", "kernel")
PRIORITIES = ("optional", "optional", "optional", "important", "standard", "required", "extra")
MAINTAINER = "Debian Developers <debian-devel@lists.debian.org>"


def native_arch() -> str:
    done = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return done.stdout.strip() or "amd64"


class Catalog:
    """``packages`` installed packages; every ``packages // updates``-th has a security update."""

    def __init__(self, packages: int, updates: int, arch: str) -> None:
        self.n = packages
        self.arch = arch
        step = packages / max(updates, 1)
        self.updated = sorted({int(i * step) for i in range(min(updates, packages))})

    def name(self, i: int) -> str:
        return f"pkg{i:05}-{SECTIONS[i % len(SECTIONS)]}"

    def arch_of(self, i: int) -> str:
        return "all" if i % 5 == 4 else self.arch

    def version(self, i: int) -> str:
        epoch = "1:" if i % 37 == 0 else ""
        return f"{epoch}{1 + i % 9}.{i % 17}.{i % 5}-{1 + i % 3}"

    def new_version(self, i: int) -> str:
        return self.version(i) + "+deb12u1"

    def depends(self, i: int) -> str:
        if i % 3 != 0 or i == 0:
            return ""
        dep = ((i * 2654435761) >> 7) % i  # an earlier package
        return f"{self.name(dep)} (>= {self.version(dep)})"

    def control(self, i: int, version: str) -> str:
        depends = self.depends(i)
        return (
            f"Package: {self.name(i)}\n"
            f"Priority: {PRIORITIES[i % len(PRIORITIES)]}\n"
            f"Section: {SECTIONS[i % len(SECTIONS)]}\n"
            f"Installed-Size: {100 + i % 900}\n"
            f"Maintainer: {MAINTAINER}\n"
            f"Architecture: {self.arch_of(i)}\n"
            f"Source: pkg{i:05}\n"
            f"Version: {version}\n" + (f"Depends: {depends}\n" if depends else "")
        )

    def status(self) -> str:
        """var/lib/dpkg/status, as dpkg writes it."""
        out = []
        for i in range(self.n):
            c = self.control(i, self.version(i))
            head, rest = c.split("\n", 1)
            out.append(
                f"{head}\nStatus: install ok installed\n{rest}"
                f"Description: package number {i} of the benchmark\n"
                " A longer description of the package, as packages carry,\n"
                " over two lines.\nHomepage: https://example.org/pkg\n"
            )
        return "\n".join(out)

    def stanza(self, i: int, version: str) -> str:
        arch = self.arch_of(i)
        filename = f"pool/main/p/pkg{i:05}/{self.name(i)}_{version.split(':')[-1]}_{arch}.deb"
        digest = hashlib.sha256(filename.encode()).hexdigest()
        return (
            self.control(i, version) + f"Description: package number {i} of the benchmark\n"
            f"Filename: {filename}\nSize: {2000 + i}\nSHA256: {digest}\n"
        )


def write_suite(repo: Path, suite: str, stanzas: list[str], arch: str) -> None:
    dist = repo / "dists" / suite
    index = dist / "main" / f"binary-{arch}"
    index.mkdir(parents=True, exist_ok=True)
    (index / "Packages").write_text("\n".join(stanzas))
    options = {
        "Origin": "Corral",
        "Label": "Corral",
        "Suite": suite,
        "Codename": suite,
        "Version": "12",
        "Architectures": arch,
        "Components": "main",
        "Date": "Thu, 01 Jan 2026 00:00:00 UTC",
    }
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    done = subprocess.run([*argv, "release", str(dist)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apt-ftparchive release failed: {done.stderr.strip()}")
    (dist / "Release").write_text(done.stdout)


def build_node(base: Path, packages: int, updates: int) -> tuple[Path, Catalog]:
    """base/repo (the repository) and base/node (the root); the root's path."""
    arch = native_arch()
    catalog = Catalog(packages, updates, arch)
    repo, root = base / "repo", base / "node"
    write_suite(
        repo, "stable", [catalog.stanza(i, catalog.version(i)) for i in range(packages)], arch
    )
    write_suite(
        repo,
        "stable-security",
        [catalog.stanza(i, catalog.new_version(i)) for i in catalog.updated],
        arch,
    )
    for sub in (
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "etc/apt/trusted.gpg.d",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    dpkg = root / "var/lib/dpkg"
    (dpkg / "status").write_text(catalog.status())
    (dpkg / "available").touch()
    for i in range(packages):  # the installed time is the mtime of the package's file list
        name = catalog.name(i)
        (dpkg / "info" / f"{name}.list").write_text(f"/usr/share/doc/{name}\n")
    (root / "etc/apt/sources.list").write_text(
        "".join(f"deb [trusted=yes] file:{repo} {s} main\n" for s in ("stable", "stable-security"))
    )
    (root / "etc/apt/apt.conf.d/99corral-bench").write_text('Acquire::Retries "0";\n')
    (root / "etc/os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n'
    )
    return root, catalog


# The worker (a child process) -----------------------------------------------------------------
