"""The maintenance windows' scheduled job: start the windows that are due, and move every
running window execution on (tasks in priority order, the cutoff, the end of the window).

A start is claimed in the transaction that records it: ``next_run_at`` moves from the value
read to the next start (a conditional UPDATE) and the execution with its task executions is
inserted, together or not at all.  A server killed at any point therefore neither loses a
start (not committed: still due at the next tick) nor doubles one (committed: no longer due,
and (window, scheduled start) is unique).  A server that was down over a start runs it once
when it ticks again, if the window is still before its cutoff (the latest missed start only;
one whose cutoff has passed is recorded TIMED_OUT with the reason, so the gap shows).

Tests call :meth:`WindowJob.tick` with the time they choose; nothing here sleeps.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError

from agent.errors import ScheduleError
from agent.schedules import last_fire, next_fire, parse
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.commands.service import CommandService
from control_plane.services.windows.model import (
    CANCELLED,
    CANCELLING,
    FAILED,
    IN_PROGRESS,
    PENDING,
    RUNNING,
    SKIPPED_OVERLAPPING,
    SUCCESS,
    TIMED_OUT,
    expand_targets,
    new_id,
)
from control_plane.services.windows.runner import TaskRunner
from control_plane.store import windows as store
from control_plane.store.db import Database

log = logging.getLogger("corral.windows")

# How often a running execution is looked at (its commands' statuses are read then).
FOLLOW_SECONDS = 5.0
NOT_STARTED = "not started: the window's cutoff was reached"


def _anchor(window: dict[str, Any]) -> float:
    """What rate() counts from: the start date, else the creation time (whole seconds)."""
    start = window["start_date"]
    return float(int(start if start is not None else window["created_at"]))


def next_run(window: dict[str, Any], after: float) -> float | None:
    """The window's first start strictly after ``after`` (None: no more), within its dates."""
    schedule = parse(window["schedule"], "window")
    start = window["start_date"]
    if start is not None and after < start:
        after = start - 1.0
    when = next_fire(
        schedule,
        after,
        window["schedule_timezone"],
        anchor=_anchor(window),
        offset_days=window["schedule_offset"] or 0,
    )
    if when is None or (window["end_date"] is not None and when > window["end_date"]):
        return None
    return when


def _latest_start(window: dict[str, Any], seen: float, now: float) -> float:
    """The latest start in [seen, now]: a server down over several starts runs one."""
    schedule = parse(window["schedule"], "window")
    latest = last_fire(
        schedule,
        seen - 1.0,
        now,
        window["schedule_timezone"],
        anchor=_anchor(window),
        offset_days=window["schedule_offset"] or 0,
    )
    return seen if latest is None or latest < seen else latest


class WindowJob:
    name = "maintenance-windows"

    def __init__(self, db: Database, commands: CommandService, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self.runner = TaskRunner(db, commands, clock)

    async def tick(self, now: float) -> float | None:
        async with self._db.read() as conn:
            due = await store.due_windows(conn, now)
        for window in due:
            try:
                await self._start(window, now)
            except ScheduleError as exc:  # stored under older rules: stop it, loudly
                log.error(
                    "maintenance window schedule no longer valid; not scheduled",
                    extra={"window_id": window["id"], "error": exc.message},
                )
                async with self._db.transaction() as conn:
                    await store.claim(conn, window["id"], float(window["next_run_at"]), None)
        async with self._db.read() as conn:
            running = await store.executions_with_status(conn, RUNNING)
        for execution in running:
            await self._advance(execution, now)
        async with self._db.read() as conn:
            following = bool(await store.executions_with_status(conn, RUNNING))
            upcoming = await store.next_start(conn)
        wake = [t for t in (upcoming, now + FOLLOW_SECONDS if following else None) if t]
        return min(wake) if wake else None

    # Starting ------------------------------------------------------------------------------

    async def _start(self, window: dict[str, Any], now: float) -> None:
        seen = float(window["next_run_at"])
        slot = _latest_start(window, seen, now)
        following = next_run(window, max(now, slot))
        ends_at = slot + window["duration"] * 3600.0
        cutoff_at = ends_at - window["cutoff"] * 3600.0
        execution: dict[str, Any] = {
            "id": new_id(),
            "window_id": window["id"],
            "scheduled_at": slot,
            "start_time": now,
            "end_time": None,
            "cutoff_at": cutoff_at,
            "ends_at": ends_at,
            "status": IN_PROGRESS,
            "status_details": "",
        }
        task_rows: list[dict[str, Any]] = []
        try:
            async with self._db.transaction() as conn:
                if not await store.claim(conn, window["id"], seen, following):
                    return  # another pass (or an edit) moved it first
                if now >= cutoff_at:
                    execution.update(
                        status=TIMED_OUT,
                        end_time=now,
                        status_details=(
                            f"missed: the scheduler was not running at {rfc3339(slot)}; "
                            f"it resumed at {rfc3339(now)}, past the cutoff"
                        ),
                    )
                elif await store.executions_with_status(conn, RUNNING, window["id"]):
                    execution.update(
                        status=SKIPPED_OVERLAPPING,
                        end_time=now,
                        status_details="the window's previous execution is still running",
                    )
                else:
                    tasks = await store.tasks_of(conn, window["id"])
                    registered = await store.targets_of(conn, window["id"])
                    task_rows = [
                        self._task_row(execution, t, expand_targets(t["targets"], registered))
                        for t in tasks
                    ]
                await store.insert_execution(conn, execution, task_rows)
        except IntegrityError:  # (window, start) already recorded: nothing to do
            return
        log.info(
            "maintenance window started",
            extra={
                "window_id": window["id"],
                "window_execution_id": execution["id"],
                "status": execution["status"],
                "scheduled_at": rfc3339(slot),
                "next": rfc3339(following),
            },
        )

    @staticmethod
    def _task_row(
        execution: dict[str, Any], task: dict[str, Any], targets: list[str]
    ) -> dict[str, Any]:
        return {
            "id": new_id(),
            "window_execution_id": execution["id"],
            "window_id": execution["window_id"],
            "task_id": task["id"],
            "task_type": task["task_type"],
            "priority": task["priority"],
            "document": task["document"],
            "document_version": task["document_version"],
            "targets": targets,
            "parameters": task["parameters"],
            "max_concurrency": task["max_concurrency"],
            "max_errors": task["max_errors"],
            "cutoff_behavior": task["cutoff_behavior"],
            "timeout_seconds": task["timeout_seconds"],
            "per_target": False,
            "node_ids": None,
            "status": PENDING,
            "status_details": "",
            "start_time": None,
            "end_time": None,
        }

    # Following -----------------------------------------------------------------------------

    async def _advance(self, execution: dict[str, Any], now: float) -> None:
        cutoff_reached = now >= execution["cutoff_at"]
        tasks = await self._tasks(execution["id"])
        for te in tasks:
            if te["status"] in (IN_PROGRESS, CANCELLING):
                await self.runner.follow(te, execution, cutoff_reached=cutoff_reached)
        while True:
            tasks = await self._tasks(execution["id"])
            pending = [t for t in tasks if t["status"] == PENDING]
            if pending and cutoff_reached:  # no task starts after the cutoff
                await self._not_started(pending, now)
                continue
            if not pending or any(t["status"] in (IN_PROGRESS, CANCELLING) for t in tasks):
                break
            first = min(t["priority"] for t in pending)
            for te in pending:
                if te["priority"] == first:  # equal priorities run together
                    await self.runner.start(te, execution)
        tasks = await self._tasks(execution["id"])
        if any(t["status"] in RUNNING for t in tasks):
            await self._note_window_end(execution, tasks, now)
            return
        status, details = _overall(tasks)
        async with self._db.transaction() as conn:
            await store.update_execution(
                conn, execution["id"], status=status, status_details=details, end_time=now
            )
        log.info(
            "maintenance window execution ended",
            extra={"window_execution_id": execution["id"], "status": status},
        )

    async def _tasks(self, execution_id: str) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            return await store.task_executions_of(conn, execution_id)

    async def _not_started(self, pending: list[dict[str, Any]], now: float) -> None:
        async with self._db.transaction() as conn:
            for te in pending:
                await store.update_task_execution(
                    conn, te["id"], status=CANCELLED, status_details=NOT_STARTED, end_time=now
                )

    async def _note_window_end(
        self, execution: dict[str, Any], tasks: list[dict[str, Any]], now: float
    ) -> None:
        """Past the window's end, tasks still running go on (CONTINUE_TASK): say so once."""
        if now < execution["ends_at"] or execution["status_details"]:
            return
        still = sum(1 for t in tasks if t["status"] in RUNNING)
        async with self._db.transaction() as conn:
            await store.update_execution(
                conn,
                execution["id"],
                status_details=f"the window ended; {still} task(s) still running to completion",
            )


def _overall(tasks: list[dict[str, Any]]) -> tuple[str, str]:
    """A finished execution's status from its tasks' (SSM's words)."""
    if not tasks:
        return SUCCESS, "no tasks registered"
    statuses = [t["status"] for t in tasks]
    not_started = sum(1 for t in tasks if t["status_details"] == NOT_STARTED)
    if FAILED in statuses:
        return FAILED, f"{statuses.count(FAILED)} of {len(tasks)} task(s) failed"
    if TIMED_OUT in statuses or not_started:
        timed_out = statuses.count(TIMED_OUT) + not_started
        return TIMED_OUT, f"{timed_out} of {len(tasks)} task(s) stopped by the cutoff"
    if CANCELLED in statuses:
        return CANCELLED, f"{statuses.count(CANCELLED)} of {len(tasks)} task(s) cancelled"
    return SUCCESS, ""
