"""Helpers for the Run Command engine tests (no tests here): documents, running the engine,
process-group checks, a recording transport, and cleanup of every process a test started."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from agent import wire
from agent.documents import document_from_content, resolve_parameters
from agent.errors import ServerRejected, TransportError
from agent.execution.engine import DocumentRun, EngineSettings, Outcome, Reboots, file_outputs
from agent.execution.journal import CommandDir, State
from agent.transport.base import SendAnswer
from agent.wire import Message


def shell(name: str, *lines: str, **extra: Any) -> dict[str, Any]:
    """An aws:runShellScript step; ``extra`` keys go into inputs (onFailure, timeoutSeconds...)."""
    return {
        "action": "aws:runShellScript",
        "name": name,
        "inputs": {"runCommand": list(lines), **extra},
    }


def document(*steps: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {
        "schemaVersion": "2.2",
        "description": "test",
        "mainSteps": list(steps),
    }
    if parameters:
        content["parameters"] = parameters
    return content


def run_engine(
    content: dict[str, Any],
    root: Path,
    params: dict[str, Any] | None = None,
    *,
    platform: str = "Linux",
    reboots: Reboots = Reboots.ALLOWED,
    seconds: float = 60.0,
    grace: float = 1.0,
    embedded: dict[str, Any] | None = None,
    on_run: Callable[[DocumentRun], None] | None = None,
    node_id: str = "",
) -> Outcome:
    doc = document_from_content(content)
    values = resolve_parameters(doc, params or {})
    out, work = root / "output", root / "work"
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    run = DocumentRun(
        doc,
        values,
        command_id="test",
        settings=EngineSettings(platform, grace, reboots),
        outputs=file_outputs(out),
        work_dir=work,
        deadline=time.monotonic() + seconds,
        embedded=embedded,
        node_id=node_id,
    )
    if on_run is not None:
        on_run(run)
    return run.run()


def sync(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test with asyncio.run (the suite has no async test plugin)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def eventually(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``wait_for`` for a coroutine: polls ``cond`` (a function, or a coroutine function)
    without blocking the event loop, until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = cond()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def live(pid: int) -> bool:
    """Running (not a zombie waiting for a parent that does not reap)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes in the process group ``pgid``."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return found


def read_pids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(x) for x in path.read_text().split()]


def kill_sessions(sids: set[int]) -> None:
    """SIGKILL every process in these sessions (workers and their scripts)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) in sids and proc.pid != os.getpid():
                os.kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue


def worker_sessions(root: Path) -> set[int]:
    """The sessions of the workers of the commands under ``root`` that may still have
    processes: a worker holding its command's lock, or one that is gone (its pid cannot be
    reused while its session has members).  A live process with a gone worker's pid is
    someone else's (the pid was reused, e.g. by another test's worker): never included."""
    sids = set()
    for worker in root.glob("**/commands/*/worker.json"):
        cmd = CommandDir(worker.parent)
        pid = cmd.worker_pid()
        if pid and (cmd.state() is State.RUNNING or not psutil.pid_exists(pid)):
            sids.add(pid)
    return sids


def kill_workers(root: Path) -> None:
    """Kill what the commands under ``root`` left running: their workers' sessions and every
    process working under ``root``."""
    kill_sessions(worker_sessions(root))
    kill_under(root)


def kill_under(root: Path) -> None:
    """SIGKILL every process working in a directory under ``root`` (the scripts a test's
    workers ran: each runs in its step's directory, in a session of its own)."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid != os.getpid() and Path(proc.cwd()).is_relative_to(root):
                os.kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, psutil.Error, OSError):
            continue


class RecordingTransport:
    """The Transport seam for executor tests: records uploads; can fail on demand."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, int, str, bytes]] = []
        self.failures: list[Exception] = []
        self.max_request_bytes: int | None = None

    async def poll(self, acks: list[str], wait: float) -> list[Message]:
        return []

    async def send(self, messages: list[Message]) -> SendAnswer:
        return SendAnswer(acked=[m["id"] for m in messages])

    async def upload_output(
        self, command_id: str, step_index: int, stream: str, path: Path
    ) -> tuple[int, str]:
        if self.failures:
            raise self.failures.pop(0)
        import hashlib

        data = path.read_bytes()
        self.uploads.append((command_id, step_index, stream, data))
        return len(data), hashlib.sha256(data).hexdigest()

    async def aclose(self) -> None:
        pass


def refused(status: int = 404) -> ServerRejected:
    return ServerRejected("no such command", status, "not_found")


def unreachable() -> TransportError:
    return TransportError("cannot reach the server")


def run_message(command_id: str, content: dict[str, Any], **body: Any) -> Message:
    full = {
        "command_id": command_id,
        "document_name": "test",
        "document_version": "1",
        "document": content,
        "parameters": {},
        "execution_timeout_seconds": 120,
        **body,
    }
    return wire.make_message(wire.MSG_RUN_COMMAND, full)
