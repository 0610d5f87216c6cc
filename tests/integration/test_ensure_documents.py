"""The three built-in State Manager documents end to end: a real server sends each to a real
agent twice; the first run makes the change, the second changes nothing and says so.

What the documents touch stays out of this machine: the agent runs in a mount namespace of
its own (``unshare --mount``, private propagation) where /etc/apt, /var/lib/apt,
/var/cache/apt, /var/lib/dpkg, /var/log, /usr/share/doc and /etc/systemd/system are the
test's own directories (an empty dpkg database, a flat apt repository of .deb packages built
by the test, a unit file).  apt-get, dpkg and systemctl run unmodified with their real paths;
the mounts vanish with the agent.  systemd is not PID 1 here, so Corral-EnsureService is run
for ``enabled`` only (systemctl enables and disables on the unit files without a manager)."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import BIN, Agent, Proc, Server, run, wait_for
from tests.unit.test_ensure_package import PACKAGE, build_repo, make_root
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

UNIT = """\
[Unit]
Description=Corral test service

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

# Directories of the test's tree mounted over the machine's own, inside the agent's namespace.
MOUNTED = (
    "etc/apt",
    "var/lib/apt",
    "var/cache/apt",
    "var/lib/dpkg",
    "var/log",
    "usr/share/doc",
    "etc/systemd/system",
)


@pytest.fixture(autouse=True)
def _needs_namespaces(tmp_path: Path) -> Iterator[None]:
    for tool in ("unshare", "apt-get", "dpkg-deb", "systemctl"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")
    probe = run("unshare", "--mount", "--propagation", "private", "true")
    if probe.returncode != 0:
        pytest.skip(f"needs mount namespaces (root, unshare --mount): {probe.stderr.strip()}")
    yield
    kill_under(tmp_path)


def tree(tmp_path: Path) -> Path:
    repo = build_repo(tmp_path / "repo", tmp_path / "build", ("1.0-1",))
    root = make_root(tmp_path / "node", repo)
    for sub in MOUNTED:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/system/corral-demo.service").write_text(UNIT)
    return root


def start_in_namespace(agent: Agent, root: Path) -> None:
    mounts = " && ".join(f"mount --bind {shlex.quote(str(root / sub))} /{sub}" for sub in MOUNTED)
    state_dir = str(agent.state_dir)
    agent_cmd = shlex.join(
        [str(BIN / "corral-agent"), "run", "--state-dir", state_dir, "--log-format", "json"]
    )
    agent.runs += 1
    agent.proc = Proc(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{mounts} && exec {agent_cmd}",
        ],
        agent.log_dir,
        f"agent-{agent.name}-{agent.runs}",
    )


def send(server: Server, node_id: str, document: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run ``document`` on the node and return its invocation once it has ended."""
    return server.run_document(node_id, document, parameters)


def stdout(invocation: dict[str, Any]) -> str:
    assert invocation["status"] == "Success", invocation
    text: str = invocation["steps"][0]["stdout"]
    return text


def test_each_document_changes_once_then_says_nothing_to_do(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    root = tree(tmp_path)
    agent = make_agent()
    assert agent.register().returncode == 0
    start_in_namespace(agent, root)
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")
    node = agent.node_id

    # Corral-EnsurePackage
    package = {"name": PACKAGE, "version": "1.0-1", "state": "present"}
    first = stdout(send(server, node, "Corral-EnsurePackage", package))
    assert first == f"installed package {PACKAGE} 1.0-1 (apt)\n"
    assert (root / "usr/share/doc" / PACKAGE / "version").read_text() == "1.0-1\n"
    status = (root / "var/lib/dpkg/status").read_bytes()
    assert b"Package: corral-hello\nStatus: install ok installed" in status
    second = stdout(send(server, node, "Corral-EnsurePackage", package))
    assert second == f"package {PACKAGE} 1.0-1 already present; nothing to do\n"
    assert (root / "var/lib/dpkg/status").read_bytes() == status
    assert not Path("/usr/share/doc", PACKAGE).exists()  # the machine's own tree untouched

    # Corral-EnsureService (enabled only: no systemd manager runs here)
    service = {"name": "corral-demo", "enabled": "true"}
    wants = root / "etc/systemd/system/multi-user.target.wants/corral-demo.service"
    first = stdout(send(server, node, "Corral-EnsureService", service))
    assert first == "enabled corral-demo\nservice corral-demo: enabled\n"
    assert wants.is_symlink()
    link = os.lstat(wants)
    second = stdout(send(server, node, "Corral-EnsureService", service))
    assert second == "service corral-demo already enabled; nothing to do\n"
    assert os.lstat(wants).st_mtime_ns == link.st_mtime_ns
    assert not Path("/etc/systemd/system/corral-demo.service").exists()

    # Corral-EnsureFile
    path = tmp_path / "files" / "app.conf"
    path.parent.mkdir()
    wanted = {"path": str(path), "content": "port=80\n", "mode": "0600", "owner": "nobody"}
    first = stdout(send(server, node, "Corral-EnsureFile", wanted))
    assert first.startswith(f"{path}: created (8 bytes, sha256 ")
    assert first.endswith("mode 0600, owner nobody:root)\n")
    info = path.stat()
    assert (path.read_text(), stat.S_IMODE(info.st_mode), info.st_uid) == (
        "port=80\n",
        0o600,
        65534,
    )
    second = stdout(send(server, node, "Corral-EnsureFile", wanted))
    assert second == f"{path} already as declared (mode 0600, owner nobody:root); nothing to do\n"
    again = path.stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_ctime_ns) == (
        info.st_ino,
        info.st_mtime_ns,
        info.st_ctime_ns,
    )


def test_bad_parameters_are_refused_by_the_server_before_any_node_sees_them(
    server: Server,
) -> None:
    for document, parameters, where in (
        ("Corral-EnsurePackage", {"name": "hello; reboot"}, "parameters.name"),
        ("Corral-EnsureService", {"name": "--root=/x", "enabled": "true"}, "parameters.name"),
        ("Corral-EnsureFile", {"path": "../etc/passwd"}, "parameters.path"),
    ):
        with server.api() as api:
            sent = api.post(
                "/v1/commands",
                json={"targets": ["mi-00000000000000000"], "document": document,
                      "parameters": parameters},
            )  # fmt: skip
        assert sent.status_code == 400, sent.text
        assert where in sent.text
