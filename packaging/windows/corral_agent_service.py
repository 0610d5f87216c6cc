"""The Corral agent as a Windows service (pywin32), installed as in docs/install.md, "Windows":

    py -m pip install corral pywin32
    py corral_agent_service.py --startup auto install
    sc.exe failure CorralAgent reset= 86400 actions= restart/5000/restart/5000/restart/60000
    Start-Service CorralAgent

The service supervises ``python -m agent run --state-dir %ProgramData%\\Corral\\agent`` in a
process group of its own: it restarts it when it fails (5 s apart, not for the exit codes that a
restart cannot fix, as the systemd unit's RestartPreventExitStatus), and on Stop asks it to stop
(CTRL_BREAK_EVENT), then ends it after a grace period.  Everything but the service class is
plain Python, importable (and tested) on any platform; pywin32 is imported only on Windows.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

SERVICE_NAME = "CorralAgent"
DISPLAY_NAME = "Corral agent"
DESCRIPTION = "Runs commands, desired state, patching and inventory for a Corral server."
# agent/errors.py: bad usage, deregistered, not registered, unusable configuration.
NO_RESTART = frozenset({2, 3, 4, 78})
RESTART_DELAY = 5.0
STOP_GRACE = 15.0
CREATE_NEW_PROCESS_GROUP = 0x00000200


def state_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "Corral" / "agent"


def agent_command(python: str, state: Path) -> list[str]:
    """The agent's command line (python.exe of the installation that has the agent)."""
    return [python, "-m", "agent", "run", "--state-dir", str(state), "--log-format", "json"]


def should_restart(code: int) -> bool:
    return code not in NO_RESTART


class Supervisor:
    """Runs the agent until asked to stop.  ``wait_stop(seconds)`` returns True once the
    service is being stopped (on Windows: the service's stop event)."""

    def __init__(
        self,
        command: Sequence[str],
        log_file: Path,
        *,
        interrupt: Callable[[subprocess.Popen[bytes]], None] | None = None,
        grace: float = STOP_GRACE,
        restart_delay: float = RESTART_DELAY,
    ) -> None:
        self.command = list(command)
        self.log_file = log_file
        self.interrupt = interrupt or _ctrl_break
        self.grace = grace
        self.restart_delay = restart_delay
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        flags = CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                creationflags=flags,
                start_new_session=sys.platform != "win32",
            )
        return self.proc

    def stop(self) -> int | None:
        """Ask the agent to stop, end it after the grace period; its exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        try:
            self.interrupt(proc)
            return proc.wait(self.grace)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            return proc.wait()

    def run(self, wait_stop: Callable[[float], bool]) -> int:
        """Start the agent, restart it when it fails, until stopped or it exits for good.
        Returns the last exit code (0 when the service was stopped)."""
        while True:
            proc = self.start()
            while proc.poll() is None:
                if wait_stop(0.5):
                    self.stop()
                    return 0
            code = proc.returncode
            self.exit_codes.append(code)
            if code == 0 or not should_restart(code):
                return code
            if wait_stop(self.restart_delay):
                return 0


def _ctrl_break(proc: subprocess.Popen[bytes]) -> None:
    import signal

    proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))


def service_class() -> type[Any]:  # pragma: no cover - Windows only
    """The pywin32 service, built on first use so that this module imports without it."""
    servicemanager = importlib.import_module("servicemanager")
    win32event = importlib.import_module("win32event")
    win32service = importlib.import_module("win32service")
    win32serviceutil = importlib.import_module("win32serviceutil")

    class CorralAgentService(win32serviceutil.ServiceFramework):  # type: ignore[name-defined,misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop_event = win32event.CreateEvent(None, 0, 0, None)

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            win32event.SetEvent(self.stop_event)

        def SvcDoRun(self) -> None:
            state = state_dir(os.environ)
            python = str(Path(sys.executable).with_name("python.exe"))
            supervisor = Supervisor(agent_command(python, state), state / "logs" / "agent.log")

            def wait_stop(seconds: float) -> bool:
                timeout = int(seconds * 1000)
                return bool(win32event.WaitForSingleObject(self.stop_event, timeout) == 0)

            servicemanager.LogInfoMsg(f"{SERVICE_NAME}: starting {supervisor.command}")
            code = supervisor.run(wait_stop)
            if code:
                servicemanager.LogErrorMsg(f"{SERVICE_NAME}: the agent exited with {code}")

    return CorralAgentService


if sys.platform == "win32":  # pragma: no cover - pythonservice.exe looks the class up by name
    CorralAgentService = service_class()


def main() -> None:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        sys.exit("corral_agent_service: this is the Windows service; see docs/install.md")
    importlib.import_module("win32serviceutil").HandleCommandLine(globals()["CorralAgentService"])


if __name__ == "__main__":  # pragma: no cover
    main()
