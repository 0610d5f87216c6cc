"""What a command came to, read from and written to its journal directory: the report built
from its result file (outputs cut to their records), failures the agent itself gives a
command (a worker lost, a reboot that failed, a message it could not handle), and an entry
set aside when it is unreadable.  The executor (executor.py) decides when; this says what.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from agent import wire
from agent.errors import AgentError
from agent.execution.bounds import bound_update
from agent.execution.journal import CommandDir, State, invocation_response_code
from agent.execution.lock import is_locked
from agent.state_recovery import Recovered, quarantine
from agent.wire import StepResult

log = logging.getLogger("corral.agent.execution")

# What a step's record holds of each stream; beyond it, its output is uploaded as a blob.
RECORD_BYTES = {"stdout": wire.STDOUT_RECORD_CHARS, "stderr": wire.STDERR_RECORD_CHARS}


def signal_worker(cmd: CommandDir, sig: int) -> None:
    """Signal the worker that holds the command's lock, and no other process: with a pidfd
    (Linux), the process is pinned before the lock shows it is still the worker."""
    pid = cmd.worker_pid()
    if pid is None:
        return
    opener = getattr(os, "pidfd_open", None)
    sender = getattr(signal, "pidfd_send_signal", None)
    if opener is None or sender is None:
        if cmd.state() is State.RUNNING:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return
    try:
        pidfd = opener(pid)
    except ProcessLookupError:
        return
    try:
        if cmd.state() is State.RUNNING and cmd.worker_pid() == pid:
            with contextlib.suppress(ProcessLookupError):
                sender(pidfd, sig)
    finally:
        os.close(pidfd)


def read_head(path: Path, chars: int) -> str:
    with path.open("rb") as fh:
        raw = fh.read(chars * 4)
    return raw.decode("utf-8", "replace")[:chars]


def resume_attempt(cmd: CommandDir) -> int:
    resume = cmd.read("resume.json") or {}
    attempt = resume.get("attempt")
    return attempt if isinstance(attempt, int) else 0


class EntryDamaged(ValueError):
    """A journal file that reads as JSON but is not what the agent wrote."""


def to_report(
    cmd: CommandDir,
) -> tuple[dict[str, Any], dict[str, Any], list[tuple[int, str]]]:
    """(result cut to fit one message, progress, the (step, stream) outputs to upload): a
    step's output goes to the blob store when its record (cut at RECORD_BYTES, or shorter to
    fit the message) does not hold all of it."""
    stored = cmd.read("result.json")
    if stored is None or stored.get("status") not in wire.TERMINAL_STATUSES:
        raise EntryDamaged("result.json holds no final status")
    result, shortened = bound_update(stored)
    progress = cmd.read("progress.json") or {}
    outputs = []
    for index in range(len(result.get("steps") or [])):
        for stream, cap in RECORD_BYTES.items():
            with contextlib.suppress(OSError):
                size = (cmd.output_dir / f"{index}.{stream}").stat().st_size
                if size > cap or ((index, stream) in shortened and size > 0):
                    outputs.append((index, stream))
    return result, progress, outputs


def bound_compliance(steps: list[StepResult]) -> list[StepResult]:
    """Steps' compliance as the server will apply it, within one message: a later step of the
    same type replaces an earlier one (so only the last is sent), and beyond
    wire.COMPLIANCE_REPORT_MAX_BYTES in all a step's compliance is left out, its stderr
    saying so.  ``steps`` are changed in place and returned."""
    last = {s["compliance"]["compliance_type"]: i for i, s in enumerate(steps) if "compliance" in s}
    used = 0
    for index, step in enumerate(steps):
        found = step.get("compliance")
        if found is None:
            continue
        if last.get(found["compliance_type"]) != index:
            del step["compliance"]
            continue
        size = len(json.dumps(found, separators=(",", ":"), ensure_ascii=True))
        if used + size > wire.COMPLIANCE_REPORT_MAX_BYTES:
            del step["compliance"]
            note = (
                f"{found['compliance_type']} compliance not reported: the command's compliance "
                f"items exceed {wire.COMPLIANCE_REPORT_MAX_BYTES} bytes\n"
            )
            step["stderr"] = (note + step.get("stderr", ""))[: wire.STDERR_RECORD_CHARS]
            continue
        used += size
    return steps


def finish(cmd: CommandDir) -> None:
    """Everything is reported: drop the full output, keep the record for a week."""
    if cmd.output_dir.is_dir():
        for entry in cmd.output_dir.iterdir():
            with contextlib.suppress(OSError):
                entry.unlink()
    cmd.file("done").write_text(f"{time.time()}\n")


def with_output(cmd: CommandDir, index: int, step: StepResult) -> StepResult:
    for stream, limit in (
        ("stdout", wire.STDOUT_RECORD_CHARS),
        ("stderr", wire.STDERR_RECORD_CHARS),
    ):
        path = cmd.output_dir / f"{index}.{stream}"
        if path.is_file():
            step[stream] = read_head(path, limit)  # type: ignore[literal-required]
            step[f"{stream}_bytes"] = path.stat().st_size  # type: ignore[literal-required]
    return step


def describe_failure(exc: BaseException, what: str = "") -> str:
    """One line about an unexpected exception, for a report (never a traceback)."""
    text = exc.message if isinstance(exc, AgentError) else str(exc)
    line = (text.strip().splitlines() or [""])[0]
    about = f" handling {what}" if what else ""
    return f"{type(exc).__name__}{about}: {line}"[: wire.MAX_REASON_CHARS]


def agent_failure(
    command_id: str, reason: str, details: str = wire.ST_FAILED, step: str = "corral:agent"
) -> dict[str, Any]:
    """A final invocation_update for a command the agent itself could not carry through:
    Failed, the reason in the stderr of one step named ``step`` (the invocation has no other
    place for a text)."""
    now = time.time()
    note = reason[: wire.MAX_REASON_CHARS].rstrip("\n") + "\n"
    record: StepResult = {
        "name": step,
        "action": "",
        "status": wire.ST_FAILED,
        "status_details": details,
        "response_code": None,
        "started_at": None,
        "ended_at": now,
        "stdout": "",
        "stderr": note,
        "stdout_bytes": 0,
        "stderr_bytes": len(note.encode()),
    }
    return {
        "command_id": command_id,
        "status": wire.ST_FAILED,
        "status_details": details,
        "response_code": None,
        "started_at": None,
        "ended_at": now,
        "steps": [record],
    }


def record_refusal(cmd: CommandDir, result: dict[str, Any]) -> None:
    """A run_command that could not be handled: if its entry exists and no worker claimed
    it, it holds this result, so it is reported so and never run (best effort: the state dir
    may be what failed)."""
    with contextlib.suppress(OSError):
        if cmd.path.is_dir() and cmd.state() is State.NOT_STARTED:
            cmd.write("result.json", result)


def replace_unreadable(cmd: CommandDir) -> Recovered | None:
    """An entry whose journal files cannot be read (and whose worker is gone) is moved aside;
    a fresh entry takes its place holding a Failed (Interrupted) result that says why, so the
    command is reported, never run again, and a redelivery of it is still recognised."""
    if is_locked(cmd.lock_file):
        return None  # a worker is writing it: it is its own
    bad = cmd.unreadable()
    if not bad:
        return None
    return set_aside(cmd, "unreadable " + ", ".join(bad), wire.DETAIL_INTERRUPTED)


def set_aside(cmd: CommandDir, reason: str, details: str = wire.ST_FAILED) -> Recovered | None:
    """Move the entry into corrupt/ (unless a worker holds it: None) and put a fresh one in
    its place holding a Failed result that says why."""
    if is_locked(cmd.lock_file):
        return None
    recovered = quarantine(
        cmd.path.parent.parent,
        cmd.path,
        code=wire.EVENT_JOURNAL_ENTRY_CORRUPT,
        command_id=cmd.command_id,
        reason=reason[:500],
        consequence=f"the command is reported Failed ({details}) and never run again; its "
        "result and output are lost",
    )
    cmd.path.mkdir(mode=0o700)
    note = f"the agent could not read its journal of this command ({recovered.message})"
    cmd.write("result.json", agent_failure(cmd.command_id, note, details, "corral:journal"))
    return recovered


def write_lost(cmd: CommandDir) -> None:
    """The worker is gone and left no result: Failed / Interrupted (never run again)."""
    now = time.time()
    steps = cmd.steps()
    for index, step in enumerate(steps):
        if step.get("status") == wire.ST_IN_PROGRESS:
            step["status"] = wire.ST_FAILED
            step["status_details"] = wire.DETAIL_INTERRUPTED
            step["ended_at"] = now
            with_output(cmd, index, step)
    worker = cmd.read("worker.json") or {}
    cmd.write(
        "result.json",
        {
            "command_id": cmd.command_id,
            "status": wire.ST_FAILED,
            "status_details": wire.DETAIL_INTERRUPTED,
            "response_code": invocation_response_code(steps),
            "started_at": worker.get("first_started_at"),
            "ended_at": now,
            "steps": steps,
        },
    )
    log.warning("the worker is gone: command interrupted", extra={"command_id": cmd.command_id})


def write_reboot_failed(cmd: CommandDir, error: str) -> None:
    """The reboot could not be done: the step that asked for it fails with the reason."""
    resume = cmd.read("resume.json") or {}
    index = int(resume.get("step_index", -1))
    steps = cmd.steps()
    now = time.time()
    if 0 <= index < len(steps):
        step = with_output(cmd, index, steps[index])
        step["status"] = step["status_details"] = wire.ST_FAILED
        step["ended_at"] = now
        step["stderr"] = (step.get("stderr", "") + error + "\n")[: wire.STDERR_RECORD_CHARS]
    worker = cmd.read("worker.json") or {}
    cmd.write(
        "result.json",
        {
            "command_id": cmd.command_id,
            "status": wire.ST_FAILED,
            "status_details": wire.ST_FAILED,
            "response_code": invocation_response_code(steps),
            "started_at": worker.get("first_started_at"),
            "ended_at": now,
            "steps": steps,
        },
    )
