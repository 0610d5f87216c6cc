"""Is the new agent up?  The running daemon writes ``status.json`` in the state dir when it
first reaches the server (and again as it keeps reaching it): its pid, when it started, its
version, its last contact (agent/daemon.py).  An agent that started after the restart,
reports the expected version and has reached the server is up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

STATUS_FILE = "status.json"
PID_FILE = "agent.pid"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class AgentStatus:
    pid: int
    version: str
    started_at: float
    last_contact: float


def read_status(state_dir: Path) -> AgentStatus | None:
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, version = data.get("pid"), data.get("agent_version")
    started, contact = data.get("started_at"), data.get("last_contact")
    if not (
        isinstance(pid, int)
        and isinstance(version, str)
        and isinstance(started, int | float)
        and isinstance(contact, int | float)
    ):
        return None
    return AgentStatus(pid, version, float(started), float(contact))


def read_pid(state_dir: Path) -> int | None:
    """The pid the running daemon wrote at its start (agent.pid)."""
    try:
        text = (state_dir / PID_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


@dataclass
class Watcher:
    state_dir: Path
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def wait(self, version: str, since: float, timeout: float) -> tuple[AgentStatus | None, str]:
        """The status of agent ``version`` started after ``since`` (wall clock) and connected,
        within ``timeout`` seconds; else (None, what was seen last).  Not cut short by a
        cancel: once a package is installed, the upgrade ends verified or rolled back."""
        deadline = self.monotonic() + timeout
        seen: AgentStatus | None = None
        while True:
            status = read_status(self.state_dir)
            if status is not None and status.started_at >= since:
                seen = status
                if status.version == version:
                    return status, ""
            if self.monotonic() >= deadline:
                break
            self.sleep(POLL_SECONDS)
        if seen is not None:
            why = f"the agent that started reports version {seen.version}"
        else:
            why = f"no agent reached the server within {timeout:.0f} s"
        return None, why
