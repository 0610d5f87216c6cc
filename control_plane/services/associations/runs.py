"""Starting runs of associations: each a Run Command command whose id is the execution's,
stored in the same transaction as the execution, the per-node state and (for a scheduled
run) the claim of its slot: after a crash either all of it is there or none.  Runs due
together are stored together (CommandService.send_batch): hundreds in one transaction.

A run that cannot start is recorded too, with why: Skipped when a change calendar is CLOSED,
Failed when its document or parameters no longer hold (deleted since, a version gone).  A
scheduled slot with no node to run on is only claimed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.services.associations.model import FAILED, PENDING, SKIPPED
from control_plane.services.clock import Clock
from control_plane.services.commands.service import CommandService, Planned
from control_plane.store import associations as store
from control_plane.store.db import Database

log = logging.getLogger("corral.associations")

# The change calendars' verdict at a time: None (all OPEN) or why not.
CalendarCheck = Callable[[list[str], float], Awaitable[str | None]]
MIN_DELIVERY, MAX_DELIVERY, UNSCHEDULED_DELIVERY = 300, 2_592_000, 86_400


class SlotTaken(Exception):
    """Another scheduler pass claimed a slot of the batch first: nothing of it is stored."""


@dataclass
class RunRequest:
    assoc: dict[str, Any]
    trigger: str  # schedule | create | update | targets | run-now
    node_ids: list[str]
    slot: float | None = None  # a scheduled run's time: its id is derived from it
    claim: dict[str, Any] | None = None  # the association's new schedule state (a slot)
    delivery_timeout: int = UNSCHEDULED_DELIVERY

    def execution(self, now: float) -> dict[str, Any]:
        assoc = self.assoc
        return {
            "id": (
                wire.association_command_id(assoc["id"], self.slot)
                if self.slot is not None
                else str(uuid.uuid4())
            ),
            "association_id": assoc["id"],
            "association_version": assoc["version"],
            "trigger": self.trigger,
            "slot": self.slot,
            "created_at": now,
            "command_id": None,
            "status": None,
            "detailed_status": None,
            "synced_at": None,
        }


class Runs:
    def __init__(
        self,
        db: Database,
        commands: CommandService,
        clock: Clock,
        calendars: CalendarCheck | None = None,
    ) -> None:
        self._db = db
        self._commands = commands
        self._clock = clock
        self.calendars = calendars

    async def start(
        self, assoc: dict[str, Any], trigger: str, node_ids: list[str], **kw: Any
    ) -> dict[str, Any] | None:
        """One run (see RunRequest); its execution, or None (the slot was taken, or there
        was no node)."""
        return (await self.start_many([RunRequest(assoc, trigger, node_ids, **kw)]))[0]

    async def start_many(self, requests: list[RunRequest]) -> list[dict[str, Any] | None]:
        """Runs in one transaction; each one's execution (None: its slot was taken by
        another pass, or it had no node and only its slot was claimed)."""
        if not requests:
            return []
        try:
            return await self._start_many(requests)
        except (IntegrityError, SlotTaken):
            if len(requests) == 1:  # another pass claimed its slot, or stored its run
                return [None]
            # One of them was started by another pass: each alone, so the others go.
            return [(await self.start_many([r]))[0] for r in requests]

    async def _start_many(self, requests: list[RunRequest]) -> list[dict[str, Any] | None]:
        now = self._clock()
        executions = [r.execution(now) for r in requests]
        outcome: dict[str, tuple[str, str] | None] = {}  # no command: (status, details)
        planned: list[Planned] = []
        by_id: dict[str, tuple[RunRequest, dict[str, Any]]] = {}
        for request, execution in zip(requests, executions, strict=True):
            by_id[execution["id"]] = (request, execution)
            assoc = request.assoc
            closed = (
                await self.calendars(list(assoc["calendars"]), now)
                if assoc["calendars"] and self.calendars is not None and request.node_ids
                else None
            )
            if closed is not None:
                outcome[execution["id"]] = (SKIPPED, closed)
                continue
            planned.append(
                Planned(
                    command_id=execution["id"],
                    requested_by=f"association:{assoc['id']}",
                    targets=list(assoc["targets"]),
                    node_ids=request.node_ids,
                    document=assoc["document_name"],
                    document_version=assoc["document_version"],
                    parameters=dict(assoc["parameters"]),
                    max_concurrency=assoc["max_concurrency"],
                    max_errors=assoc["max_errors"],
                    timeout_seconds=assoc["execution_timeout"],
                    delivery_timeout_seconds=max(
                        MIN_DELIVERY, min(request.delivery_timeout, MAX_DELIVERY)
                    ),
                    comment=f"association {assoc['name']}"[:100],
                )
            )

        taken: set[str] = set()

        async def inside(conn: AsyncConnection, ready: list[tuple[Planned, list[str]]]) -> set[str]:
            rows: list[dict[str, Any]] = []
            targets: list[dict[str, Any]] = []
            claims: list[tuple[dict[str, Any], dict[str, Any]]] = []
            sent = {item.command_id: nodes for item, nodes in ready}
            for execution_id, (request, execution) in by_id.items():
                if execution_id in sent:
                    nodes = sent[execution_id]
                    status, details = (PENDING, PENDING) if nodes else (None, None)
                elif execution_id in outcome:
                    nodes = request.node_ids
                    status, details = outcome[execution_id] or (None, None)
                else:
                    continue  # refused by send_batch: recorded Failed afterwards
                assoc = request.assoc
                if request.claim is not None:
                    claims.append((assoc, request.claim))
                if status is None or not nodes:
                    taken.add(execution_id)  # nothing to run: the slot is claimed, that's all
                    continue
                if execution_id in sent:
                    execution["command_id"] = execution_id
                else:
                    execution.update(status=status, detailed_status=details, synced_at=now)
                rows.append(execution)
                targets += _target_rows(assoc, execution_id, nodes, status, details, now)
            # Every slot of the batch is claimed in one statement; if another scheduler
            # claimed any first, none of the batch is stored and each is tried alone.
            if claims and not await store.claim_many(conn, claims):
                raise SlotTaken
            await store.insert_executions(conn, rows)
            await store.upsert_targets(conn, targets)
            return {i for i in taken if i in sent}

        errors, _dropped = await self._commands.send_batch(planned, inside)
        for execution_id, exc in errors.items():
            request, execution = by_id[execution_id]
            log.warning(
                "association run could not start",
                extra={"association_id": request.assoc["id"], "error": exc.message},
            )
            if not await self._record_failure(request, execution, exc.message[:300], now):
                taken.add(execution_id)
        started = [e for e in executions if e["id"] not in taken]
        if started:
            log.info("association runs started", extra={"count": len(started)})
        return [None if e["id"] in taken else e for e in executions]

    async def _record_failure(
        self, request: RunRequest, execution: dict[str, Any], details: str, now: float
    ) -> bool:
        """A run whose document no longer holds: Failed on its nodes (its slot claimed)."""
        assoc = request.assoc
        async with self._db.transaction() as conn:
            if request.claim is not None and not await store.claim(
                conn, assoc["id"], assoc["version"], assoc["last_slot"], request.claim
            ):
                return False
            execution.update(status=FAILED, detailed_status=details, synced_at=now)
            await store.insert_executions(conn, [execution])
            await store.upsert_targets(
                conn, _target_rows(assoc, execution["id"], request.node_ids, FAILED, details, now)
            )
        return True


def _target_rows(
    assoc: dict[str, Any],
    execution_id: str,
    node_ids: list[str],
    status: str,
    details: str | None,
    now: float,
) -> list[dict[str, Any]]:
    return [
        {
            "association_id": assoc["id"],
            "node_id": node_id,
            "version_applied": assoc["version"],
            "last_execution_id": execution_id,
            "status": status,
            "detailed_status": (details or status)[:300],
            "updated_at": now,
            "last_success_at": None,
        }
        for node_id in node_ids
    ]
