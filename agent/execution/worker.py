"""The document worker: one process per command, in its own session, outliving the agent.

It takes the command's lock (held until it exits), claims the command (journal.py), runs the
document with the engine, writes each step's result as it goes and the final result at the
end, and exits.  It tells the agent that it started and ended through an optional pipe (one
JSON line per event); the files in the command directory are the truth, the pipe only saves
the agent from polling.

Signals: SIGUSR1 = the agent asks to cancel (the reason is in ``cancel.json``); SIGTERM /
SIGINT = the host is shutting down (the running step is stopped, the command ends Failed /
Interrupted).

Started from the fork server (forkserver.py), or as ``python -m agent.execution.worker`` where
there is none.  The command's Parameter Store values come in memory (the fork server's
request, or this process's stdin), never from the command directory: a worker started without
the values its document needs fails the command (ssm_values.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from agent import wire
from agent.errors import DocumentError
from agent.execution.engine import DocumentRun, EngineSettings, Reboots, file_outputs
from agent.execution.journal import Claim, CommandDir
from agent.execution.lock import try_lock
from agent.execution.outcomes import bound_compliance
from agent.execution.settings import WorkerSettings
from agent.execution.ssm_values import problem
from agent.plugins.base import StopReason

log = logging.getLogger("corral.agent.worker")

LOCK_TRIES = 50  # x 10 ms: the agent's own look at the lock lasts microseconds
STDIN_VALUES_MAX_BYTES = 1024 * 1024  # ssm_values as JSON: 64 KiB of text, escaped


def _emit(fd: int | None, event: dict[str, Any]) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the agent is gone: the files say it all
        os.write(fd, (json.dumps(event) + "\n").encode())


def _log_to(path: Path, command_id: str) -> None:
    from agent.logs import TextFormatter

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    log.info("worker started", extra={"command_id": command_id, "pid": os.getpid()})


def _cpu_ms() -> float | None:
    """This process's CPU time so far (a forked worker's own, not its parent's)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round((usage.ru_utime + usage.ru_stime) * 1000, 1)


def _take_lock(cmd: CommandDir) -> int | None:
    for _ in range(LOCK_TRIES):
        fd = try_lock(cmd.lock_file)
        if fd is not None:
            return fd
        time.sleep(0.01)
    return None


class _Stops:
    """Signals may come before the run exists; they are kept and handed on."""

    def __init__(self, cmd: CommandDir) -> None:
        self.cmd = cmd
        self.reason: StopReason | None = None
        self.target: DocumentRun | None = None

    def install(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_cancel)
        signal.signal(signal.SIGTERM, self._on_shutdown)
        signal.signal(signal.SIGINT, self._on_shutdown)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self.cmd.exists("cancel.json"):
            self.stop(StopReason.CANCEL)

    def _on_cancel(self, _sig: int, _frame: FrameType | None) -> None:
        self.stop(StopReason.CANCEL)

    def _on_shutdown(self, _sig: int, _frame: FrameType | None) -> None:
        self.stop(StopReason.SHUTDOWN)

    def stop(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
        if self.target is not None:
            self.target.request_stop(reason)

    def attach(self, run: DocumentRun) -> None:
        self.target = run
        if self.reason is not None:
            run.request_stop(self.reason)


def run_worker(
    command_dir: Path,
    settings: WorkerSettings,
    events: int | None = None,
    ssm_values: dict[str, str] | None = None,
) -> int:
    """Run the command in ``command_dir``; ``ssm_values`` are its Parameter Store values."""
    cmd = CommandDir(command_dir)
    _log_to(cmd.file("worker.log"), cmd.command_id)
    # Handlers first: the agent signals a worker once it holds the lock, and SIGUSR1's
    # default action would kill it.
    stops = _Stops(cmd)
    if sys.platform != "win32":
        stops.install()
    lock = _take_lock(cmd)
    if lock is None:
        log.info("another worker holds the command", extra={"command_id": cmd.command_id})
        return 0
    claim = cmd.claim(os.getpid())
    if claim is None:
        log.info("already run; not running it again", extra={"command_id": cmd.command_id})
        return 0
    if cmd.exists("cancel.json"):
        stops.stop(StopReason.CANCEL)
    _emit(events, {"event": "started", "attempt": claim.attempt, "started_at": claim.started_at})
    body = _execute(cmd, claim, settings, stops, ssm_values or {})
    if body is None:
        _emit(events, {"event": "reboot"})
    else:
        cmd.write("result.json", body)
        _emit(events, {"event": "ended", "status": body["status"]})
        log.info(
            "worker ended",
            extra={
                "command_id": cmd.command_id,
                "status": body["status"],
                "cpu_ms": _cpu_ms(),
            },
        )
    return 0


def _execute(
    cmd: CommandDir,
    claim: Claim,
    settings: WorkerSettings,
    stops: _Stops,
    ssm_values: dict[str, str],
) -> dict[str, Any] | None:
    """The final invocation_update body, or None when a reboot was asked for."""
    from agent.documents import ssm_references

    request = cmd.read("request.json") or {}
    body = request.get("body") if isinstance(request.get("body"), dict) else {}
    assert isinstance(body, dict)
    try:
        doc, values, embedded = load_request(body)
        refused = problem(request, ssm_references(doc, values), ssm_values)
        if refused is not None:
            raise DocumentError(refused)
    except DocumentError as exc:
        reason = exc.message
    except Exception as exc:  # what the schema would have refused: never a lost command
        reason = f"the document cannot be run: {type(exc).__name__}: {exc}"[:500]
    else:
        reason = ""
    if reason:
        log.error("cannot run the document", extra={"command_id": cmd.command_id, "error": reason})
        return invalid_document_result(cmd.command_id, claim.started_at, reason, claim.previous)
    timeout = body.get("execution_timeout_seconds")
    seconds = float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 3600.0
    cmd.output_dir.mkdir(exist_ok=True)
    engine = EngineSettings(
        platform=settings.platform,
        kill_grace_seconds=settings.kill_grace_seconds,
        reboots=Reboots.ALLOWED if settings.reboots_enabled else Reboots.DISABLED,
        inventory=settings.inventory(),
        patching=settings.patching(body.get("patch"), settings.reboots_enabled),
    )
    run = DocumentRun(
        doc,
        values,
        command_id=cmd.command_id,
        settings=engine,
        outputs=file_outputs(cmd.output_dir),
        work_dir=cmd.work_dir,
        deadline=time.monotonic() + seconds,
        embedded=embedded,
        on_step=cmd.write_step,
        ssm_values=ssm_values,
        node_id=str(request.get("node_id") or ""),
    )
    stops.attach(run)
    outcome = run.run(claim.start_step, claim.previous)
    if outcome.reboot_step is not None:
        cmd.write(
            "resume.json",
            {
                "attempt": claim.attempt + 1,
                "step_index": outcome.reboot_step,
                "requested_at": time.time(),
            },
        )
        log.info(
            "reboot requested",
            extra={"command_id": cmd.command_id, "step_index": outcome.reboot_step},
        )
        return None
    return {
        "command_id": cmd.command_id,
        "status": outcome.status,
        "status_details": outcome.details,
        "response_code": outcome.response_code,
        "started_at": claim.started_at,
        "ended_at": time.time(),
        "steps": bound_compliance(outcome.steps),
    }


def load_request(body: dict[str, Any]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(document, parameter values, embedded documents) of a run_command body.  The server
    validated the document against the schema when it was created: not again here."""
    from agent.documents import document_from_content, resolve_parameters

    content = body.get("document")
    if not isinstance(content, dict):
        raise DocumentError("the command carries no document")
    content = dict(content)
    embedded = content.pop("__embedded", None)
    try:
        doc = document_from_content(content, validated=True)
    except DocumentError:
        raise
    except Exception:  # not a document the server would send: the schema says what is wrong
        doc = document_from_content(content)
    given = body.get("parameters")
    values = resolve_parameters(doc, given if isinstance(given, dict) else {})
    return doc, values, embedded if isinstance(embedded, dict) else {}


def invalid_document_result(
    command_id: str,
    started_at: float,
    message: str,
    previous: list[wire.StepResult] | None = None,
) -> dict[str, Any]:
    """A document the worker cannot run: Failed, with the reason as a step's stderr (the
    invocation record has no other place for it), after the steps an earlier attempt ran."""
    now = time.time()
    return {
        "command_id": command_id,
        "status": wire.ST_FAILED,
        "status_details": wire.ST_FAILED,
        "response_code": None,
        "started_at": started_at,
        "ended_at": now,
        "steps": [
            *(previous or []),
            {
                "name": "document",
                "action": "",
                "status": wire.ST_FAILED,
                "status_details": wire.ST_FAILED,
                "response_code": None,
                "started_at": started_at,
                "ended_at": now,
                "stdout": "",
                "stderr": message[: wire.STDERR_RECORD_CHARS],
                "stdout_bytes": 0,
                "stderr_bytes": 0,
            },
        ],
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m agent.execution.worker``: where there is no fork server."""
    parser = argparse.ArgumentParser(prog="corral-agent-worker")
    parser.add_argument("command_dir", type=Path)
    parser.add_argument("--settings", required=True, help="WorkerSettings as JSON")
    parser.add_argument("--events-fd", type=int, default=None)
    parser.add_argument(
        "--ssm-values-on-stdin",
        action="store_true",
        help="read the command's Parameter Store values (a JSON object) from stdin",
    )
    args = parser.parse_args(argv)
    settings = WorkerSettings.from_json(json.loads(args.settings))
    ssm_values = _read_stdin_values() if args.ssm_values_on_stdin else {}
    if args.command_dir.is_dir():
        os.chdir(args.command_dir)
    sys.exit(run_worker(args.command_dir, settings, args.events_fd, ssm_values))


def _read_stdin_values() -> dict[str, str]:
    """The values the launcher writes to stdin (a pipe, closed after them); stdin is then
    /dev/null.  Anything unreadable counts as no values: the command then fails, saying so."""
    chunks: list[bytes] = []
    size = 0
    with contextlib.suppress(OSError):
        while chunk := os.read(0, 65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > STDIN_VALUES_MAX_BYTES:
                chunks = []
                break
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


if __name__ == "__main__":
    main()
