"""Runs one task of a window execution through Run Command, and follows it to its end.

Starting a task records it IN_PROGRESS (with the nodes it resolved to) before anything is
sent; every command it sends has an id derived from the task execution id (the id itself, or
one per node when its parameters use ``{{TARGET_ID}}``).  So following a task is the same
code as recovering one: a command id that is not in the commands table was not sent (the
server stopped in between) and is sent now; one that is there is followed, never sent twice.

A per-node task paces itself as Run Command does inside one command: at most MaxConcurrency
commands unfinished at once, and no new one once more than MaxErrors have failed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError

from agent import wire
from control_plane.errors import CorralError
from control_plane.services.clock import Clock
from control_plane.services.commands.rate import concurrency_limit, error_threshold
from control_plane.services.commands.service import CommandService
from control_plane.services.targets import resolve
from control_plane.services.windows import pseudo
from control_plane.services.windows.model import (
    CANCEL_TASK,
    CANCELLED,
    CANCELLING,
    FAILED,
    IN_PROGRESS,
    SUCCESS,
    TIMED_OUT,
    node_command_id,
)
from control_plane.store import windows as store
from control_plane.store.db import Database

log = logging.getLogger("corral.windows")

DETAIL_LIMIT = 250


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


class TaskRunner:
    def __init__(self, db: Database, commands: CommandService, clock: Clock) -> None:
        self._db = db
        self._commands = commands
        self._clock = clock

    async def start(self, te: dict[str, Any], execution: dict[str, Any]) -> None:
        """Record the task IN_PROGRESS with its parameters' pseudo parameters replaced and
        its nodes resolved, then send its command(s)."""
        now = self._clock()
        values = {
            "WINDOW_ID": execution["window_id"],
            "WINDOW_EXECUTION_ID": execution["id"],
            "WINDOW_TASK_ID": te["task_id"],
            "TASK_EXECUTION_ID": te["id"],
        }
        parameters = pseudo.substitute(te["parameters"], values)
        per_target = pseudo.uses_target_id(parameters)
        async with self._db.transaction() as conn:
            unresolved = None
            try:
                node_ids = sorted(await resolve(conn, list(te["targets"])))
            except CorralError as exc:  # a group deleted since the task was registered
                node_ids, unresolved = [], exc.message
            changes: dict[str, Any] = {
                "status": IN_PROGRESS,
                "start_time": now,
                "parameters": parameters,
                "per_target": per_target,
                "node_ids": node_ids,
            }
            if not node_ids:
                shown = " ".join(te["targets"]) or "(none)"
                changes.update(
                    status=FAILED,
                    end_time=now,
                    status_details=_short(
                        unresolved or f"the targets {shown} match no registered node"
                    ),
                )
            await store.update_task_execution(conn, te["id"], **changes)
        te = {**te, **changes}
        if te["status"] == IN_PROGRESS:
            await self.follow(te, execution, cutoff_reached=False)

    async def follow(
        self, te: dict[str, Any], execution: dict[str, Any], *, cutoff_reached: bool
    ) -> None:
        """Send what is not sent yet (as pacing allows), end the task when its commands have;
        at the cutoff, a CANCEL_TASK task's commands are cancelled (it ends TIMED_OUT)."""
        node_ids: list[str] = list(te["node_ids"] or [])
        if te["per_target"]:
            ids = {node_command_id(te["id"], n): n for n in node_ids}
        else:
            ids = {te["id"]: ""}
        async with self._db.read() as conn:
            states = await store.command_states(conn, list(ids))
        if cutoff_reached and te["cutoff_behavior"] == CANCEL_TASK and te["status"] != CANCELLING:
            await self._cancel(te, states)
            te = {**te, "status": CANCELLING}
        unfinished = [c for c, (_s, done) in states.items() if done is None]
        errors = [c for c, (s, done) in states.items() if done is not None and s != wire.ST_SUCCESS]
        unsent = [c for c in ids if c not in states]
        stopping = te["status"] == CANCELLING or (cutoff_reached and te["per_target"])
        if te["per_target"]:
            over = len(errors) > error_threshold(te["max_errors"], len(node_ids))
            room = concurrency_limit(te["max_concurrency"], len(node_ids)) - len(unfinished)
            to_send = [] if over or stopping else unsent[: max(0, room)]
        else:
            over = False
            to_send = [] if stopping else unsent
        failure = None
        for command_id in to_send:
            failure = await self._send(te, execution, command_id, ids[command_id])
            if failure is not None:
                break
            unfinished.append(command_id)
        if failure is not None and not te["per_target"]:
            await self._end(te, FAILED, failure)
            return
        if unfinished or (unsent and not over and not stopping and failure is None):
            return
        await self._end(te, *self._outcome(te, states, over, len(unsent), failure))

    def _outcome(
        self,
        te: dict[str, Any],
        states: dict[str, tuple[str, float | None]],
        over: bool,
        unsent: int,
        failure: str | None,
    ) -> tuple[str, str]:
        statuses = [s for s, _done in states.values()]
        failed = sum(1 for s in statuses if s not in (wire.ST_SUCCESS,))
        total = len(states) + unsent
        if te["status"] == CANCELLING:
            return TIMED_OUT, "the window's cutoff was reached: its command was cancelled"
        if failure is not None:
            return FAILED, failure
        if over:
            return FAILED, _short(
                f"max errors {te['max_errors']} exceeded: {failed} of {total} failed, "
                f"{unsent} not started"
            )
        if unsent:
            return TIMED_OUT, f"the window's cutoff was reached: {unsent} of {total} not started"
        if all(s == wire.ST_SUCCESS for s in statuses):
            return SUCCESS, ""
        if any(s == wire.ST_TIMED_OUT for s in statuses) and not any(
            s == wire.ST_FAILED for s in statuses
        ):
            return TIMED_OUT, f"{failed} of {total} command(s) did not succeed"
        if all(s == wire.ST_CANCELLED for s in statuses):
            return CANCELLED, "its command was cancelled"
        return FAILED, f"{failed} of {total} command(s) did not succeed"

    async def _send(
        self, te: dict[str, Any], execution: dict[str, Any], command_id: str, node_id: str
    ) -> str | None:
        """Send one command; the reason it could not be sent, or None."""
        parameters = te["parameters"]
        targets = list(te["targets"])
        if node_id:
            parameters = pseudo.substitute(parameters, {pseudo.TARGET_ID: node_id})
            targets = [node_id]
        try:
            await self._commands.send(
                requested_by=f"window:{execution['window_id']}",
                targets=targets,
                document=te["document"],
                document_version=te["document_version"],
                parameters=parameters,
                max_concurrency=te["max_concurrency"],
                max_errors=te["max_errors"],
                timeout_seconds=te["timeout_seconds"],
                comment=f"window {execution['window_id']} task {te['task_id']}"[:100],
                command_id=command_id,
            )
        except IntegrityError:  # sent by a pass that did not live to record it: fine
            return None
        except CorralError as exc:
            log.warning(
                "window task not sent",
                extra={"task_execution_id": te["id"], "error": exc.message},
            )
            return _short(f"not sent: {exc.message}")
        log.info(
            "window task sent",
            extra={"task_execution_id": te["id"], "command_id": command_id, "node_id": node_id},
        )
        return None

    async def _cancel(
        self, te: dict[str, Any], states: dict[str, tuple[str, float | None]]
    ) -> None:
        async with self._db.transaction() as conn:
            await store.update_task_execution(
                conn,
                te["id"],
                status=CANCELLING,
                status_details="the window's cutoff was reached: cancelling its command",
            )
        for command_id, (_status, done) in states.items():
            if done is None:
                await self._commands.cancel(command_id, None)

    async def _end(self, te: dict[str, Any], status: str, details: str) -> None:
        async with self._db.transaction() as conn:
            await store.update_task_execution(
                conn,
                te["id"],
                status=status,
                status_details=_short(details),
                end_time=self._clock(),
            )
        log.info("window task ended", extra={"task_execution_id": te["id"], "status": status})
