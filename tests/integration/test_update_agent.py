"""Corral-UpdateAgent end to end: real packages, a real server, a packaged agent upgraded,
rolled back and refused, in a throw-away root.

The packages: ``packaging/build deb --only agent --version 0.1.0`` (the real build: vendored
CPython, the agent in its site-packages, PACKAGE, maintainer scripts), and from it 0.2.0 and a
broken 0.3.0 made the way a release differs from another: the package unpacked
(``dpkg-deb -R``), its version changed in DEBIAN/control, PACKAGE and ``agent.__version__``
(0.3.0's entry point also exits at once: an agent that cannot start), packed again.

What it shows: a version the server lacks is refused (by the server; for another format by the
node), a package changed after the manifest and a manifest signed by another key than the
pinned one are refused with nothing installed, ``corral run ... --param version=0.2.0`` ends
Success with the node's heartbeat at 0.2.0 (the worker outlived the agent's restart and the
new agent reported it), and the broken 0.3.0 is rolled back to 0.2.0 with the reason.

The node: an overlay of this machine's ``/`` (writes land in ``root-upper/``, the machine is
untouched) in a mount namespace of its own, entered with ``chroot``.  In it, dpkg installs
0.1.0 and a small supervisor loop runs ``/usr/bin/corral-agent run`` again whenever it exits
(systemd's ``Restart=``; systemd is not PID 1 here, so the agent is restarted by SIGTERM).
The agent's state dir is the test's, bind-mounted at the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.harness import BIN, Agent, Proc, Server, run, wait_for
from tests.integration.packaging_support import build

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MARK = "CORRAL_UPDATE_TEST"  # in the environment of every process of the node, to end them


def _needs() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot)"
    for tool in ("unshare", "chroot", "dpkg", "dpkg-deb", "mount"):
        if not shutil.which(tool):
            return f"needs {tool}"
    probe = run("unshare", "--mount", "--propagation", "private", "true")
    if probe.returncode != 0:
        return f"needs mount namespaces: {probe.stderr.strip()}"
    return None


def arch() -> str:
    return run("dpkg", "--print-architecture").stdout.strip()


def md5sums(tree: Path) -> None:
    """DEBIAN/md5sums of the files as they now are."""
    lines = []
    for line in (tree / "DEBIAN/md5sums").read_text().splitlines():
        _, name = line.split("  ", 1)
        digest = hashlib.md5((tree / name).read_bytes()).hexdigest()  # dpkg's md5sums
        lines.append(f"{digest}  {name}")
    (tree / "DEBIAN/md5sums").write_text("\n".join(lines) + "\n")


def recompile(source: Path, cached: Path) -> None:
    """``cached`` made again from ``source``, checked the way the build made it (PEP 552)."""
    import py_compile

    flags = int.from_bytes(cached.read_bytes()[4:8], "little")
    mode = py_compile.PycInvalidationMode.TIMESTAMP
    if flags & 1:
        mode = (
            py_compile.PycInvalidationMode.CHECKED_HASH
            if flags & 2
            else py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
    py_compile.compile(str(source), str(cached), doraise=True, invalidation_mode=mode)


def repack(base: Path, version: str, work: Path, out: Path, *, broken: bool = False) -> Path:
    """``base`` (0.1.0) as ``version``: control, PACKAGE and agent.__version__ changed."""
    tree = work / f"tree-{version}"
    done = run("dpkg-deb", "-R", str(base), str(tree))
    assert done.returncode == 0, done.stderr
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}-1", control.read_text()))
    package = tree / "opt/corral-agent/PACKAGE"
    package.write_text(json.dumps(json.loads(package.read_text()) | {"version": version}))
    (init,) = tree.glob("opt/corral-agent/runtime/lib/python3.*/site-packages/agent/__init__.py")
    text = init.read_text()
    assert '__version__ = "0.1.0"' in text
    init.write_text(text.replace('__version__ = "0.1.0"', f'__version__ = "{version}"'))
    for cached in (init.parent / "__pycache__").glob("__init__.*.pyc"):
        recompile(init, cached)
    if broken:
        entry = tree / "opt/corral-agent/runtime/bin/corral-agent"
        shebang = entry.read_text().splitlines()[0]
        entry.write_text(f'{shebang}\nimport sys\nsys.exit("corral-agent {version}: broken")\n')
    md5sums(tree)
    target = out / f"corral-agent_{version}_{arch()}.deb"
    done = run("dpkg-deb", "-Zgzip", "-z1", "-b", str(tree), str(target), timeout=300)
    assert done.returncode == 0, done.stderr
    shutil.rmtree(tree)
    return target


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = _needs()
    if why:
        pytest.skip(why)
    out = tmp_path_factory.mktemp("packages")
    build(tmp_path_factory, out, "deb", "--only", "agent", "--version", "0.1.0")
    base = out / f"corral-agent_0.1.0_{arch()}.deb"
    work = tmp_path_factory.mktemp("repack")
    repack(base, "0.2.0", work, out)
    repack(base, "0.3.0", work, out, broken=True)
    return out


class Node:
    """The throw-away root and the supervised packaged agent in it."""

    def __init__(self, tmp_path: Path, agent: Agent, packages: Path) -> None:
        self.upper = tmp_path / "root-upper"
        self.merged = tmp_path / "root"
        work = tmp_path / "root-work"
        for folder in (self.upper, self.merged, work):
            folder.mkdir()
        self.agent = agent
        self.mark = str(tmp_path)
        state, merged = str(agent.state_dir), str(self.merged)
        base = f"{packages}/corral-agent_0.1.0_{arch()}.deb"
        inside = (
            f"dpkg -i {shlex.quote(base)} >/dev/null || exit 1; "
            f"while :; do /usr/bin/corral-agent run --state-dir {shlex.quote(state)} "
            "--log-format json; sleep 0.2; done"  # restart delay, as RestartSec=
        )
        q = shlex.quote
        mounts = " && ".join(
            [
                f"mount -t overlay overlay -o lowerdir=/,upperdir={q(str(self.upper))},"
                f"workdir={q(str(work))} {q(merged)}",
                f"mount --rbind /dev {q(merged + '/dev')}",
                f"mount --rbind /proc {q(merged + '/proc')}",
                f"mkdir -p {q(merged + state)} {q(merged + str(packages))}",
                f"mount --bind {q(state)} {q(merged + state)}",
                f"mount --bind {q(str(packages))} {q(merged + str(packages))}",
            ]
        )
        self.proc = Proc(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"{mounts} && exec chroot {q(merged)} /bin/sh -c {q(inside)}",
            ],
            tmp_path,
            "node",
            env={MARK: self.mark, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )

    def installed(self) -> str:
        """The version dpkg has installed in the root."""
        status = (self.upper / "var/lib/dpkg/status").read_text()
        found = re.search(
            r"Package: corral-agent\nStatus: install ok installed\n(?:.+\n)*?"
            r"Version: (\S+)",
            status,
        )
        assert found, "corral-agent is not installed in the root"
        return found.group(1)

    def package_file(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.upper / "opt/corral-agent/PACKAGE").read_text())
        return data

    def stop(self) -> None:
        """End every process of the node (the supervisor, agents, workers)."""
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.pid != os.getpid() and proc.environ().get(MARK) == self.mark:
                    os.kill(proc.pid, signal.SIGKILL)
            except (psutil.Error, OSError):
                continue
        self.proc.kill9()


@pytest.fixture
def node(tmp_path: Path, server: Server, packages: Path) -> Iterator[Node]:
    served = server.data_dir / "packages"
    served.mkdir(exist_ok=True)
    for package in packages.glob("corral-agent_*.deb"):
        os.link(package, served / package.name)
    agent = Agent(tmp_path, server, "node")
    agent.configure(
        backoff_cap_seconds=2,
        backoff_base_seconds=0.2,
        shutdown_budget_seconds=2,
        update_start_timeout_seconds=20,
    )
    assert agent.register().returncode == 0
    made = Node(tmp_path, agent, packages)
    try:
        yield made
    finally:
        made.stop()


def send(server: Server, node_id: str, version: str) -> dict[str, Any]:
    """Run Corral-UpdateAgent on the node; its invocation once it has ended."""
    return server.run_document(node_id, "Corral-UpdateAgent", {"version": [version]}, 120)


def other_key_pem() -> str:
    """An Ed25519 public key (PEM SubjectPublicKeyInfo) that is not the server's."""
    import base64

    from nacl.signing import SigningKey

    der = bytes.fromhex("302a300506032b6570032100") + bytes(SigningKey.generate().verify_key)
    body = base64.b64encode(der).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


def agent_version(server: Server, node_id: str) -> str:
    return str(server.node(node_id).get("agent_version"))


def test_upgrade_rollback_and_refusals(tmp_path: Path, server: Server, node: Node) -> None:
    node_id = node.agent.node_id
    wait_for(lambda: agent_version(server, node_id) == "0.1.0", 60, "agent 0.1.0 Online")
    assert node.installed() == "0.1.0-1"
    first_pid = json.loads((node.agent.state_dir / "status.json").read_text())["pid"]

    # A version no package on the server has: the server refuses the command.
    with server.api() as api:
        sent = api.post(
            "/v1/commands",
            json={
                "targets": [node_id],
                "document": "Corral-UpdateAgent",
                "parameters": {"version": ["0.8.0"]},
            },
        )
    assert sent.status_code == 400 and "0.8.0 is not on this server" in sent.text

    # A version the server has for another format only (a mixed fleet): the node refuses,
    # saying what there is for its own.
    (server.data_dir / "packages" / "corral-agent_0.9.0_x86_64.rpm").write_bytes(b"rpm")
    missing = send(server, node_id, "0.9.0")
    assert missing["status"] == "Failed", missing
    assert (
        "version 0.9.0 is not on the server (it has: 0.1.0, 0.2.0, 0.3.0) for corral-agent "
        f"deb {arch()}"
    ) in str(missing)

    # 0.2.0's bytes changed after the server signed its manifest (same size, same mtime: the
    # server's checksum cache keeps the old hash): refused, nothing installed.
    with server.api() as api:
        assert api.get("/v1/packages/manifest").status_code == 200  # hashed now
    served = server.data_dir / "packages" / f"corral-agent_0.2.0_{arch()}.deb"
    original = served.read_bytes()
    stat = served.stat()
    served.unlink()  # a file of its own (not the fixture's hard link)
    middle = len(original) // 2
    served.write_bytes(
        original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :]
    )
    os.utime(served, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    tampered = send(server, node_id, "0.2.0")
    assert tampered["status"] == "Failed", tampered
    assert "does not match the signed manifest" in str(tampered)
    assert node.installed() == "0.1.0-1"
    assert not (node.agent.state_dir / "updates" / served.name).exists()
    status = json.loads((node.agent.state_dir / "status.json").read_text())
    assert (status["pid"], status["agent_version"]) == (first_pid, "0.1.0")
    served.write_bytes(original)

    # The node pinned another signing key than the server's (the first run pinned the
    # server's): refused, naming both.
    pinned = node.agent.state_dir / "package-signing.pem"
    server_key = pinned.read_text()
    pinned.write_text(other_key_pem())
    refused = send(server, node_id, "0.2.0")
    assert refused["status"] == "Failed", refused
    assert "but this node pinned sha256:" in str(refused)
    assert node.installed() == "0.1.0-1"
    pinned.write_text(server_key)

    # The upgrade, through the CLI with rate and error control.
    env = {
        "CORRAL_CONFIG": str(tmp_path / "cli.toml"),
        "CORRAL_URL": server.url,
        "CORRAL_TOKEN": server.token,
        "CORRAL_CA_FILE": server.ca_file,
    }
    done = run(
        str(BIN / "corral"),
        "run",
        "--node",
        node_id,
        "--document",
        "Corral-UpdateAgent",
        "--param",
        "version=0.2.0",
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
        "--wait",
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "agent 0.2.0 is running (pid " in done.stdout
    assert "upgraded from 0.1.0 to 0.2.0" in done.stdout
    assert "sha256" in done.stdout and "installed corral-agent_0.2.0" in done.stdout
    assert "sent SIGTERM to the agent (pid " in done.stdout  # its pid file, then the loop
    wait_for(lambda: agent_version(server, node_id) == "0.2.0", 60, "heartbeat of 0.2.0")
    assert node.installed() == "0.2.0-1"
    assert node.package_file()["version"] == "0.2.0"

    # 0.3.0 exits at start: rolled back to 0.2.0, and the step says why.
    broken = send(server, node_id, "0.3.0")
    assert broken["status"] == "Failed", broken
    assert (
        "agent 0.3.0 did not start (no agent reached the server within 20 s); rolled back to 0.2.0"
    ) in str(broken)
    assert node.installed() == "0.2.0-1"
    status = json.loads((node.agent.state_dir / "status.json").read_text())
    assert status["agent_version"] == "0.2.0"
    wait_for(lambda: agent_version(server, node_id) == "0.2.0", 60, "0.2.0 again")
