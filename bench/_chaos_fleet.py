"""The chaos harness's nodes (bench/chaos.py): what it knows of each agent, what it reads off
its state dir (last contact, running workers), and the clock shim it gives agents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from _common import (
    Proc,
)

SITECUSTOMIZE = '''\
"""Chaos harness: this process's wall clock plus an offset read from $CORRAL_CHAOS_CLOCK."""
import os as _os
import time as _time

_path = _os.environ.get("CORRAL_CHAOS_CLOCK")
if _path:
    _real_time, _real_ns, _mono = _time.time, _time.time_ns, _time.monotonic
    _cache = [0.0, -1.0]

    def _offset():
        now = _mono()
        if now - _cache[1] > 0.2:
            _cache[1] = now
            try:
                with open(_path) as fh:
                    _cache[0] = float(fh.read() or 0)
            except (OSError, ValueError):
                _cache[0] = 0.0
        return _cache[0]

    _time.time = lambda: _real_time() + _offset()
    _time.time_ns = lambda: _real_ns() + int(_offset() * 1e9)
'''


@dataclass
class Node:
    index: int
    state_dir: Path
    clock_file: Path
    transport: str
    node_id: str = ""
    proc: Proc | None = None
    starts: int = 0
    down: bool = False  # killed here; a restart is scheduled
    stopped: bool = False
    busy_until: float = 0.0
    full: list[tuple[float, float]] = field(default_factory=list)  # time.time() windows
    limited: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.state_dir.name


@dataclass
class Excuse:
    why: str


def write_zero(path: Path) -> None:
    path.write_text("0")


def last_contact(state_dir: Path) -> float:
    try:
        value = json.loads((state_dir / "status.json").read_text()).get("last_contact")
    except (OSError, ValueError):
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def live_workers(state_dir: Path) -> list[tuple[int, str]]:
    """(pid, command id) of each document worker running for this agent, from the journal."""
    out: list[tuple[int, str]] = []
    commands = state_dir / "commands"
    if not commands.is_dir():
        return out
    for folder in commands.iterdir():
        if (folder / "done").exists():
            continue
        try:
            pid = int(json.loads((folder / "worker.json").read_text())["pid"])
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if not any("agent.execution" in part for part in proc.cmdline()):
                continue
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue
        out.append((pid, folder.name))
    return out
