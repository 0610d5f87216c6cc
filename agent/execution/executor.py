"""The agent's side of Run Command: journal, start, follow, re-attach, reboot, report.

- ``accept`` journals a run_command (fsynced) and returns; only then is the message acked.  A
  command id seen before is not run again; if the agent made that command itself (a scheduled
  association run while the server was out of reach, agent/associations/) and it is final,
  its result is reported again under a new message id.  The Parameter Store values that come with it
  (``ssm_values``) are not journalled: they stay in this process's memory until its worker is
  started with them (ssm_values.py).
- Each command gets one supervising task.  It looks at the command directory and acts:
  RUNNING -> wait for the worker (its event pipe; after an agent restart, its lock);
  NOT_STARTED -> start a worker; FINISHED -> report; RESUME (a reboot exit code) -> report
  InProgress, reboot, and after the reboot start the next attempt; LOST (the worker died with
  no result) -> Failed / Interrupted, never run again.
- Reporting goes through the outbox with message ids derived from (node, command, event), so a
  report repeated after a crash is the same message and the server stores it once.  Each
  step's output that its record does not hold whole is uploaded first and announced with an
  ``output_uploaded`` message; then the final invocation_update is queued, cut to at most
  wire.MAX_MESSAGE_BYTES (bounds.py): the command is final on the server only once its whole
  output is there.
- A command whose supervision raises (a damaged journal entry, a bug) is tried again a few
  times; then its entry is moved aside and the command reported Failed with the reason.  One
  command never ends the executor, nor the agent.
- On agent shutdown the supervising tasks are cancelled; the workers are not touched.

What a command came to (its report, the failures the agent gives it, entries set aside) is
outcomes.py; this module decides when.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from agent import wire
from agent.backoff import Backoff
from agent.errors import CredentialRevoked
from agent.execution.bounds import bound_update
from agent.execution.journal import (
    COMMAND_ID_RE,
    CommandDir,
    Journal,
    State,
)
from agent.execution.launcher import Launcher, WorkerHandle
from agent.execution.outcomes import (
    agent_failure,
    describe_failure,
    finish,
    record_refusal,
    replace_unreadable,
    resume_attempt,
    set_aside,
    signal_worker,
    to_report,
    write_lost,
    write_reboot_failed,
)
from agent.execution.reboots import RebootSettings as RebootSettings
from agent.execution.reboots import rebooted, run_reboot_command
from agent.execution.ssm_values import take
from agent.execution.uploads import upload_output
from agent.outbox import Outbox
from agent.transport.base import Transport
from agent.wire import Message

log = logging.getLogger("corral.agent.execution")

REATTACH_POLL_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
SUPERVISE_TRIES = 3


def message_id(node_id: str, command_id: str, kind: str) -> str:
    """The same id for the same report, however often it is queued."""
    return hashlib.sha256(f"{node_id}/{command_id}/{kind}".encode()).hexdigest()[:32]


class Executor:
    def __init__(
        self,
        *,
        journal: Journal,
        outbox: Outbox,
        transport: Transport | None,
        launcher: Launcher,
        node_id: str,
        reboot: RebootSettings,
        backoff: Callable[[], Backoff],
    ) -> None:
        self.journal = journal
        self.outbox = outbox
        self.transport = transport
        self.launcher = launcher
        self.node_id = node_id
        self.reboot = reboot
        self._backoff = backoff
        self._queue: asyncio.Queue[CommandDir] = asyncio.Queue()
        self._active: dict[str, asyncio.Task[None]] = {}
        # Parameter Store values of commands whose worker is not started yet (memory only).
        self._ssm_values: dict[str, dict[str, str]] = {}
        self._pruned = time.monotonic()

    @property
    def running(self) -> int:
        """Commands followed now: each has a document worker running (or starting)."""
        return len(self._active)

    # Server messages ----------------------------------------------------------------------
    def journaled(self, command_id: str) -> bool:
        """Is this command in the journal (received, or made by the local scheduler)?"""
        return COMMAND_ID_RE.match(command_id) is not None and (
            self.journal.command(command_id).path.exists()
        )

    async def accept(self, message: Message, *, origin: str | None = None) -> None:
        """Journal a run_command; by return it is on disk (or was seen before).  ``origin``:
        who made it when the agent did (the local association scheduler), kept in its
        request.json."""
        body = message["body"]
        command_id = body.get("command_id")
        if not isinstance(command_id, str) or not COMMAND_ID_RE.match(command_id):
            log.warning(
                "run_command without a valid command_id; ignored",
                extra={"message_id": message["id"]},
            )
            return
        stored, ssm_values, about = take(body)
        request = {
            "message_id": message["id"],
            "received_at": time.time(),
            "node_id": self.node_id,  # the scripts' AWS_SSM_INSTANCE_ID / CORRAL_NODE_ID
            "body": stored,
            **about,
        }
        if origin is not None:
            request["origin"] = origin
        cmd = await asyncio.to_thread(self.journal.record, command_id, request)
        if cmd is None:
            if origin is None:
                await self._report_again(self.journal.command(command_id), message["id"])
            return
        if ssm_values:
            self._ssm_values[command_id] = ssm_values
        log.info(
            "command received",
            extra={"command_id": command_id, "document": body.get("document_name")},
        )
        self._queue.put_nowait(cmd)

    async def _report_again(self, cmd: CommandDir, msg_id: str) -> None:
        """The server sent a command the agent already ran by itself (a scheduled association
        while the server was out of reach): it is not run again, and its result, once final,
        is reported again under a new id (the server may have had no invocation to end when
        the first report came).  Still running: nothing now, its end is reported anyway."""
        request = await asyncio.to_thread(cmd.read, "request.json") or {}
        if not request.get("origin"):
            log.info("command already received; ignored", extra={"command_id": cmd.command_id})
            return
        if not await asyncio.to_thread(cmd.exists, "result.json"):
            log.info(
                "the server sent a command this agent is running by itself; its end is "
                "reported when it comes",
                extra={"command_id": cmd.command_id},
            )
            return
        result, _, _ = await asyncio.to_thread(to_report, cmd)
        await self._put(cmd, f"final/again/{msg_id}", wire.MSG_INVOCATION_UPDATE, result)
        log.info(
            "the server sent a command this agent ran by itself; its result reported again",
            extra={"command_id": cmd.command_id, "status": result.get("status")},
        )

    async def cancel(self, body: dict[str, Any]) -> None:
        command_id = body.get("command_id")
        if not isinstance(command_id, str) or not COMMAND_ID_RE.match(command_id):
            return
        cmd = self.journal.command(command_id)
        if not cmd.path.is_dir():
            log.info(
                "cancel for an unknown command; nothing to do", extra={"command_id": command_id}
            )
            return
        signalled = await asyncio.to_thread(self._cancel, cmd)
        log.info(
            "cancel requested",
            extra={"command_id": command_id, "state": signalled},
        )

    def _cancel(self, cmd: CommandDir) -> str:
        state = cmd.state()
        if state in (State.FINISHED, State.LOST) or cmd.exists("done"):
            return "finished"
        cmd.write("cancel.json", {"reason": "cancel", "requested_at": time.time()})
        if state is State.RUNNING:
            signal_worker(cmd, signal.SIGUSR1)
        return str(state.value)

    # The loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.to_thread(self.journal.prune)
        pending = await asyncio.to_thread(self.journal.pending)
        for cmd in pending:
            try:
                recovered = await asyncio.to_thread(replace_unreadable, cmd)
            except OSError:  # cannot be moved aside now: its supervisor tries, then gives up
                log.exception(
                    "cannot set a damaged entry aside", extra={"command_id": cmd.command_id}
                )
                continue
            if recovered is not None:
                await self.outbox.put(recovered.event())
        if pending:
            log.info("re-attaching to commands", extra={"count": len(pending)})
        async with asyncio.TaskGroup() as tg:
            for cmd in pending:
                self._start(tg, cmd)
            while True:
                self._start(tg, await self._queue.get())

    def _start(self, tg: asyncio.TaskGroup, cmd: CommandDir) -> None:
        if cmd.command_id in self._active:
            return
        task = tg.create_task(self.supervise(cmd), name=f"command-{cmd.command_id}")
        self._active[cmd.command_id] = task
        task.add_done_callback(lambda _t: self._active.pop(cmd.command_id, None))

    async def supervise(self, cmd: CommandDir) -> None:
        """Follow the command to its report.  The state dir failing (a full disk) is waited
        out; anything else (a damaged entry, a bug) is tried SUPERVISE_TRIES times, then the
        command is given up: moved aside and reported Failed."""
        failures = 0
        waits = self._backoff()
        try:
            while True:
                try:
                    await self._supervise(cmd)
                    return
                except CredentialRevoked:
                    raise
                except (OSError, sqlite3.Error) as exc:  # not the command's fault: wait
                    delay = waits.next_delay()
                    log.warning(
                        "the state dir failed while following a command; retrying",
                        extra={
                            "command_id": cmd.command_id,
                            "error": str(exc),
                            "retry_in": round(delay, 2),
                        },
                    )
                    await asyncio.sleep(delay)
                    continue
                except Exception as exc:  # one command's trouble is never the whole agent's
                    failures += 1
                    log.exception(
                        "supervising a command failed",
                        extra={"command_id": cmd.command_id, "attempt": failures},
                    )
                    if failures >= SUPERVISE_TRIES:
                        await self._give_up(cmd, exc)
                        return
                await asyncio.sleep(REATTACH_POLL_SECONDS * failures)
        finally:
            self._ssm_values.pop(cmd.command_id, None)

    async def _give_up(self, cmd: CommandDir, error: Exception) -> None:
        """Move the entry aside, report the command Failed with the reason (a worker still
        running it keeps it: the next agent looks again)."""
        reason = f"the agent could not follow this command: {describe_failure(error)}"
        try:
            recovered = await asyncio.to_thread(set_aside, cmd, reason)
            if recovered is None:
                log.error(
                    "a worker still runs the command; left to the next agent",
                    extra={"command_id": cmd.command_id},
                )
                return
            await self.outbox.put(recovered.event())
            await self.report(cmd)
        except Exception:  # the state dir or the outbox is failing: nothing more to do here
            log.exception("cannot report the command", extra={"command_id": cmd.command_id})

    async def report_message_failure(self, message: dict[str, Any], reason: str) -> None:
        """A server message the agent could not handle: a run_command is reported Failed
        (and recorded so, if its journal entry exists and nothing started it), anything
        else as a node_event."""
        body = message.get("body")
        command_id = body.get("command_id") if isinstance(body, dict) else None
        if (
            message.get("type") == wire.MSG_RUN_COMMAND
            and isinstance(command_id, str)
            and COMMAND_ID_RE.match(command_id)
        ):
            cmd = self.journal.command(command_id)
            result = agent_failure(command_id, f"the agent could not start it: {reason}")
            await asyncio.to_thread(record_refusal, cmd, result)
            await self._put(cmd, "final", wire.MSG_INVOCATION_UPDATE, result)
            return
        event = {
            "code": wire.EVENT_MESSAGE_FAILED,
            "severity": "error",
            "message": f"the agent could not handle a {str(message.get('type'))[:64]} message "
            f"({str(message.get('id'))[:64]}): {reason}"[: wire.MAX_REASON_CHARS],
            "time": time.time(),
        }
        if isinstance(command_id, str):
            event["command_id"] = command_id[:64]
        await self.outbox.put(wire.make_message(wire.MSG_NODE_EVENT, event))

    async def _supervise(self, cmd: CommandDir) -> None:
        launched: int | None = None  # the attempt this task started a worker for
        while True:
            state = await asyncio.to_thread(cmd.state)
            if state is State.FINISHED:
                await self.report(cmd)
                return
            if state is State.RUNNING:
                await self._report_started(cmd)
                await self._wait_for_worker(cmd)
                continue
            if state is State.LOST:
                await asyncio.to_thread(write_lost, cmd)
                continue
            attempt = (
                1 if state is State.NOT_STARTED else await asyncio.to_thread(resume_attempt, cmd)
            )
            if launched == attempt:  # the worker started for it exited without claiming it
                await asyncio.to_thread(write_lost, cmd)
                continue
            if state is State.RESUME and not await asyncio.to_thread(rebooted, cmd):
                await self._reboot(cmd)
                return
            launched = attempt
            # The values go to the first worker only: a later attempt (after a reboot) runs
            # without them and fails with ssm_values.LOST, as after an agent restart.
            ssm_values = self._ssm_values.pop(cmd.command_id, {})
            await self._follow(cmd, await self.launcher.launch(cmd, ssm_values))

    async def _follow(self, cmd: CommandDir, handle: WorkerHandle) -> None:
        log.info("worker started", extra={"command_id": cmd.command_id, "pid": handle.pid})
        async for event in handle.events():
            if event.get("event") == "started":
                await self._queue_started(
                    cmd, int(event.get("attempt", 1)), event.get("started_at")
                )

    async def _wait_for_worker(self, cmd: CommandDir) -> None:
        """A worker this agent did not start (an earlier agent did): wait for its lock."""
        log.info("re-attached to a running worker", extra={"command_id": cmd.command_id})
        while True:
            if await asyncio.to_thread(cmd.state) is not State.RUNNING:
                return
            await asyncio.sleep(REATTACH_POLL_SECONDS)

    # Reports -------------------------------------------------------------------------------
    async def _put(self, cmd: CommandDir, kind: str, msg_type: str, body: dict[str, Any]) -> str:
        message = wire.make_message(msg_type, body)
        message["id"] = message_id(self.node_id, cmd.command_id, kind)
        await self.outbox.put(message)
        return message["id"]

    async def _queue_started(self, cmd: CommandDir, attempt: int, started_at: Any) -> None:
        body = {
            "command_id": cmd.command_id,
            "status": wire.ST_IN_PROGRESS,
            "status_details": wire.ST_IN_PROGRESS,
            "started_at": started_at if isinstance(started_at, int | float) else time.time(),
        }
        await self._put(cmd, f"started/{attempt}", wire.MSG_INVOCATION_UPDATE, body)

    async def _report_started(self, cmd: CommandDir) -> None:
        worker = await asyncio.to_thread(cmd.read, "worker.json") or {}
        await self._queue_started(
            cmd, int(worker.get("attempt", 1)), worker.get("first_started_at")
        )

    async def report(self, cmd: CommandDir) -> None:
        """Each step's full output that the record does not hold, then the final update;
        then the command is done.  (progress.json need not survive a power cut: without it
        the same reports go again, and the server ignores ids it has stored.)"""
        result, progress, outputs = await asyncio.to_thread(to_report, cmd)
        uploads: dict[str, str] = progress.setdefault("uploads", {})
        for index, stream in outputs:
            key = f"{index}.{stream}"
            if key not in uploads:
                uploads[key] = await self._upload(cmd, index, stream)
                await asyncio.to_thread(cmd.write, "progress.json", progress, False)
        if not progress.get("final"):
            await self._put(cmd, "final", wire.MSG_INVOCATION_UPDATE, result)
            progress["final"] = True
            log.info(
                "command ended",
                extra={
                    "command_id": cmd.command_id,
                    "status": result.get("status"),
                    "status_details": result.get("status_details"),
                    "response_code": result.get("response_code"),
                },
            )
        await asyncio.to_thread(finish, cmd)
        if time.monotonic() - self._pruned > PRUNE_EVERY_SECONDS:
            self._pruned = time.monotonic()
            await asyncio.to_thread(self.journal.prune)

    async def _upload(self, cmd: CommandDir, index: int, stream: str) -> str:
        if self.transport is None:
            return "skipped"
        sent = await upload_output(self.transport, cmd, index, stream, self._backoff())
        if sent is None:
            return "refused"
        size, digest = sent
        body = {
            "command_id": cmd.command_id,
            "step_index": index,
            "stream": stream,
            "size": size,
            "sha256": digest,
        }
        await self._put(cmd, f"output/{index}/{stream}", wire.MSG_OUTPUT_UPLOADED, body)
        return "uploaded"

    # Reboots -------------------------------------------------------------------------------
    async def _reboot(self, cmd: CommandDir) -> None:
        resume = await asyncio.to_thread(cmd.read, "resume.json") or {}
        attempt = int(resume.get("attempt", 2))
        worker = await asyncio.to_thread(cmd.read, "worker.json") or {}
        steps = await asyncio.to_thread(cmd.steps)
        body = {
            "command_id": cmd.command_id,
            "status": wire.ST_IN_PROGRESS,
            "status_details": wire.ST_IN_PROGRESS,
            "started_at": worker.get("first_started_at"),
            "steps": steps,
        }
        body, _ = bound_update(body)  # the output is uploaded with the final report
        msg_id = await self._put(cmd, f"reboot/{attempt}", wire.MSG_INVOCATION_UPDATE, body)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.reboot.report_budget_seconds):
                while True:
                    if not await self.outbox.contains(msg_id):
                        break
                    await asyncio.sleep(0.2)
        progress = await asyncio.to_thread(cmd.read, "progress.json") or {}
        progress["rebooted_for"] = attempt
        await asyncio.to_thread(cmd.write, "progress.json", progress)
        log.warning(
            "rebooting the node: a script asked for it",
            extra={
                "command_id": cmd.command_id,
                "step_index": resume.get("step_index"),
                "reboot_command": " ".join(self.reboot.command),
            },
        )
        error = await run_reboot_command(self.reboot, cmd)
        if error is None:
            return  # the node goes down; the next agent runs the step again
        log.error("reboot command failed", extra={"command_id": cmd.command_id, "error": error})
        await asyncio.to_thread(write_reboot_failed, cmd, error)
        await self.report(cmd)


# Files ---------------------------------------------------------------------------------------
