"""Starting one run of an association on some of its nodes: a Run Command command whose id is
the execution's, stored in the same transaction as the execution, the per-node state and (for
a scheduled run) the claim of its slot: after a crash either all of it is there or none.

A run that cannot start is recorded too, with why: Skipped when a change calendar is CLOSED,
Failed when its document or parameters no longer hold (deleted since, a version gone).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.errors import CorralError
from control_plane.services.associations.model import FAILED, PENDING, SKIPPED
from control_plane.services.clock import Clock
from control_plane.services.commands import CommandService
from control_plane.store import associations as store
from control_plane.store.db import Database

log = logging.getLogger("corral.associations")

# The change calendars' verdict at a time: None (all OPEN) or why not.
CalendarCheck = Callable[[list[str], float], Awaitable[str | None]]
MIN_DELIVERY, MAX_DELIVERY, UNSCHEDULED_DELIVERY = 300, 2_592_000, 86_400


class SlotTaken(Exception):
    """Another scheduler pass claimed the slot first: this one stores nothing."""


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
        self,
        assoc: dict[str, Any],
        trigger: str,
        node_ids: list[str],
        *,
        slot: float | None = None,
        claim: dict[str, Any] | None = None,
        delivery_timeout: int = UNSCHEDULED_DELIVERY,
    ) -> dict[str, Any] | None:
        """Run ``assoc`` on ``node_ids``; the execution row, or None when another pass took
        the slot (or there is no node and nothing to record)."""
        now = self._clock()
        execution_id = (
            wire.association_command_id(assoc["id"], slot)
            if slot is not None
            else str(uuid.uuid4())
        )
        execution = {
            "id": execution_id,
            "association_id": assoc["id"],
            "association_version": assoc["version"],
            "trigger": trigger,
            "slot": slot,
            "created_at": now,
            "command_id": None,
            "status": None,
            "detailed_status": None,
            "synced_at": None,
        }
        try:
            if not node_ids:
                await self._record(assoc, execution, [], claim, None, None)
                return None
            closed = (
                await self.calendars(list(assoc["calendars"]), now)
                if assoc["calendars"] and self.calendars is not None
                else None
            )
            if closed is not None:
                await self._record(assoc, execution, node_ids, claim, SKIPPED, closed)
                return execution
            return await self._send(assoc, execution, node_ids, claim, delivery_timeout)
        except SlotTaken:
            return None

    async def _send(
        self,
        assoc: dict[str, Any],
        execution: dict[str, Any],
        node_ids: list[str],
        claim: dict[str, Any] | None,
        delivery_timeout: int,
    ) -> dict[str, Any] | None:
        async def inside(conn: AsyncConnection, live: list[str]) -> None:
            execution["command_id"] = execution["id"]
            await self._claim_and_store(conn, assoc, execution, live, claim, PENDING, "Pending")

        try:
            await self._commands.send(
                requested_by=f"association:{assoc['id']}",
                targets=list(assoc["targets"]),
                document=assoc["document_name"],
                document_version=assoc["document_version"],
                parameters=dict(assoc["parameters"]),
                max_concurrency=assoc["max_concurrency"],
                max_errors=assoc["max_errors"],
                timeout_seconds=assoc["execution_timeout"],
                delivery_timeout_seconds=max(MIN_DELIVERY, min(delivery_timeout, MAX_DELIVERY)),
                comment=f"association {assoc['name']}"[:100],
                command_id=execution["id"],
                node_ids=node_ids,
                inside=inside,
            )
        except SlotTaken:
            raise
        except IntegrityError:  # its id is stored already: another pass started this run
            raise SlotTaken from None
        except CorralError as exc:  # the document or its parameters no longer hold
            execution["command_id"] = None
            log.warning(
                "association run could not start",
                extra={"association_id": assoc["id"], "error": exc.message},
            )
            await self._record(assoc, execution, node_ids, claim, FAILED, exc.message[:300])
            return execution
        log.info(
            "association run started",
            extra={
                "association_id": assoc["id"],
                "execution_id": execution["id"],
                "trigger": execution["trigger"],
                "targets": len(node_ids),
            },
        )
        return execution

    async def _record(
        self,
        assoc: dict[str, Any],
        execution: dict[str, Any],
        node_ids: list[str],
        claim: dict[str, Any] | None,
        status: str | None,
        details: str | None,
    ) -> None:
        async with self._db.transaction() as conn:
            await self._claim_and_store(
                conn, assoc, execution, node_ids, claim, status, details, record=status is not None
            )

    async def _claim_and_store(
        self,
        conn: AsyncConnection,
        assoc: dict[str, Any],
        execution: dict[str, Any],
        node_ids: list[str],
        claim: dict[str, Any] | None,
        status: str | None,
        details: str | None,
        *,
        record: bool = True,
    ) -> None:
        if claim is not None and not await store.claim(
            conn, assoc["id"], assoc["version"], assoc["last_slot"], claim
        ):
            raise SlotTaken
        if not record:
            return
        now = execution["created_at"]
        if execution["command_id"] is None:
            execution["status"], execution["detailed_status"] = status, details
            execution["synced_at"] = now
        await store.insert_execution(conn, execution)
        await store.upsert_targets(
            conn,
            [
                {
                    "association_id": assoc["id"],
                    "node_id": node_id,
                    "version_applied": assoc["version"],
                    "last_execution_id": execution["id"],
                    "status": status or PENDING,
                    "detailed_status": (details or status or PENDING)[:300],
                    "updated_at": now,
                    "last_success_at": None,
                }
                for node_id in node_ids
            ],
        )
