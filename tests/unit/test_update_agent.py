"""Corral-UpdateAgent's pieces (agent/updates/, agent/plugins/update_agent.py): the signed
manifest and the pinned key, downloads checked against it, version order, the decision
table, the installers' command lines, the restart strategies and the flow with its rollback.
The whole upgrade against a real server and real packages: tests/integration/
test_update_agent.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from agent.documents import builtin_documents
from agent.plugins import ACTIONS
from agent.plugins.base import StepContext
from agent.plugins.output import CappedOutput
from agent.plugins.update_agent import UpdateAgent
from agent.service_managers import ServiceError
from agent.service_managers.systemd import Manager
from agent.tools import Completed
from agent.updates import installer
from agent.updates.base import Entry, InstalledPackage, UpdateError, read_installed
from agent.updates.download import download
from agent.updates.flow import PIP_INSTALLED, Done, Plan, Request, Upgrade, decide
from agent.updates.manifest import (
    KEY_FILE,
    Manifest,
    key_id,
    pin,
    pinned_key,
    raw_public_key,
    verify,
)
from agent.updates.restart import SignalRestart, SystemdRestart, choose
from agent.updates.versions import compare
from agent.updates.watch import Watcher

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def pem_of(key: SigningKey) -> str:
    der = SPKI_PREFIX + bytes(key.verify_key)
    b64 = base64.b64encode(der).decode()
    return f"-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"


def entry(version: str, fmt: str = "deb", arch: str = "amd64", data: bytes = b"") -> dict[str, Any]:
    import hashlib

    ext = {"deb": "deb", "rpm": "rpm", "apk": "apk", "arch": "pkg.tar.zst"}[fmt]
    data = data or f"package {version}".encode()
    return {
        "name": "corral-agent",
        "version": version,
        "format": fmt,
        "arch": arch,
        "file": f"corral-agent_{version}_{arch}.{ext}",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def signed(key: SigningKey, packages: list[dict[str, Any]]) -> tuple[bytes, str]:
    raw = bytes(key.verify_key)
    body = json.dumps({"schema": 1, "key_id": key_id(raw), "packages": packages}).encode()
    return body, base64.b64encode(key.sign(body).signature).decode()


KEY = SigningKey.generate()
RAW = bytes(KEY.verify_key)
INSTALLED = InstalledPackage("corral-agent", "0.1.0", "deb", "amd64")


def manifest_of(*versions: str) -> Manifest:
    body, sig = signed(KEY, [entry(v) for v in versions])
    return verify(body, sig, RAW)


# --- the manifest and the pinned key ------------------------------------------------------


def test_a_manifest_signed_with_the_pinned_key_is_accepted() -> None:
    body, sig = signed(KEY, [entry("0.1.0"), entry("0.2.0"), entry("0.2.0", "rpm", "x86_64")])
    manifest = verify(body, sig, RAW)
    assert manifest.key_id == key_id(RAW)
    found = manifest.find("corral-agent", "0.2.0", "deb", "amd64")
    assert found is not None and found.file == "corral-agent_0.2.0_amd64.deb"
    assert manifest.versions("corral-agent", "deb", "amd64") == ["0.1.0", "0.2.0"]


def test_a_manifest_changed_after_signing_is_refused() -> None:
    body, sig = signed(KEY, [entry("0.2.0")])
    tampered = body.replace(b'"size": ', b'"size": 1')
    with pytest.raises(UpdateError, match="signature does not match the pinned signing key"):
        verify(tampered, sig, RAW)


def test_a_signature_that_is_not_base64_is_refused() -> None:
    body, _ = signed(KEY, [entry("0.2.0")])
    with pytest.raises(UpdateError, match="not valid base64"):
        verify(body, "%%%", RAW)


def test_a_manifest_signed_by_another_key_than_the_pinned_one_is_refused() -> None:
    other = SigningKey.generate()
    body, sig = signed(other, [entry("0.2.0")])  # a valid signature, by the wrong key
    with pytest.raises(UpdateError) as caught:
        verify(body, sig, RAW)
    message = caught.value.message
    assert key_id(bytes(other.verify_key)) in message
    assert f"this node pinned {key_id(RAW)}" in message
    assert "refusing" in message


def test_a_manifest_with_a_bad_entry_is_refused() -> None:
    bad = entry("0.2.0") | {"file": "../../etc/passwd"}
    body, sig = signed(KEY, [bad])
    with pytest.raises(UpdateError, match="invalid file name"):
        verify(body, sig, RAW)
    body, sig = signed(KEY, [entry("0.2.0") | {"size": -1}])
    with pytest.raises(UpdateError, match="invalid size"):
        verify(body, sig, RAW)


def test_the_key_is_pinned_once_and_read_back(tmp_path: Path) -> None:
    assert pinned_key(tmp_path) is None
    assert pin(tmp_path, pem_of(KEY)) == RAW
    assert pinned_key(tmp_path) == RAW
    assert raw_public_key(pem_of(KEY)) == RAW


@pytest.mark.parametrize(
    "pem",
    [
        "not a key",
        "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----",
        # An RSA-sized SPKI is not an Ed25519 key.
        "-----BEGIN PUBLIC KEY-----\n"
        + base64.b64encode(b"\x30" * 60).decode()
        + "\n-----END PUBLIC KEY-----",
    ],
)
def test_a_pinned_key_that_is_not_an_ed25519_pem_is_refused(pem: str, tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text(pem)
    with pytest.raises(UpdateError, match="package signing key"):
        pinned_key(tmp_path)


# --- downloads ----------------------------------------------------------------------------


def source_of(data: bytes, chunk: int = 7) -> Any:
    @asynccontextmanager
    async def source(_name: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), chunk):
                yield data[i : i + chunk]

        yield chunks()

    return source


def entry_obj(raw: dict[str, Any]) -> Entry:
    return Entry(**raw)


def test_a_download_matching_the_manifest_is_kept(tmp_path: Path) -> None:
    data = b"the real package bytes"
    wanted = entry_obj(entry("0.2.0", data=data))
    path = asyncio.run(download(source_of(data), wanted, tmp_path))
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [wanted.file]


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (b"the real package byteX", "does not match the signed manifest"),  # same size
        (b"the real package", "bytes received, the manifest says"),  # short
        (b"the real package bytes and more", "more than the manifest"),  # long
    ],
)
def test_a_download_that_does_not_match_leaves_nothing(
    tmp_path: Path, sent: bytes, why: str
) -> None:
    wanted = entry_obj(entry("0.2.0", data=b"the real package bytes"))
    with pytest.raises(UpdateError, match=why):
        asyncio.run(download(source_of(sent), wanted, tmp_path))
    assert list(tmp_path.iterdir()) == []


# --- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("0.1.0", "0.2.0", -1),
        ("0.10.0", "0.9.0", 1),
        ("1.0.0", "1.0.0", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0+local1", -1),
        ("2.0.0", "10.0.0", -1),
        ("0.2", "0.2.0", -1),
        ("1.0a", "1.0b", -1),
    ],
)
def test_versions_order(a: str, b: str, order: int) -> None:
    assert compare(a, b) == order
    assert compare(b, a) == -order


# --- the decision table -------------------------------------------------------------------


def test_a_version_the_server_lacks_fails_naming_what_it_has() -> None:
    done = decide(INSTALLED, manifest_of("0.1.0", "0.2.0"), Request("0.3.0"))
    assert done == Done(
        False,
        "version 0.3.0 is not on the server (it has: 0.1.0, 0.2.0) for corral-agent deb amd64",
    )


def test_other_formats_do_not_count_as_the_version() -> None:
    body, sig = signed(KEY, [entry("0.1.0"), entry("0.2.0", "rpm", "x86_64")])
    done = decide(INSTALLED, verify(body, sig, RAW), Request("0.2.0"))
    assert isinstance(done, Done) and "(it has: 0.1.0)" in done.message


def test_a_downgrade_needs_allow_downgrade() -> None:
    installed = InstalledPackage("corral-agent", "0.2.0", "deb", "amd64")
    manifest = manifest_of("0.1.0", "0.2.0")
    done = decide(installed, manifest, Request("0.1.0"))
    assert done == Done(
        False, "0.1.0 is older than the installed 0.2.0: pass allowDowngrade=true to downgrade"
    )
    plan = decide(installed, manifest, Request("0.1.0", allow_downgrade=True))
    assert isinstance(plan, Plan) and plan.downgrade and plan.previous is not None


def test_an_upgrade_without_the_installed_package_on_the_server_needs_consent() -> None:
    done = decide(INSTALLED, manifest_of("0.2.0"), Request("0.2.0"))
    assert isinstance(done, Done) and not done.success
    assert "could not be rolled back" in done.message and "allowNoRollback=true" in done.message
    plan = decide(INSTALLED, manifest_of("0.2.0"), Request("0.2.0", allow_no_rollback=True))
    assert isinstance(plan, Plan) and plan.previous is None and not plan.downgrade


def test_an_upgrade_keeps_the_installed_package_for_rollback() -> None:
    plan = decide(INSTALLED, manifest_of("0.1.0", "0.2.0"), Request("0.2.0"))
    assert isinstance(plan, Plan)
    assert plan.target.version == "0.2.0"
    assert plan.previous is not None and plan.previous.version == "0.1.0"


def test_the_package_file_says_how_the_agent_was_installed(tmp_path: Path) -> None:
    path = tmp_path / "PACKAGE"
    assert read_installed(path) is None  # pip
    path.write_text(json.dumps(INSTALLED.__dict__))
    assert read_installed(path) == INSTALLED
    path.write_text('{"name": "corral-agent"}')
    with pytest.raises(UpdateError, match="must hold name, version, format and arch"):
        read_installed(path)
    path.write_text("{")
    with pytest.raises(UpdateError, match="not valid JSON"):
        read_installed(path)


# --- installers ---------------------------------------------------------------------------


def test_installers_command_lines() -> None:
    file = Path("/var/lib/corral-agent/updates/corral-agent_0.2.0_amd64.deb")
    deb = installer("deb")
    assert deb.argv(file, downgrade=False) == ["dpkg", "--force-confold", "-i", str(file)]
    assert deb.env == {"DEBIAN_FRONTEND": "noninteractive"}
    assert installer("rpm").argv(file, downgrade=False) == ["rpm", "-U", str(file)]
    assert installer("rpm").argv(file, downgrade=True) == ["rpm", "-U", "--oldpackage", str(file)]
    assert installer("apk").argv(file, downgrade=True) == [
        "apk",
        "add",
        "--allow-untrusted",
        str(file),
    ]
    assert installer("arch").argv(file, downgrade=False) == [
        "pacman",
        "-U",
        "--noconfirm",
        str(file),
    ]


def test_an_unknown_package_format_is_refused() -> None:
    with pytest.raises(UpdateError, match="'msi' is not one Corral installs"):
        installer("msi")


# --- restart strategies -------------------------------------------------------------------


class FakeManager:
    name = "systemd"

    def __init__(self, running: bool | None) -> None:
        self._running = running
        self.restarted: list[str] = []

    def running(self, service: str) -> bool:
        if self._running is None:
            raise ServiceError("cannot start, stop or query corral-agent.service: no systemd")
        return self._running

    def restart(self, service: str) -> None:
        self.restarted.append(service)


def test_systemd_restarts_the_unit_when_it_runs_the_agent(tmp_path: Path) -> None:
    manager = FakeManager(running=True)
    chosen = choose(tmp_path, lambda: manager)  # type: ignore[arg-type,return-value]
    assert isinstance(chosen, SystemdRestart)
    assert chosen.restart() == "restarted corral-agent.service (systemctl restart)"
    assert manager.restarted == ["corral-agent"]


@pytest.mark.parametrize("running", [None, False])
def test_without_systemd_the_agent_is_signalled(tmp_path: Path, running: bool | None) -> None:
    chosen = choose(tmp_path, lambda: FakeManager(running))  # type: ignore[arg-type,return-value]
    assert isinstance(chosen, SignalRestart)


def test_systemctl_restart_command_line() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        calls.append(argv)
        out = "LoadState=loaded\nActiveState=active\nSubState=running\nResult=success\n"
        return Completed(tuple(argv), 0, out if "show" in argv else "", "")

    Manager(run=run, is_booted=lambda: True).restart("corral-agent")
    assert [
        "systemctl",
        "--no-pager",
        "--no-ask-password",
        "restart",
        "--",
        "corral-agent.service",
    ] in calls


@pytest.fixture
def fake_agent(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for the agent daemon: 'agent' on its command line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time  # corral-agent run\ntime.sleep(60)"]
    )
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    deadline = time.monotonic() + 30
    while b"agent" not in cmdline.read_bytes():  # the exec can take a moment to show
        assert time.monotonic() < deadline, "the stand-in agent did not start"
        time.sleep(0.01)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_the_signal_strategy_stops_the_daemon_named_in_the_pid_file(
    tmp_path: Path, fake_agent: subprocess.Popen[bytes]
) -> None:
    (tmp_path / "agent.pid").write_text(f"{fake_agent.pid}\n")
    said = SignalRestart(tmp_path).restart()
    assert (
        said == f"sent SIGTERM to the agent (pid {fake_agent.pid}); its supervisor starts it again"
    )
    assert fake_agent.wait(timeout=30) == -signal.SIGTERM


def test_the_signal_strategy_leaves_a_process_that_is_not_the_agent(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            (tmp_path / "agent.pid").write_text(f"{other.pid}\n")
            said = SignalRestart(tmp_path).restart()
            assert said.startswith("no running agent to stop")
            assert other.poll() is None
        finally:
            other.kill()
    (tmp_path / "agent.pid").write_text(f"{os.getpid()}\n")
    assert SignalRestart(tmp_path).restart().startswith("no running agent to stop")


# --- the flow -----------------------------------------------------------------------------


class FakeFetcher:
    def __init__(self, manifest: Manifest, folder: Path) -> None:
        self._manifest = manifest
        self.folder = folder
        self.downloaded: list[str] = []

    def manifest(self) -> Manifest:
        return self._manifest

    def download(self, entries: list[Entry]) -> list[Path]:
        paths = []
        for item in entries:
            path = self.folder / item.file
            path.write_bytes(b"x")
            self.downloaded.append(item.file)
            paths.append(path)
        return paths


class Node:
    """The node's side of the flow: the installer's tool, the restart, the status file the
    restarted agent writes (``starts``: which versions come up)."""

    def __init__(self, state_dir: Path, starts: set[str]) -> None:
        self.state_dir = state_dir
        self.starts = starts
        self.installed: list[list[str]] = []
        self.version = "0.1.0"
        self.now = 1000.0
        self.ticks = 0.0

    def run_tool(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.installed.append(argv)
        self.version = Path(argv[-1]).name.split("_")[1]
        return Completed(tuple(argv), 0, "", "")

    def restart(self) -> str:
        self.now += 1
        if self.version in self.starts:
            status = {
                "pid": 4242,
                "agent_version": self.version,
                "started_at": self.now,
                "last_contact": self.now,
            }
            (self.state_dir / "status.json").write_text(json.dumps(status))
        return "restarted"

    def sleep(self, seconds: float) -> None:
        self.ticks += seconds


def upgrade(
    tmp_path: Path,
    node: Node,
    manifest: Manifest,
    lines: list[str],
    installed: InstalledPackage | None = INSTALLED,
) -> Upgrade:
    restarter = type("R", (), {"name": "fake", "restart": staticmethod(node.restart)})
    return Upgrade(
        installed=installed,
        fetcher=FakeFetcher(manifest, tmp_path),
        installer=installer,
        restarter=lambda: restarter(),
        watcher=Watcher(tmp_path, monotonic=lambda: node.ticks, sleep=node.sleep),
        run_tool=node.run_tool,
        say=lines.append,
        stopped=lambda: False,
        start_timeout=5.0,
        clock=lambda: node.now,
    )


def test_a_pip_installed_agent_is_not_upgraded(tmp_path: Path) -> None:
    node = Node(tmp_path, {"0.2.0"})
    done = upgrade(tmp_path, node, manifest_of("0.2.0"), [], installed=None).run(Request("0.2.0"))
    assert done == Done(False, PIP_INSTALLED)
    assert node.installed == []


def test_an_agent_at_the_version_already_changes_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path, {"0.1.0"})
    done = upgrade(tmp_path, node, manifest_of("0.1.0"), []).run(Request("0.1.0"))
    assert done == Done(True, "already at 0.1.0")
    assert node.installed == []


def test_an_upgrade_installs_restarts_and_sees_the_new_agent(tmp_path: Path) -> None:
    node, lines = Node(tmp_path, {"0.2.0"}), list[str]()
    done = upgrade(tmp_path, node, manifest_of("0.1.0", "0.2.0"), lines).run(Request("0.2.0"))
    assert done == Done(True, "upgraded from 0.1.0 to 0.2.0")
    assert [argv[-1] for argv in node.installed] == [str(tmp_path / "corral-agent_0.2.0_amd64.deb")]
    assert any(line.startswith("downloaded corral-agent_0.2.0_amd64.deb") for line in lines)
    assert "agent 0.2.0 is running (pid 4242) and reached the server" in lines


def test_a_new_agent_that_does_not_start_is_rolled_back(tmp_path: Path) -> None:
    node, lines = Node(tmp_path, {"0.1.0"}), list[str]()
    done = upgrade(tmp_path, node, manifest_of("0.1.0", "0.3.0"), lines).run(Request("0.3.0"))
    assert done == Done(
        False,
        "agent 0.3.0 did not start (no agent reached the server within 5 s); rolled back to 0.1.0",
    )
    assert [Path(argv[-1]).name for argv in node.installed] == [
        "corral-agent_0.3.0_amd64.deb",
        "corral-agent_0.1.0_amd64.deb",
    ]
    assert node.version == "0.1.0"


def test_a_failed_install_is_rolled_back_too(tmp_path: Path) -> None:
    node, lines = Node(tmp_path, {"0.1.0"}), list[str]()
    flow = upgrade(tmp_path, node, manifest_of("0.1.0", "0.2.0"), lines)
    real = node.run_tool

    def failing(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        real(argv, env, timeout)
        if "0.2.0" in argv[-1]:
            return Completed(tuple(argv), 1, "", "dpkg: error processing archive\n")
        return Completed(tuple(argv), 0, "", "")

    flow.run_tool = failing
    done = flow.run(Request("0.2.0"))
    assert not done.success
    assert done.message == (
        "installing corral-agent_0.2.0_amd64.deb failed: dpkg: dpkg: error processing "
        "archive (exit 1); rolled back to 0.1.0"
    )


# --- the plugin and its document ----------------------------------------------------------


def context(tmp_path: Path, with_state: bool = True) -> StepContext:
    from agent.plugins.base import InventorySettings

    return StepContext(
        command_id="c",
        step_name="updateAgent",
        work_dir=tmp_path,
        stdout=CappedOutput(tmp_path / "stdout"),
        stderr=CappedOutput(tmp_path / "stderr"),
        deadline=time.monotonic() + 60,
        platform="Linux",
        inventory=InventorySettings(tmp_path, ()) if with_state else None,
    )


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        ({"version": "../0.2"}, "invalid version '../0.2'"),
        ({"version": ""}, "invalid version ''"),
        ({"version": "0.2.0", "allowDowngrade": "yes"}, "allowDowngrade must be true or false"),
    ],
)
def test_bad_inputs_fail_the_step(tmp_path: Path, inputs: dict[str, Any], why: str) -> None:
    result = UpdateAgent(tmp_path / "PACKAGE").execute(context(tmp_path), inputs, {})
    assert result.status == "Failed"
    assert why in result.message


def test_the_plugin_says_a_pip_installed_agent_upgrades_with_pip(tmp_path: Path) -> None:
    result = UpdateAgent(tmp_path / "PACKAGE").execute(context(tmp_path), {"version": "0.2.0"}, {})
    assert (result.status, result.message) == ("Failed", PIP_INSTALLED)


def test_the_plugin_needs_the_agent_state(tmp_path: Path) -> None:
    result = UpdateAgent(tmp_path / "PACKAGE").execute(
        context(tmp_path, with_state=False), {"version": "0.2.0"}, {}
    )
    assert result.status == "Failed" and "runs only under the agent" in result.message


def test_the_document_and_the_action_are_registered() -> None:
    doc = builtin_documents()["Corral-UpdateAgent"]
    assert doc.steps[0].action == "corral:updateAgent" == UpdateAgent.name
    assert "corral:updateAgent" in ACTIONS
    assert doc.parameters["allowDowngrade"].default == "false"


def test_latest_is_the_newest_version_for_this_node(tmp_path: Path) -> None:
    body, sig = signed(KEY, [entry("0.1.0"), entry("0.2.0"), entry("0.9.0", "rpm", "x86_64")])
    node, lines = Node(tmp_path, {"0.2.0"}), list[str]()
    done = upgrade(tmp_path, node, verify(body, sig, RAW), lines).run(Request("latest"))
    assert done == Done(True, "upgraded from 0.1.0 to 0.2.0")
    assert "the latest version on the server is 0.2.0" in lines


def test_latest_when_already_there_changes_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path, {"0.1.0"})
    done = upgrade(tmp_path, node, manifest_of("0.1.0"), []).run(Request("latest"))
    assert done == Done(True, "already at 0.1.0, the latest on the server")
    assert node.installed == []


def test_a_cancel_before_installing_changes_nothing(tmp_path: Path) -> None:
    from agent.updates.base import Stopped

    node = Node(tmp_path, {"0.2.0"})
    flow = upgrade(tmp_path, node, manifest_of("0.1.0", "0.2.0"), [])
    flow.stopped = lambda: True
    with pytest.raises(Stopped, match="nothing was installed"):
        flow.run(Request("0.2.0"))
    assert node.installed == []
