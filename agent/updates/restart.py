"""How the running agent is restarted, once a package is installed.  Two strategies, chosen
by :func:`choose` and nowhere else:

- systemd, when it runs this node and ``corral-agent.service`` is active:
  ``systemctl restart corral-agent.service``.  The unit's ``KillMode=process`` stops the
  agent only: the document worker doing the upgrade (and every other) lives on.
- otherwise (no service manager: a container, a chroot, an init script of one's own):
  SIGTERM to the running daemon, whose pid it wrote in ``<state_dir>/agent.pid``.  The
  daemon stops cleanly (its outbox flushed) and exits; whatever supervises it (runit,
  s6, supervisord, a ``while`` loop, Docker's restart policy) must start it again:
  Corral does not start the agent itself.  No running daemon: nothing to stop; the
  supervisor is expected to be starting the installed version already.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from agent.service_managers import ServiceError, ServiceManager, service_manager
from agent.updates.watch import read_pid

SERVICE = "corral-agent"


class Restarter(Protocol):
    name: str

    def restart(self) -> str:
        """Restart the agent (or have it restarted); what was done, for the output."""


class SystemdRestart:
    name = "systemd"

    def __init__(self, manager: ServiceManager) -> None:
        self._manager = manager

    def restart(self) -> str:
        from agent.updates.base import UpdateError

        try:
            self._manager.restart(SERVICE)
        except ServiceError as exc:
            raise UpdateError(f"cannot restart the agent: {exc.message}") from None
        return f"restarted {SERVICE}.service (systemctl restart)"


def _is_agent(pid: int) -> bool:
    """Whether ``pid`` runs and, where /proc tells, is an agent (not a reused pid)."""
    if pid <= 1 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    if sys.platform.startswith("linux"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"agent" in cmdline
    return True


class SignalRestart:
    name = "signal"

    def __init__(self, state_dir: Path, is_agent: Callable[[int], bool] = _is_agent) -> None:
        self._state_dir = state_dir
        self._is_agent = is_agent

    def restart(self) -> str:
        pid = read_pid(self._state_dir)
        if pid is None or not self._is_agent(pid):
            return "no running agent to stop; its supervisor starts the installed version"
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "the agent had already stopped; its supervisor starts the installed version"
        return f"sent SIGTERM to the agent (pid {pid}); its supervisor starts it again"


def choose(state_dir: Path, manager: Callable[[], ServiceManager] = service_manager) -> Restarter:
    """systemd when it runs this agent's unit; SIGTERM and a supervisor otherwise."""
    try:
        found = manager()
        if found.running(SERVICE):
            return SystemdRestart(found)
    except ServiceError:
        pass
    return SignalRestart(state_dir)
