"""packaging/: the build's pieces that need no package tool, the maintainer scripts' logic, the
macOS LaunchDaemon and the Windows service wrapper (its supervisor runs real processes)."""

from __future__ import annotations

import importlib.util
import plistlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
# The contract's file-name regex (the server serves what matches it).
NAME_RE = re.compile(
    r"^(corral-agent|corral-server)_([0-9][0-9A-Za-z.+~-]*)_([a-z0-9_]+)\.(deb|rpm|apk|pkg\.tar\.zst)$"
)


@pytest.fixture(scope="module")
def buildlib() -> Iterator[None]:
    sys.path.insert(0, str(PACKAGING))
    try:
        yield
    finally:
        sys.path.remove(str(PACKAGING))


@pytest.fixture(scope="module")
def service() -> ModuleType:
    path = PACKAGING / "windows" / "corral_agent_service.py"
    spec = importlib.util.spec_from_file_location("corral_agent_service", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- file names, templates ---------------------------------------------------------------


@pytest.mark.usefixtures("buildlib")
def test_file_names_follow_the_contract() -> None:
    from buildlib.nfpm import FORMATS, file_name

    names = {
        fmt: file_name("corral-agent", "0.2.0", fmt, arch)
        for fmt in FORMATS
        for arch in ("amd64", "arm64")
    }
    assert all(NAME_RE.match(n) for n in names.values()), names
    assert file_name("corral-server", "0.1.0", "deb", "amd64") == "corral-server_0.1.0_amd64.deb"
    assert file_name("corral-agent", "0.1.0", "rpm", "arm64") == "corral-agent_0.1.0_aarch64.rpm"
    assert (
        file_name("corral-agent", "0.1.0", "arch", "amd64")
        == "corral-agent_0.1.0_x86_64.pkg.tar.zst"
    )


@pytest.mark.usefixtures("buildlib")
@pytest.mark.parametrize("fmt", ["deb", "rpm", "apk", "arch"])
def test_templates_render_the_layout(fmt: str, tmp_path: Path) -> None:
    from buildlib.nfpm import Package, render

    agent = render(
        REPO,
        Package("corral-agent", "0.3.0", fmt, "amd64", tmp_path / "s", tmp_path / "rt"),
        "2.35",
    )
    assert '"0.3.0"' in agent
    assert "dst: /etc/corral/agent.toml\n    type: config|noreplace" in agent
    unitdir = "/lib/systemd/system" if fmt == "deb" else "/usr/lib/systemd/system"
    assert f"dst: {unitdir}/corral-agent.service" in agent
    assert "dst: /usr/bin/corral-agent\n    type: symlink" in agent
    # Alpine's init is OpenRC: the .apk brings a script for it.
    assert ("dst: /etc/init.d/corral-agent" in agent) == (fmt == "apk")
    deb = tmp_path / "corral-agent_0.3.0_amd64.deb"
    server = render(
        REPO,
        Package("corral-server", "0.3.0", fmt, "amd64", tmp_path / "s", tmp_path / "rt", (deb,)),
        "2.35",
    )
    assert f'dst: "/opt/corral-server/packages/{deb.name}"' in server
    assert "dst: /usr/bin/corral\n" in server


def test_units_start_what_the_packages_install() -> None:
    agent = (REPO / "systemd" / "corral-agent.service").read_text()
    server = (REPO / "systemd" / "corral-server.service").read_text()
    assert "ExecStart=/usr/bin/corral-agent run --state-dir /var/lib/corral-agent" in agent
    assert "ExecStart=/usr/bin/corral-server " in server and "User=corral" in server


@pytest.mark.usefixtures("buildlib")
def test_agent_requirements_leave_out_the_operator_cli() -> None:
    from buildlib.project import requirements

    agent = requirements(REPO, "agent")
    server = requirements(REPO, "server")
    assert not any(r.startswith(("click", "rich", "tomli-w")) for r in agent)
    assert any(r.startswith("httpx") for r in agent) and any(r.startswith("pynacl") for r in agent)
    assert any(r.startswith("fastapi") for r in server) and any(
        r.startswith("rich") for r in server
    )


def test_build_refuses_a_bad_version_in_one_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            PACKAGING / "build",
            "deb",
            "--version",
            "1.0 beta",
            "--out",
            "/nonexistent",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "bad version" in done.stderr
    assert "Traceback" not in done.stderr
    assert not Path("/nonexistent").exists()


# --- maintainer scripts ------------------------------------------------------------------


def shell(fmt: str, call: str) -> str:
    common = (PACKAGING / "scripts" / "common.sh").read_text()
    done = subprocess.run(
        ["sh", "-c", f"set -e\nPKG_FORMAT={fmt}\n{common}\n{call}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("fmt", "args", "mode"),
    [
        ("deb", "configure", "install"),
        ("deb", "configure 0.1.0-1", "upgrade"),
        ("deb", "abort-upgrade 0.1.0-1", "none"),
        ("rpm", "1", "install"),
        ("rpm", "2", "upgrade"),
        ("apk", "0.2.0-r1", "install"),
        ("apk-upgrade", "0.2.0-r1 0.1.0-r1", "upgrade"),
        ("arch", "0.2.0-1", "install"),
        ("arch-upgrade", "0.2.0-1 0.1.0-1", "upgrade"),
    ],
)
def test_scripts_tell_install_from_upgrade(fmt: str, args: str, mode: str) -> None:
    assert shell(fmt, f"corral_install_mode {args}") == mode


@pytest.mark.parametrize(
    ("fmt", "args", "removing"),
    [
        ("deb", "remove", "yes"),
        ("deb", "purge", "yes"),
        ("deb", "upgrade 0.2.0-1", "no"),
        ("deb", "failed-upgrade 0.2.0-1", "no"),
        ("rpm", "0", "yes"),
        ("rpm", "1", "no"),
        ("apk", "0.1.0-r1", "yes"),
        ("arch", "0.1.0-1", "yes"),
    ],
)
def test_scripts_stop_the_service_only_on_removal(fmt: str, args: str, removing: str) -> None:
    assert shell(fmt, f"corral_removing {args}") == removing


@pytest.mark.usefixtures("buildlib")
@pytest.mark.parametrize("side", ["agent", "server"])
def test_rendered_scripts_are_posix_sh(side: str, tmp_path: Path) -> None:
    from buildlib.cli import write_stage

    for fmt in ("deb", "rpm", "apk", "arch"):
        stage = tmp_path / fmt
        write_stage(stage, f"corral-{side}", "0.1.0", fmt, "amd64", side)
        scripts = sorted((stage / "scripts").iterdir())
        assert [p.name for p in scripts] == [
            "postinstall",
            "postremove",
            "postupgrade",
            "preremove",
        ]
        for script in scripts:
            text = script.read_text()
            assert text.startswith("#!/bin/sh\n") and "set -e\n" in text
            kind = f"{fmt}-upgrade" if script.name == "postupgrade" else fmt
            assert f"\nPKG_FORMAT={kind}\n" in text
            subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)
        info = (stage / "PACKAGE").read_text()
        assert f'"format": "{fmt}"' in info


def test_only_a_deb_purge_touches_the_state_dir() -> None:
    script = (PACKAGING / "scripts" / "agent-postremove.sh").read_text()
    (guard, body) = script.split("then\n", 1)
    assert guard.strip().endswith('[ "$PKG_FORMAT" = deb ] && [ "${1:-}" = purge ];')
    assert "rm -rf /var/lib/corral-agent" in body.split("fi\n", 1)[0]
    for name in ("agent-postinstall.sh", "agent-preremove.sh", "server-postinstall.sh"):
        assert "rm " not in (PACKAGING / "scripts" / name).read_text()


# --- macOS -------------------------------------------------------------------------------


def test_launchd_plist() -> None:
    with (PACKAGING / "launchd" / "dev.corral.agent.plist").open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == "dev.corral.agent"
    # agent/config.py's state dir for root on macOS.
    assert plist["ProgramArguments"] == [
        "/usr/local/bin/corral-agent",
        "run",
        "--state-dir",
        "/Library/Application Support/Corral/agent",
    ]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["AbandonProcessGroup"] is True  # workers outlive an agent restart
    assert plist["StandardOutPath"].startswith("/Library/Logs/Corral/")
    assert plist["StandardErrorPath"].startswith("/Library/Logs/Corral/")


# --- Windows -----------------------------------------------------------------------------


def test_windows_command_line(service: ModuleType) -> None:
    state = service.state_dir({"PROGRAMDATA": r"D:\Data"})
    assert state == Path(r"D:\Data") / "Corral" / "agent"
    assert service.state_dir({}) == Path(r"C:\ProgramData") / "Corral" / "agent"
    assert service.agent_command(r"C:\Python\python.exe", state) == [
        r"C:\Python\python.exe",
        "-m",
        "agent",
        "run",
        "--state-dir",
        str(state),
        "--log-format",
        "json",
    ]
    assert [service.should_restart(c) for c in (1, 2, 3, 4, 78, 137)] == [
        True,
        False,
        False,
        False,
        False,
        True,
    ]


def _script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_supervisor_restarts_a_failing_agent(service: ModuleType, tmp_path: Path) -> None:
    counter = tmp_path / "starts"
    code = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = len(p.read_text()) "
        "if p.exists() else 0; p.write_text('x' * (n + 1)); print('start', n); "
        "sys.exit(1 if n < 2 else 0)"
    )
    sup = service.Supervisor(
        [*_script(code), str(counter)], tmp_path / "logs" / "agent.log", restart_delay=0.01
    )
    stop = threading.Event()
    assert sup.run(stop.wait) == 0
    assert sup.exit_codes == [1, 1, 0]
    assert (tmp_path / "logs" / "agent.log").read_text().splitlines() == [
        "start 0",
        "start 1",
        "start 2",
    ]


def test_supervisor_gives_up_on_an_unregistered_agent(service: ModuleType, tmp_path: Path) -> None:
    sup = service.Supervisor(_script("raise SystemExit(4)"), tmp_path / "a.log", restart_delay=0)
    assert sup.run(threading.Event().wait) == 4
    assert sup.exit_codes == [4]


def test_supervisor_stop_asks_then_kills(service: ModuleType, tmp_path: Path) -> None:
    asked: list[int] = []

    def interrupt(proc: subprocess.Popen[bytes]) -> None:
        asked.append(proc.pid)
        proc.send_signal(signal.SIGTERM)

    # Ignores SIGTERM: ended after the grace period.
    stubborn = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "a.log"
    sup = service.Supervisor(_script(stubborn), log, interrupt=interrupt, grace=0.3)
    proc = sup.start()
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text() and proc.poll() is None:
        assert time.monotonic() < deadline, "the child did not start"
        threading.Event().wait(0.02)
    assert sup.stop() == -signal.SIGKILL
    assert asked == [proc.pid]

    # A polite agent stops when asked; the service's stop returns 0.
    polite = service.Supervisor(_script("import time; time.sleep(60)"), log, interrupt=interrupt)
    stop = threading.Event()

    def stop_once_started(seconds: float) -> bool:
        if polite.proc is not None and polite.proc.poll() is None:
            stop.set()
        return stop.wait(seconds)

    assert polite.run(stop_once_started) == 0
    assert polite.proc is not None and polite.proc.returncode == -signal.SIGTERM
