"""The command journal: one directory per command under ``<state dir>/commands/``.

::

    commands/<command_id>/
      request.json      the run_command message, fsynced before the message is acknowledged
      lock              flock'ed by the worker for its whole life (held = worker alive)
      worker.json       written by the worker that claimed the command: pid, attempt, started_at
      steps/<i>.json    each step's StepResult, written when it starts and when it ends
      output/<i>.stdout the step's full output, at most 16 MiB per stream
      work/<i>/         the step's working directory (its script, downloads)
      cancel.json       a cancel request (the agent writes it, then signals the worker)
      resume.json       a reboot exit code: the attempt and step to run after the reboot
      result.json       the final invocation_update body (by the worker; by the agent if lost)
      progress.json     the agent's reporting progress: final update queued, outputs uploaded
      worker.log        the worker's own log
      done              everything reported: kept for a week to ignore redeliveries

Nothing is run twice: a worker runs a command only after claiming it, under the lock, by
writing ``worker.json``; it refuses a command some worker claimed before, unless
``resume.json`` asks for exactly the next attempt (a reboot exit code, by design).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agent import wire
from agent.execution.lock import is_locked
from agent.wire import StepResult

COMMAND_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RETENTION_SECONDS = 7 * 24 * 3600
JOURNAL_FILES = (
    "request.json",
    "worker.json",
    "resume.json",
    "result.json",
    "progress.json",
    "cancel.json",
)
_TMP_PREFIX = ".new-"
# What each journal file must hold to be what the agent or a worker wrote (a file that is
# JSON but lacks these, damaged or written by something else, is as unreadable as garbage).
REQUIRED_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "request.json": {"body": dict},
    "worker.json": {"attempt": int},
    "resume.json": {"attempt": int, "step_index": int},
    "result.json": {"status": str},
}


def write_json(path: Path, data: Any, durable: bool = True) -> None:
    """Write, then rename: a crash leaves the old file or the new one, never half of one.
    ``durable`` fsyncs first, so a power cut cannot lose it either: for what a lost copy
    would make wrong (a claim, a result); a step record, a report's progress can be lost
    (the result holds the steps; a report is sent again, idempotent by id)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on Windows; rename is durable there
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class State(enum.Enum):
    RUNNING = "running"  # a worker holds the lock
    FINISHED = "finished"  # result.json is there
    RESUME = "resume"  # a reboot exit code: the next attempt is due
    NOT_STARTED = "not_started"  # journalled, never claimed by a worker
    LOST = "lost"  # claimed, no worker, no result: the worker died (Interrupted)


@dataclass(frozen=True)
class Claim:
    attempt: int
    start_step: int
    started_at: float  # of the first attempt
    previous: list[StepResult]


class CommandDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.command_id = path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def lock_file(self) -> Path:
        return self.path / "lock"

    @property
    def output_dir(self) -> Path:
        return self.path / "output"

    @property
    def work_dir(self) -> Path:
        return self.path / "work"

    @property
    def steps_dir(self) -> Path:
        return self.path / "steps"

    def read(self, name: str) -> dict[str, Any] | None:
        return read_json(self.path / name)

    def write(self, name: str, data: Any, durable: bool = True) -> None:
        write_json(self.path / name, data, durable)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    # Steps ---------------------------------------------------------------------------------
    def write_step(self, index: int, result: StepResult) -> None:
        self.steps_dir.mkdir(exist_ok=True)
        write_json(self.steps_dir / f"{index}.json", result, durable=False)

    def steps(self) -> list[StepResult]:
        """Every recorded step, in order of index."""
        found: list[tuple[int, StepResult]] = []
        if self.steps_dir.is_dir():
            for entry in self.steps_dir.glob("*.json"):
                if entry.stem.isdigit():
                    data = read_json(entry)
                    if data is not None:
                        found.append((int(entry.stem), cast(StepResult, data)))
        return [result for _, result in sorted(found, key=lambda item: item[0])]

    # The worker's claim (under the lock) -------------------------------------------------
    def claim(self, pid: int) -> Claim | None:
        """Claim the command for this worker, or None if it must not run (again)."""
        if self.exists("result.json"):
            return None
        worker = self.read("worker.json")
        resume = self.read("resume.json")
        now = time.time()
        if worker is None:
            claim = Claim(1, 0, now, [])
        elif resume is not None and resume.get("attempt") == worker.get("attempt", 0) + 1:
            start = int(resume.get("step_index", 0))
            claim = Claim(
                int(resume["attempt"]),
                start,
                float(worker.get("first_started_at", now)),
                self.steps()[:start],
            )
        else:
            return None
        self.write(
            "worker.json",
            {
                "pid": pid,
                "attempt": claim.attempt,
                "started_at": now,
                "first_started_at": claim.started_at,
            },
        )
        return claim

    # What the agent sees -------------------------------------------------------------------
    def state(self) -> State:
        if is_locked(self.lock_file):
            return State.RUNNING
        if self.exists("result.json"):
            return State.FINISHED
        worker = self.read("worker.json")
        if worker is None:
            return State.NOT_STARTED
        resume = self.read("resume.json")
        if resume is not None and resume.get("attempt") == worker.get("attempt", 0) + 1:
            return State.RESUME
        return State.LOST

    def unreadable(self) -> list[str]:
        """The journal files of this entry that exist but cannot be read, or lack what they
        must hold (its request must exist: the entry is renamed into place with it)."""
        bad = [
            name for name in JOURNAL_FILES if (self.path / name).exists() and not self._sound(name)
        ]
        if not (self.path / "request.json").exists():
            bad.append("request.json (missing)")
        if self.steps_dir.is_dir():
            bad += [
                f"steps/{entry.name}"
                for entry in sorted(self.steps_dir.glob("*.json"))
                if read_json(entry) is None
            ]
        return bad

    def _sound(self, name: str) -> bool:
        data = self.read(name)
        if data is None:
            return False
        return all(
            isinstance(data.get(key), kind) and not isinstance(data.get(key), bool)
            for key, kind in REQUIRED_KEYS.get(name, {}).items()
        )

    def worker_pid(self) -> int | None:
        worker = self.read("worker.json")
        pid = worker.get("pid") if worker else None
        return pid if isinstance(pid, int) and pid > 0 else None


class Journal:
    """The ``commands/`` directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def command(self, command_id: str) -> CommandDir:
        if not COMMAND_ID_RE.match(command_id):
            raise ValueError(f"invalid command id {command_id!r}")
        return CommandDir(self.root / command_id)

    def record(self, command_id: str, request: dict[str, Any]) -> CommandDir | None:
        """Journal a new command durably; None if this command id was seen before."""
        cmd = self.command(command_id)
        if cmd.path.exists():
            return None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.root / f"{_TMP_PREFIX}{command_id}-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(mode=0o700)
        try:
            write_json(tmp / "request.json", request)
            fsync_dir(tmp)
            try:
                os.rename(tmp, cmd.path)  # atomic; fails if a concurrent delivery won
            except OSError:
                if cmd.path.exists():
                    return None
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(self.root)
        return cmd

    def pending(self) -> list[CommandDir]:
        """Commands not yet fully reported, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.startswith(_TMP_PREFIX):
                if f"-{os.getpid()}-" not in entry.name:  # not one this agent is writing now
                    shutil.rmtree(entry, ignore_errors=True)  # a journal write cut short
            elif entry.is_dir() and not (entry / "done").exists():
                found.append(entry)
        found.sort(key=lambda p: p.stat().st_mtime)
        return [CommandDir(p) for p in found]

    def prune(self, now: float | None = None) -> int:
        """Forget commands reported more than a week ago."""
        now = time.time() if now is None else now
        removed = 0
        if not self.root.is_dir():
            return 0
        for entry in self.root.iterdir():
            done = entry / "done"
            with contextlib.suppress(OSError):
                if done.exists() and now - done.stat().st_mtime > RETENTION_SECONDS:
                    shutil.rmtree(entry)
                    removed += 1
        return removed


def invocation_response_code(steps: list[StepResult]) -> int | None:
    """The invocation's response code: the first failed step's, else the last step's that ran
    (so "Failed" never comes with the 0 of a later step)."""
    ran = [s for s in steps if s.get("response_code") is not None]
    for step in ran:
        if step.get("status") in (wire.ST_FAILED, wire.ST_TIMED_OUT):
            code: int | None = step.get("response_code")
            return code
    return ran[-1].get("response_code") if ran else None
