"""systemd: ``systemctl is-enabled`` (one word) and ``enable`` / ``disable``, which work on
the unit files alone (with ``root`` other than ``/``: ``systemctl --root=ROOT``, no running
systemd needed); ``systemctl show -p ...`` (key=value lines) and ``start`` / ``stop``, which
need this node's running systemd (PID 1) and say so in one line when there is none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agent.service_managers.base import ServiceError, check_service_name
from agent.tools import Completed, Runner, ToolTimeout, run_tool

UNIT_TYPES = (".service", ".socket", ".timer", ".path", ".target", ".mount")
_ENABLED = frozenset({"enabled", "enabled-runtime"})
_DISABLED = frozenset({"disabled"})
_RUNNING = frozenset({"active", "reloading", "activating"})
SHOW = ["show", "--property=LoadState,ActiveState,SubState,Result"]


def unit(name: str) -> str:
    """``nginx`` -> ``nginx.service``; a name with a unit type keeps it."""
    check_service_name(name)
    return name if name.endswith(UNIT_TYPES) else f"{name}.service"


def booted() -> bool:
    """sd_booted(3): systemd is this system's init."""
    return os.path.isdir("/run/systemd/system")


def pid1() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show``'s output: one ``Key=value`` per line."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return props


class Manager:
    name = "systemd"

    def __init__(
        self,
        root: str = "/",
        *,
        timeout: float = 600.0,
        run: Runner = run_tool,
        is_booted: Callable[[], bool] = booted,
    ) -> None:
        if not Path(root).is_absolute():
            raise ServiceError(f"invalid service root {root!r}: an absolute path")
        self.root = Path(root)
        self.timeout = timeout
        self._run = run
        self._booted = is_booted

    def enabled(self, service: str) -> bool:
        name = unit(service)
        done = self._systemctl(["is-enabled", "--", name])
        state = done.stdout.strip()
        if state in _ENABLED:
            return True
        if state in _DISABLED:
            return False
        if not state:
            raise ServiceError(f"no unit file named {name}: {done.reason()}")
        if state.startswith("masked"):
            raise ServiceError(f"{name} is masked: unmask it before enabling or disabling it")
        raise ServiceError(
            f"{name} is {state}: it has no [Install] section of its own to enable or disable"
        )

    def set_enabled(self, service: str, enabled: bool) -> None:
        name = unit(service)
        verb = "enable" if enabled else "disable"
        done = self._systemctl([verb, "--", name])
        if done.returncode != 0:
            raise ServiceError(f"systemctl {verb} {name} failed: {done.reason()}")

    def running(self, service: str) -> bool:
        return self._state(unit(service))["ActiveState"] in _RUNNING

    def start(self, service: str) -> None:
        self._change(unit(service), "start", want_running=True)

    def stop(self, service: str) -> None:
        self._change(unit(service), "stop", want_running=False)

    def restart(self, service: str) -> None:
        self._change(unit(service), "restart", want_running=True)

    def _change(self, name: str, verb: str, *, want_running: bool) -> None:
        self._state(name)  # systemd reachable, the unit known: else a clear reason
        done = self._systemctl([verb, "--", name])
        after = self._state(name)
        if done.returncode != 0 or (after["ActiveState"] in _RUNNING) != want_running:
            why = after.get("Result", "")
            state = f"{after['ActiveState']}/{after.get('SubState', '')}"
            detail = f" ({done.reason()})" if done.returncode != 0 else ""
            result = f", result {why}" if why and why != "success" else ""
            raise ServiceError(f"systemctl {verb} {name} left it {state}{result}{detail}")

    def _state(self, name: str) -> dict[str, str]:
        if self.root != Path("/"):
            raise ServiceError(
                f"cannot start, stop or query {name} inside {self.root}: only enabling and "
                "disabling work on another root"
            )
        if not self._booted():
            raise ServiceError(
                f"cannot start, stop or query {name}: systemd is not running on this node "
                f"(PID 1 is {pid1()})"
            )
        done = self._systemctl([*SHOW, "--", name])
        props = parse_show(done.stdout)
        if done.returncode != 0 or "ActiveState" not in props:
            raise ServiceError(f"systemctl show {name} failed: {done.reason()}")
        if props.get("LoadState") == "not-found":
            raise ServiceError(f"no unit named {name}")
        return props

    def _systemctl(self, args: list[str]) -> Completed:
        argv = ["systemctl", "--no-pager", "--no-ask-password"]
        if self.root != Path("/"):
            argv.append(f"--root={self.root}")
        try:
            return self._run([*argv, *args], {"SYSTEMD_PAGER": ""}, self.timeout)
        except ToolTimeout as exc:
            raise ServiceError(str(exc)) from None
        except OSError as exc:
            raise ServiceError(f"cannot run systemctl: {exc.strerror or exc}") from None
