"""packaging/install.sh end to end: served by a real server on loopback, run with ``chroot ROOT
sh -s -- ...`` in a throw-away Debian root (mmdebstrap, cached as a tarball between runs),
installing a .deb from the server's packages_dir: a stand-in built here with dpkg-deb (a
``corral-agent`` whose /usr/bin/corral-agent records how it was called) for the script's own
paths, and the real agent package ``packaging/build`` makes, which registers, comes Online
and runs a command.

Nothing is installed on the host: dpkg runs inside the root.  Needs root (chroot), dpkg-deb,
mmdebstrap and a reachable Debian mirror the first time (skipped otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import httpx
import psutil
import pytest

from agent import wire
from agent.identity import NodeKey
from tests.integration.harness import Proc, Server, wait_for
from tests.integration.packaging_support import build, build_missing

pytestmark = pytest.mark.integration

SUITE = "bookworm"
INCLUDE = "curl,openssl,ca-certificates"
BUILD_BUDGET = 240  # seconds for mmdebstrap, the first time only
VERSION = "0.1.0"
MARK = "CORRAL_INSTALL_TEST"  # in the environment of the node's processes, to end them
SUPPORTED = "supported: Debian, Ubuntu, RHEL/Fedora family, SUSE, Alpine, Arch"

STUB = """\
#!/bin/sh
# A stand-in agent: records each call, and registers by writing the state file.
mkdir -p /var/lib/corral-agent
printf '%s\\n' "$*" >>/var/lib/corral-agent/calls
if [ "$1" = register ]; then echo '{"node_id": "mi-0123456789abcdef0"}' \
    >/var/lib/corral-agent/state.json; fi
"""


def _run(*args: str, timeout: float = 120, stdin: str | None = None) -> CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corral-tests"


@pytest.fixture(scope="session")
def root_tarball() -> Path:
    """A minimal Debian root with curl and openssl, made once and kept between runs."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    for tool in ("mmdebstrap", "dpkg-deb", "chroot", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tarball = _cache_dir() / f"install-root-{SUITE}-{INCLUDE.replace(',', '-')}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(f".{os.getpid()}.part")
    try:
        made = _run(
            "mmdebstrap",
            "--variant=essential",
            "--format=tar",
            f"--include={INCLUDE}",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            SUITE,
            str(partial),
            timeout=BUILD_BUDGET,
        )
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        pytest.skip(f"mmdebstrap did not finish within {BUILD_BUDGET} s (no Debian mirror?)")
    if made.returncode != 0:
        partial.unlink(missing_ok=True)
        pytest.skip(f"mmdebstrap failed: {made.stderr.strip().splitlines()[-1:]}")
    partial.rename(tarball)
    return tarball


@pytest.fixture
def root(root_tarball: Path, tmp_path: Path) -> Path:
    """A fresh Debian root for this test."""
    path = tmp_path / "root"
    path.mkdir()
    unpacked = _run("tar", "-xf", str(root_tarball), "-C", str(path))
    assert unpacked.returncode == 0, unpacked.stderr
    return path


@pytest.fixture
def arch() -> str:
    return _run("dpkg", "--print-architecture").stdout.strip()


def build_deb(tmp_path: Path, arch: str, version: str = VERSION) -> Path:
    tree = tmp_path / f"pkg-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        textwrap.dedent(
            f"""\
            Package: corral-agent
            Version: {version}
            Architecture: {arch}
            Maintainer: Corral tests <tests@corral.invalid>
            Description: stand-in agent for the install script's test
            """
        )
    )
    stub = tree / "usr" / "bin" / "corral-agent"
    stub.write_text(STUB)
    stub.chmod(0o755)
    out = tmp_path / f"corral-agent_{version}_{arch}.deb"
    built = _run("dpkg-deb", "--root-owner-group", "--build", str(tree), str(out))
    assert built.returncode == 0, built.stderr
    return out


def publish(server: Server, deb: Path) -> Path:
    packages = server.data_dir / "packages"
    packages.mkdir(exist_ok=True)
    return Path(shutil.copy2(deb, packages / deb.name))


def served_script(server: Server) -> str:
    response = httpx.get(server.url + "/install.sh", verify=server.tls(), timeout=30)
    assert response.status_code == 200
    assert f'SERVED_FROM="{server.url}"' in response.text
    return response.text


def run_script(
    root: Path, script: str, *args: str, shell: tuple[str, ...] = ("sh",)
) -> CompletedProcess[str]:
    """``curl .../install.sh | sh -s -- ARGS``, inside the root."""
    return subprocess.run(
        ["chroot", str(root), *shell, "-s", "--", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
    )


def activation_args(server: Server, limit: int = 1) -> list[str]:
    activation = server.activation(registration_limit=limit)
    return [
        "--id",
        activation["activation_id"],
        "--code",
        activation["activation_code"],
        "--ca-hash",
        server.ca_hash,
    ]


def installed_version(root: Path) -> str:
    query = _run("chroot", str(root), "dpkg-query", "-W", "-f", "${Version}", "corral-agent")
    return query.stdout.strip() if query.returncode == 0 else ""


def signing_key(server: Server) -> str:
    with server.api() as api:
        return api.get("/v1/packages/signing-key").text


def test_installs_registers_and_a_second_run_is_harmless(
    server: Server, root: Path, tmp_path: Path, arch: str
) -> None:
    publish(server, build_deb(tmp_path, arch))
    script = served_script(server)
    args = activation_args(server)
    first = run_script(root, script, *args, "--name", "web-1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert installed_version(root) == VERSION
    state = root / "var" / "lib" / "corral-agent"
    calls = (state / "calls").read_text().splitlines()
    assert calls == [f"register --url {server.url} {' '.join(args)} --name web-1"]
    assert (state / "package-signing.pem").read_text() == signing_key(server)
    assert "corral-agent run" in first.stdout  # no service manager in a chroot: says how

    # Again, the activation still valid: the same version stays, no second registration.
    second = run_script(root, script, *args, "--name", "web-1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "corral-agent 0.1.0 is installed already" in second.stdout
    assert "registered already" in second.stdout
    assert (state / "calls").read_text().splitlines() == calls

    # And once the registration used the activation up (the stand-in agent does not talk to
    # the server: register a key with it as the real agent does).
    used = httpx.post(
        server.url + wire.ROUTE_REGISTER,
        json={
            "activation_id": args[1],
            "activation_code": args[3],
            "public_key": NodeKey.generate().public_key_b64,
            "name": "web-1",
            "hostname": "web-1",
        },
        verify=server.tls(),
        timeout=30,
    )
    assert used.status_code == 201, used.text
    third = run_script(root, script, *args, "--name", "web-1")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "installed and registered already" in third.stdout
    assert (state / "calls").read_text().splitlines() == calls
    assert installed_version(root) == VERSION


def test_a_package_that_does_not_match_the_manifest_installs_nothing(
    server: Server, root: Path, tmp_path: Path, arch: str
) -> None:
    """The file changes after the server hashed it (same size, its mtime put back: the
    server's checksum cache keeps the old sum, as after tampering or a bad disk): the signed
    manifest and the bytes served disagree."""
    served = publish(server, build_deb(tmp_path, arch))
    with server.api() as api:
        manifest = api.get("/v1/packages/manifest").json()
    assert [p["file"] for p in manifest["packages"]] == [served.name]
    stat = served.stat()
    data = bytearray(served.read_bytes())
    data[-1] ^= 0xFF
    served.write_bytes(bytes(data))
    os.utime(served, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = run_script(root, served_script(server), *activation_args(server))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"corral-install: error: {served.name} does not match the signed manifest's sha256:"
        " nothing installed"
    ]
    assert installed_version(root) == ""
    assert not (root / "var" / "lib" / "corral-agent").exists()


def test_a_different_signing_key_than_the_pinned_one_is_refused(
    server: Server, root: Path, tmp_path: Path, arch: str
) -> None:
    publish(server, build_deb(tmp_path, arch))
    state = root / "var" / "lib" / "corral-agent"
    state.mkdir(parents=True)
    other = _run("openssl", "genpkey", "-algorithm", "ed25519")
    pinned = _run("openssl", "pkey", "-pubout", stdin=other.stdout)
    (state / "package-signing.pem").write_text(pinned.stdout)
    result = run_script(root, served_script(server), *activation_args(server))
    assert result.returncode != 0
    assert "package signing key differs" in result.stderr
    assert installed_version(root) == ""


def test_a_version_the_server_does_not_have_fails_with_that_reason(
    server: Server, root: Path, tmp_path: Path, arch: str
) -> None:
    publish(server, build_deb(tmp_path, arch))
    result = run_script(root, served_script(server), *activation_args(server), "--version", "9.9.9")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"corral-install: error: the server has no corral-agent 9.9.9 for deb/{arch};"
        f" it has: {VERSION}"
    )
    assert installed_version(root) == ""


@pytest.mark.parametrize("shell", [("sh",), ("/busybox", "sh")], ids=["dash", "busybox"])
def test_an_unsupported_distribution_says_which_are_supported(
    server: Server, root: Path, shell: tuple[str, ...]
) -> None:
    os_release = root / "etc" / "os-release"
    os_release.unlink()
    os_release.write_text('NAME="Plan 9"\nID=plan9\n')
    shutil.copy2("/usr/bin/busybox", root / "busybox")
    result = run_script(root, served_script(server), *activation_args(server), shell=shell)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"corral-install: error: unsupported distribution plan9; {SUPPORTED}"
    )
    assert result.stdout == ""  # nothing was fetched or said before


@pytest.fixture(scope="module")
def real_agent_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent .deb ``packaging/build`` makes (its runtime cached for the session)."""
    missing = build_missing(("unshare", "mount"))
    if missing:
        pytest.skip(f"cannot build the agent package here: missing {', '.join(missing)}")
    out = tmp_path_factory.mktemp("real-deb")
    build(tmp_path_factory, out, "deb", "--only", "agent", "--version", VERSION)
    arch = _run("dpkg", "--print-architecture").stdout.strip()
    return out / f"corral-agent_{VERSION}_{arch}.deb"


def end_marked(mark: str) -> None:
    """SIGKILL every process whose environment carries ``CORRAL_INSTALL_TEST=mark``."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and proc.environ().get(MARK) == mark:
                os.kill(proc.pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            continue


def test_the_real_package_installs_registers_and_runs_commands(
    server: Server, root: Path, tmp_path: Path, real_agent_deb: Path
) -> None:
    """The whole path a sysadmin takes, for real: the one-liner installs the package the build
    made into a Debian root with no Python, the vendored agent registers with the activation,
    and started as its unit would start it, the node comes Online and runs a command."""
    assert not (root / "usr/bin/python3").exists()
    publish(server, real_agent_deb)
    done = run_script(root, served_script(server), *activation_args(server), "--name", "pkg-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert installed_version(root) == f"{VERSION}-1"  # the package's release, as nfpm numbers it
    state = root / "var/lib/corral-agent"
    node_id = json.loads((state / "state.json").read_text())["node_id"]
    assert server.node(node_id)["name"] == "pkg-1"

    # No systemd in a chroot: start the agent as the unit's ExecStart does, with a /proc.
    q = shlex.quote
    mark = str(tmp_path)
    unit = (root / "lib/systemd/system/corral-agent.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M)
    assert exec_start is not None
    agent = Proc(
        [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"mount -t proc proc {q(str(root / 'proc'))} && exec chroot {q(str(root))} "
            f"{exec_start.group(1)}",
        ],
        tmp_path,
        "agent",
        env={MARK: mark, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    try:

        def online() -> dict[str, Any] | None:
            node = server.node(node_id)
            return node if node["status"] == "Online" and node.get("agent_version") else None

        node = wait_for(online, 60, "the packaged agent to come Online")
        assert node["agent_version"] == VERSION and node["platform"] == "Linux"
        invocation = server.run_document(
            node_id, "AWS-RunShellScript", {"commands": ["cat /etc/debian_version; id -un"]}
        )
        assert invocation["status"] == "Success", (invocation, agent.stderr[-2000:])
        debian = (root / "etc/debian_version").read_text()
        assert invocation["steps"][0]["stdout"] == f"{debian.strip()}\nroot\n"
    finally:
        agent.stop()
        end_marked(mark)
