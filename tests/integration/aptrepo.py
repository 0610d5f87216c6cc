"""An apt repository and a throw-away dpkg root, built for a test with the real tools.

:func:`build_repo` writes tiny .debs (dpkg-deb) into ``pool/`` and a ``dists/`` tree with
one Packages index per suite and a Release file made by ``apt-ftparchive release`` (so apt
knows each version's suite, origin and label, as on a real mirror).  :func:`make_root` lays
out an empty apt/dpkg tree pointing at the repository; :func:`install_debs` puts packages
into it with ``dpkg --root`` (the host's own package database is never touched).
:func:`sign_repo` signs a suite with a throw-away gpg key that the root does not trust.

The packages of :data:`PATCH_PACKAGES` make a small distribution with a ``stable`` suite
and a ``stable-security`` suite; :data:`OLD_VERSIONS` is what a node had before the
updates came out.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    suite: str  # the suite publishing it ("stable", "stable-security")
    section: str = "utils"
    priority: str = "optional"
    depends: str = ""
    arch: str = "all"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version}_{self.arch}.deb"


ORIGIN = "Corral"
LABEL = "Corral"

# A node's packages and their updates: one security fix (corral-base), one plain bug fix
# whose installed version came from the security suite (corral-tool), one update that
# needs a newer library and a new package (corral-app -> corral-lib, corral-extra), a
# kernel-like package fixed in the security suite, one package with no update.
PATCH_PACKAGES: tuple[Deb, ...] = (
    Deb("corral-base", "1.0-1", "stable", "libs", "important"),
    Deb("corral-base", "1.0-2", "stable-security", "libs", "important"),
    Deb("corral-tool", "1.0-1", "stable-security", "utils", "optional"),
    Deb("corral-tool", "1.1-1", "stable", "utils", "optional"),
    Deb("corral-lib", "1.0-1", "stable", "libs", "optional"),
    Deb("corral-lib", "2.0-1", "stable", "libs", "optional"),
    Deb("corral-app", "1.0-1", "stable", "admin", "extra", "corral-lib"),
    Deb("corral-app", "2.0-1", "stable", "admin", "extra", "corral-lib (>= 2.0-1), corral-extra"),
    Deb("corral-extra", "1.0-1", "stable", "admin", "optional"),
    Deb("linux-image-corral", "1.0-1", "stable", "kernel", "optional"),
    Deb("linux-image-corral", "1.1-1", "stable-security", "kernel", "optional"),
    Deb("corral-static", "1.0-1", "stable", "misc", "standard"),
)
SUITES = ("stable", "stable-security")
OLD_VERSIONS = {
    "corral-base": "1.0-1",
    "corral-tool": "1.0-1",
    "corral-lib": "1.0-1",
    "corral-app": "1.0-1",
    "linux-image-corral": "1.0-1",
    "corral-static": "1.0-1",
}


def native_arch() -> str:
    done = subprocess.run(
        ["dpkg", "--print-architecture"], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def build_deb(out: Path, deb: Deb, work: Path) -> Path:
    """A package with no maintainer scripts and one small file naming its version."""
    tree = work / f"{deb.name}-{deb.version}"
    (tree / "DEBIAN").mkdir(parents=True)
    depends = f"Depends: {deb.depends}\n" if deb.depends else ""
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {deb.name}\nVersion: {deb.version}\nArchitecture: {deb.arch}\n"
        f"Section: {deb.section}\nPriority: {deb.priority}\n{depends}"
        "Maintainer: Corral tests <tests@corral.invalid>\n"
        f"Description: a test package of Corral ({deb.version})\n"
    )
    doc = tree / "usr/share/doc" / deb.name
    doc.mkdir(parents=True)
    (doc / "version").write_text(deb.version + "\n")
    path = out / deb.filename
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(tree), str(path)],
        check=True,
        capture_output=True,
    )
    return path


def packages_index(repo: Path, debs: Iterable[Deb]) -> bytes:
    """The Packages stanzas of ``debs`` (in ``repo/pool``), as apt-ftparchive would write."""
    stanzas = []
    for deb in debs:
        path = repo / "pool" / deb.filename
        control = subprocess.run(
            ["dpkg-deb", "--field", str(path)], check=True, capture_output=True, text=True
        ).stdout.strip()
        data = path.read_bytes()
        stanzas.append(
            f"{control}\nFilename: pool/{deb.filename}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    return "\n".join(stanzas).encode()


def write_suite(repo: Path, suite: str, debs: Sequence[Deb], arch: str) -> Path:
    """dists/<suite>/main/binary-<arch>/Packages and dists/<suite>/Release."""
    dist = repo / "dists" / suite
    index = dist / "main" / f"binary-{arch}"
    index.mkdir(parents=True, exist_ok=True)
    (index / "Packages").write_bytes(packages_index(repo, debs))
    options = {
        "Origin": ORIGIN,
        "Label": LABEL,
        "Suite": suite,
        "Codename": suite,
        "Version": "1",
        "Architectures": arch,
        "Components": "main",
        "Date": "Thu, 01 Jan 2026 00:00:00 UTC",
    }
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    release = subprocess.run(
        [*argv, "release", str(dist)], check=True, capture_output=True, text=True
    ).stdout
    (dist / "Release").write_text(release)
    return dist


def build_repo(repo: Path, work: Path, debs: Sequence[Deb] = PATCH_PACKAGES) -> Path:
    """``repo`` with pool/ and one dists/<suite> per suite the debs name."""
    arch = native_arch()
    (repo / "pool").mkdir(parents=True, exist_ok=True)
    for deb in debs:
        build_deb(repo / "pool", deb, work)
    for suite in sorted({deb.suite for deb in debs}):
        write_suite(repo, suite, [d for d in debs if d.suite == suite], arch)
    return repo


def sources_list(repo: Path, suites: Sequence[str] = SUITES, trusted: bool = True) -> str:
    option = "[trusted=yes] " if trusted else ""
    return "".join(f"deb {option}file:{repo} {suite} main\n" for suite in suites)


def make_root(root: Path, sources: str) -> Path:
    """An empty dpkg/apt tree (the layout apt and dpkg expect under /) of a Debian 12."""
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
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    (root / "etc/apt/sources.list").write_text(sources)
    # apt 2.3+ retries a failed download after 1, 2 and 4 s: the tests' failures are final.
    (root / "etc/apt/apt.conf.d/99corral-tests").write_text('Acquire::Retries "0";\n')
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n')
    return root


def install_debs(root: Path, debs: Iterable[Path]) -> None:
    """``dpkg -i`` into ``root`` (its own database and log), never the host's."""
    subprocess.run(
        ["dpkg", f"--root={root}", f"--log={root}/var/log/dpkg.log", "-i", *map(str, debs)],
        check=True,
        capture_output=True,
    )


def patch_root(root: Path, repo: Path) -> Path:
    """A root with :data:`OLD_VERSIONS` installed and ``repo``'s two suites configured."""
    make_root(root, sources_list(repo))
    debs = [d for d in PATCH_PACKAGES if OLD_VERSIONS.get(d.name) == d.version]
    install_debs(root, [repo / "pool" / d.filename for d in debs])
    return root


def copy_root(template: Path, root: Path) -> Path:
    shutil.copytree(template, root, symlinks=True)
    return root


def sign_repo(repo: Path, suite: str, gnupg_home: Path) -> None:
    """Sign dists/<suite>/Release (InRelease, Release.gpg) with a new key nobody trusts."""
    gnupg_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg_home)}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    release = repo / "dists" / suite / "Release"
    try:
        subprocess.run(
            [*gpg, "--quick-gen-key", "Corral tests <tests@corral.invalid>", "ed25519", "sign"],
            check=True,
            capture_output=True,
            env=env,
        )
        for how, name in (("--clearsign", "InRelease"), ("-abs", "Release.gpg")):
            out = str(release.with_name(name))
            subprocess.run(
                [*gpg, how, "-o", out, str(release)], check=True, capture_output=True, env=env
            )
    finally:  # the agent gpg started for the key must not outlive the test
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True, env=env)
