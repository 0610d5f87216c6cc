"""corral:ensureService and the systemd manager.

Enabled / disabled is tested for real: ``systemctl --root=<tmp>`` works on unit files alone,
so the units live in a throw-away tree and this machine's own units are never touched.
Running / stopped needs a running systemd (PID 1), which this test machine does not have
(the tests check the one-line refusal that gives); the start/stop logic is tested against
``systemctl show`` output in systemd 252's format (key=value lines, the properties in the
order systemd prints them), replayed by a fake runner: see docs/documents.md."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.documents import builtin_documents, resolve_parameters
from agent.errors import DocumentError
from agent.plugins.base import PluginResult
from agent.plugins.ensure_service import EnsureService
from agent.service_managers import ServiceError, service_manager
from agent.service_managers.systemd import Manager, booted, pid1
from agent.tools import Completed
from tests.unit.test_ensure_package import context

pytestmark = pytest.mark.skipif(not shutil.which("systemctl"), reason="needs systemctl")

UNIT = """\
[Unit]
Description=Corral test service

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""
STATIC = "[Unit]\nDescription=no install section\n\n[Service]\nExecStart=/bin/true\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    units = tmp_path / "root/etc/systemd/system"
    units.mkdir(parents=True)
    (units / "corral-demo.service").write_text(UNIT)
    (units / "corral-static.service").write_text(STATIC)
    (units / "corral-masked.service").symlink_to("/dev/null")
    return tmp_path / "root"


def wants(root: Path) -> Path:
    return root / "etc/systemd/system/multi-user.target.wants/corral-demo.service"


def ensure(tmp_path: Path, manager: Any, **inputs: Any) -> tuple[PluginResult, str]:
    ctx = context(tmp_path)
    result = EnsureService(lambda seconds: manager).execute(ctx, inputs, {})
    if result.message:
        ctx.stderr.note(result.message)
    return result, ctx.stdout.path.read_text() + ctx.stderr.path.read_text()


def test_enable_and_disable_for_real_each_once(tmp_path: Path, root: Path) -> None:
    manager = Manager(str(root))
    result, out = ensure(tmp_path, manager, name="corral-demo", enabled="true")
    assert result.status == wire.ST_SUCCESS, out
    assert out == "enabled corral-demo\nservice corral-demo: enabled\n"
    assert wants(root).is_symlink()
    assert manager.enabled("corral-demo") is True

    link = os.readlink(wants(root))
    result, out = ensure(tmp_path, manager, name="corral-demo.service", enabled=True)
    assert out == "service corral-demo.service already enabled; nothing to do\n"
    assert os.readlink(wants(root)) == link

    result, out = ensure(tmp_path, manager, name="corral-demo", enabled="false")
    assert out == "disabled corral-demo\nservice corral-demo: disabled\n"
    assert not wants(root).exists()
    result, out = ensure(tmp_path, manager, name="corral-demo", enabled="false")
    assert out == "service corral-demo already disabled; nothing to do\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("corral-static", "corral-static.service is static: it has no [Install] section"),
        ("corral-masked", "corral-masked.service is masked: unmask it"),
        ("corral-none", "no unit file named corral-none.service"),
    ],
)
def test_units_that_cannot_be_enabled_say_why(
    tmp_path: Path, root: Path, name: str, message: str
) -> None:
    result, _ = ensure(tmp_path, Manager(str(root)), name=name, enabled="true")
    assert result.status == wire.ST_FAILED
    assert message in result.message and "\n" not in result.message


def test_running_needs_the_nodes_own_systemd(tmp_path: Path, root: Path) -> None:
    result, _ = ensure(tmp_path, Manager(str(root)), name="corral-demo", state="running")
    assert result.status == wire.ST_FAILED
    assert result.message == (
        f"cannot start, stop or query corral-demo.service inside {root}: only enabling and "
        "disabling work on another root"
    )
    if booted():
        pytest.skip("systemd runs here: the refusal below is for hosts without it")
    result, _ = ensure(tmp_path, Manager("/"), name="corral-demo", state="stopped")
    assert result.status == wire.ST_FAILED
    assert result.message == (
        "cannot start, stop or query corral-demo.service: systemd is not running on this node "
        f"(PID 1 is {pid1()})"
    )


def show(active: str, sub: str, result: str = "success", load: str = "loaded") -> str:
    """``systemctl show --property=LoadState,ActiveState,SubState,Result UNIT`` (systemd 252
    prints the Service interface's Result before the Unit's states)."""
    return f"Result={result}\nLoadState={load}\nActiveState={active}\nSubState={sub}\n"


JOB_FAILED = (
    "Job for corral-demo.service failed because the control process exited with error code.\n"
    'See "systemctl status corral-demo.service" and "journalctl -xeu corral-demo.service" '
    "for details.\n"
)


class Replay:
    """systemctl as a running systemd answers: each ``show`` returns the unit's current
    state, ``start`` / ``stop`` move it (or fail, as the unit's ExecStart may)."""

    def __init__(self, active: bool, start_fails: bool = False, load: str = "loaded") -> None:
        self.active = active
        self.start_fails = start_fails
        self.load = load
        self.failed = False
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        args = [a for a in argv[1:] if not a.startswith("--no-")]
        self.calls.append(args)
        verb = args[0]
        if verb == "show":
            if self.load == "not-found":
                text = show("inactive", "dead", load="not-found")
            elif self.active:
                text = show("active", "running")
            elif self.failed:
                text = show("failed", "failed", "exit-code")
            else:
                text = show("inactive", "dead")
            return Completed(tuple(argv), 0, text, "")
        if verb == "start":
            if self.start_fails:
                self.failed = True
                return Completed(tuple(argv), 1, "", JOB_FAILED)
            self.active = True
        elif verb == "stop":
            self.active = False
        return Completed(tuple(argv), 0, "", "")


def replayed(systemctl: Replay) -> Manager:
    return Manager("/", run=systemctl, is_booted=lambda: True)


def test_start_and_stop_each_once_against_replayed_systemctl(tmp_path: Path) -> None:
    systemctl = Replay(active=False)
    result, out = ensure(tmp_path, replayed(systemctl), name="corral-demo", state="running")
    assert (result.status, out) == (
        wire.ST_SUCCESS,
        "started corral-demo\nservice corral-demo: started\n",
    )
    assert ["start", "--", "corral-demo.service"] in systemctl.calls
    systemctl.calls.clear()
    result, out = ensure(tmp_path, replayed(systemctl), name="corral-demo", state="running")
    assert out == "service corral-demo already running; nothing to do\n"
    assert [c[0] for c in systemctl.calls] == ["show"]

    result, out = ensure(tmp_path, replayed(systemctl), name="corral-demo", state="stopped")
    assert out == "stopped corral-demo\nservice corral-demo: stopped\n"
    result, out = ensure(tmp_path, replayed(systemctl), name="corral-demo", state="stopped")
    assert out == "service corral-demo already stopped; nothing to do\n"


def test_a_service_that_fails_to_start_fails_the_step_with_systemds_reason(
    tmp_path: Path,
) -> None:
    result, _ = ensure(tmp_path, replayed(Replay(False, True)), name="corral-demo", state="running")
    assert result.status == wire.ST_FAILED
    assert result.message == (
        "systemctl start corral-demo.service left it failed/failed, result exit-code "
        "(Job for corral-demo.service failed because the control process exited with error "
        "code. (exit 1))"
    )


def test_an_unknown_unit_is_not_started(tmp_path: Path) -> None:
    systemctl = Replay(False, load="not-found")
    result, _ = ensure(tmp_path, replayed(systemctl), name="nope", state="running")
    assert (result.status, result.message) == (wire.ST_FAILED, "no unit named nope.service")
    assert [c[0] for c in systemctl.calls] == ["show"]


def test_enabled_then_state_both_reported(tmp_path: Path, root: Path) -> None:
    """enabled through the real systemctl --root, state through the replay: one manager
    each is not possible, so this checks the plugin's order and its closing line."""

    class Both:
        name = "both"

        def __init__(self) -> None:
            self.real = Manager(str(root))
            self.replay = replayed(Replay(active=True))

        def enabled(self, service: str) -> bool:
            return self.real.enabled(service)

        def set_enabled(self, service: str, enabled: bool) -> None:
            self.real.set_enabled(service, enabled)

        def running(self, service: str) -> bool:
            return self.replay.running(service)

        def start(self, service: str) -> None:
            self.replay.start(service)

        def stop(self, service: str) -> None:
            self.replay.stop(service)

    result, out = ensure(tmp_path, Both(), name="corral-demo", enabled="true", state="running")
    assert result.status == wire.ST_SUCCESS
    assert out == "enabled corral-demo\nservice corral-demo: enabled (already running)\n"


class Refusing:
    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        raise AssertionError(f"ran {argv}")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"name": "-H", "enabled": "true"}, "invalid service name '-H'"),
        ({"name": "a b", "enabled": "true"}, "invalid service name 'a b'"),
        ({"name": "$(reboot)", "state": "running"}, "invalid service name '$(reboot)'"),
        ({"name": ".hidden", "state": "running"}, "invalid service name"),
        ({"enabled": "true"}, "name is required"),
        ({"name": "nginx"}, "nothing to ensure: give enabled, state or both"),
        ({"name": "nginx", "state": "restarted"}, "state must be running, stopped or empty"),
        ({"name": "nginx", "enabled": "yes"}, "enabled must be true, false or empty"),
    ],
)
def test_bad_inputs_fail_before_anything_runs(
    tmp_path: Path, inputs: dict[str, Any], message: str
) -> None:
    manager = Manager("/", run=Refusing(), is_booted=lambda: True)
    result, _ = ensure(tmp_path, manager, **inputs)
    assert result.status == wire.ST_FAILED
    assert message in result.message and "\n" not in result.message


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"name": "nginx; reboot", "enabled": "true"}, "parameters.name"),
        ({"name": "--root=/", "enabled": "true"}, "parameters.name"),
        ({"name": "nginx", "enabled": "yes"}, "parameters.enabled"),
        ({"name": "nginx", "state": "restarted"}, "parameters.state"),
    ],
)
def test_the_document_refuses_what_could_inject(params: dict[str, Any], where: str) -> None:
    doc = builtin_documents()["Corral-EnsureService"]
    with pytest.raises(DocumentError, match=where):
        resolve_parameters(doc, params)
    assert resolve_parameters(doc, {"name": "getty@tty1.service", "enabled": "true"})


def test_the_registry_picks_systemd_on_linux_and_says_when_there_is_none() -> None:
    assert service_manager().name == "systemd"
    with pytest.raises(ServiceError, match=r"no supported service manager on this node \(darwin"):
        service_manager(platform="darwin")
