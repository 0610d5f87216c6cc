"""State Manager associations: create, update (optimistic: ``expect_version``), list, show,
versions, delete, run now, executions and their targets.

Everything is checked before anything is stored: the association's own rules (model.py), and
its document run as Run Command checks one (document and version exist, parameters pass
their types and ``allowedPattern``, Parameter Store references the caller may read, nested
documents the caller may run).  Targets that match no node yet are accepted with a warning:
nodes may come later.  The scheduler's job (job.py) is woken on every change.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.associations.model import (
    Spec,
    check,
    check_name,
    execution_status,
)
from control_plane.services.associations.runs import Runs
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.commands.nesting import DocumentCheck
from control_plane.services.commands.service import CommandService
from control_plane.services.commands.views import OutputAccess
from control_plane.services.parameters.refs import Decide
from control_plane.services.targets import fleet
from control_plane.store import associations as store
from control_plane.store.db import Database

# Raises OutOfScope unless the caller may act on every one of these nodes (id -> tags).
NodeCheck = Callable[[dict[str, dict[str, str]]], None]
# Hears an association as stored, inside its transaction.
Stored = Callable[[dict[str, Any]], None]
# Refuses (InvalidRequest) unless every change calendar named exists (services/calendars).
CalendarCheck = Callable[[list[str]], Awaitable[Any]]


class AssociationService:
    def __init__(
        self,
        db: Database,
        commands: CommandService,
        runs: Runs,
        clock: Clock,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._commands = commands
        self._runs = runs
        self._clock = clock
        self._changed = changed
        self.check_calendars: CalendarCheck | None = None

    async def _check_run(
        self,
        spec: Spec,
        authorize_parameter: Decide | None,
        authorize_document: DocumentCheck | None,
    ) -> dict[str, Any]:
        prepared = await self._commands.check_run(
            spec.document,
            spec.document_version,
            spec.parameters,
            authorize_parameter=authorize_parameter,
            authorize_document=authorize_document,
        )
        if spec.calendars:
            if self.check_calendars is None:
                raise InvalidRequest("change calendars are not available on this server")
            await self.check_calendars(spec.calendars)
        return prepared

    def _next_run(self, spec: Spec, now: float, anchor: float) -> float | None:
        from agent import schedules

        if spec.schedule is None:
            return None
        parsed = schedules.parse(spec.schedule, "association")
        return schedules.next_fire(
            parsed, now, spec.timezone, anchor=anchor, offset_days=spec.schedule_offset or 0
        )

    async def create(
        self,
        spec: Spec,
        *,
        requested_by: str,
        authorize_nodes: NodeCheck = lambda _nodes: None,
        authorize_parameter: Decide | None = None,
        authorize_document: DocumentCheck | None = None,
        stored: Stored = lambda _row: None,
    ) -> dict[str, Any]:
        """``stored`` hears the association as stored, inside the transaction (the audit
        entry names it and its version before the commit writes the entry)."""
        check(spec)
        await self._check_run(spec, authorize_parameter, authorize_document)
        now = self._clock()
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "version": 1,
            **spec.columns(),
            "anchor": now,
            "next_run_at": self._next_run(spec, now, now),
            "last_slot": None,
            "created_at": now,
            "created_by": requested_by,
            "updated_at": now,
            "updated_by": requested_by,
        }
        async with self._db.transaction() as conn:
            if await store.name_taken(conn, spec.name):
                raise Conflict(f"association {spec.name} already exists")
            snapshot = await fleet(conn)
            matched = snapshot.match(spec.targets)
            authorize_nodes({n: snapshot.tags.get(n, {}) for n in matched})
            await store.insert(conn, row)
            await store.insert_version(conn, _version_row(row, requested_by, now))
            stored(row)
        self._changed()
        view = await self.get(row["id"])
        if not matched:
            view["warnings"] = [
                f"the targets {' '.join(spec.targets)} match no node yet: "
                "it applies to nodes as they come"
            ]
        return view

    async def update(
        self,
        association_id: str,
        changes: dict[str, Any],
        *,
        expect_version: int | None,
        requested_by: str,
        authorize_nodes: NodeCheck = lambda _nodes: None,
        authorize_parameter: Decide | None = None,
        authorize_document: DocumentCheck | None = None,
        stored: Stored = lambda _row: None,
    ) -> dict[str, Any]:
        """Apply ``changes`` (Spec field -> value) as a new version; refused whole (nothing
        changes) if ``expect_version`` is not the current one."""
        async with self._db.read() as conn:
            row = await store.get(conn, association_id)
        if row is None:
            raise NotFound(f"association {association_id} not found")
        if expect_version is not None and expect_version != row["version"]:
            raise Conflict(
                f"association {association_id} is at version {row['version']}, "
                f"not {expect_version}: show it again and retry"
            )
        spec = Spec.from_row(row)
        for key, value in changes.items():
            if not hasattr(spec, key):
                raise InvalidRequest(f"unknown association field {key}")
            setattr(spec, key, value)
        check(spec)
        await self._check_run(spec, authorize_parameter, authorize_document)
        now = self._clock()
        schedule_changed = (spec.schedule, spec.timezone, spec.schedule_offset) != (
            row["schedule"],
            row["timezone"],
            row["schedule_offset"],
        )
        anchor = now if schedule_changed else row["anchor"]
        values: dict[str, Any] = {
            **spec.columns(),
            "version": row["version"] + 1,
            "anchor": anchor,
            "updated_at": now,
            "updated_by": requested_by,
        }
        if schedule_changed:
            values["next_run_at"] = self._next_run(spec, now, anchor)
            values["last_slot"] = None
        async with self._db.transaction() as conn:
            if await store.name_taken(conn, spec.name, other_than=association_id):
                raise Conflict(f"association {spec.name} already exists")
            snapshot = await fleet(conn)
            authorize_nodes({n: snapshot.tags.get(n, {}) for n in snapshot.match(spec.targets)})
            if not await store.update(conn, association_id, row["version"], values):
                raise Conflict(
                    f"association {association_id} changed while updating: show it again and retry"
                )
            await store.insert_version(conn, _version_row({**row, **values}, requested_by, now))
            stored({**row, **values})
        self._changed()
        return await self.get(association_id)

    async def _row(self, association_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get(conn, association_id)
        if row is None:
            raise NotFound(f"association {association_id} not found")
        return row

    async def get(self, association_id: str) -> dict[str, Any]:
        row = await self._row(association_id)
        async with self._db.read() as conn:
            targets = await store.targets_of(conn, association_id)
        return association_view(row, targets)

    async def list_page(
        self,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
        visible: Callable[[dict[str, Any]], bool] = lambda _row: True,
    ) -> paging.Page[dict[str, Any]]:
        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (str(after[0]), str(after[1]))
            async with self._db.read() as conn:
                return await store.list_page(conn, n, key)

        page = await paging.scan(
            fetch,
            key=lambda row: (row["name"], row["id"]),
            limit=limit,
            next_token=next_token,
            shape=(str, str),
            visible=visible,
        )
        return paging.Page([association_view(r) for r in page.items], page.next_token)

    async def versions(self, association_id: str) -> list[dict[str, Any]]:
        await self._row(association_id)
        async with self._db.read() as conn:
            rows = await store.versions(conn, association_id)
        return [
            {
                "version": r["version"],
                "created_at": rfc3339(r["created_at"]),
                "created_by": r["created_by"],
                **r["snapshot"],
            }
            for r in rows
        ]

    async def delete(self, association_id: str) -> dict[str, Any]:
        row = await self._row(association_id)
        async with self._db.transaction() as conn:
            await store.delete(conn, association_id)
        self._changed()
        return {"association_id": association_id, "name": row["name"], "deleted": True}

    async def run_now(
        self, association_id: str, authorize_nodes: NodeCheck = lambda _n: None
    ) -> dict[str, Any]:
        """Run it on all its targets now (SSM StartAssociationsOnce), whatever its schedule."""
        row = await self._row(association_id)
        async with self._db.read() as conn:
            snapshot = await fleet(conn)
        matched = snapshot.match(list(row["targets"]))
        if not matched:
            raise InvalidRequest(f"association {row['name']} matches no node: nothing to run")
        authorize_nodes({n: snapshot.tags.get(n, {}) for n in matched})
        execution = await self._runs.start(row, "run-now", matched)
        self._changed()
        if execution is None:  # pragma: no cover - only a scheduled slot can be taken
            raise Conflict("the run was taken by another scheduler pass")
        return await self.execution(association_id, execution["id"])

    async def execution(self, association_id: str, execution_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.execution(conn, execution_id)
        if row is None or row["association_id"] != association_id:
            raise NotFound(f"association {association_id} has no execution {execution_id}")
        return execution_view(row)

    async def executions(
        self,
        association_id: str,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        await self._row(association_id)

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (-float(after[0]), str(after[1]))
            async with self._db.read() as conn:
                return await store.executions_page(conn, association_id, n, key)

        page = await paging.scan(
            fetch,
            key=lambda row: (-row["created_at"], row["id"]),
            limit=limit,
            next_token=next_token,
            shape=(float, str),
        )
        return paging.Page([execution_view(r) for r in page.items], page.next_token)

    async def execution_targets(
        self,
        association_id: str,
        execution_id: str,
        output: OutputAccess,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """Each node of the execution: its status and, where ``output`` may read, output."""
        execution = await self.execution(association_id, execution_id)
        if execution["command_id"] is None:
            async with self._db.read() as conn:
                rows = [
                    r
                    for r in await store.targets_of(conn, association_id)
                    if r["last_execution_id"] == execution_id
                ]
            items = [
                {
                    "node_id": r["node_id"],
                    "status": execution["status"],
                    "detailed_status": execution["detailed_status"],
                }
                for r in rows
            ]
            return paging.Page(items, None)
        page = await self._commands.invocations(
            execution["command_id"], output, limit=limit, next_token=next_token
        )
        items = []
        for inv in page.items:
            from control_plane.services.associations.model import invocation_status

            items.append(
                {
                    **inv,
                    "execution_id": execution_id,
                    "status": invocation_status(inv["status"]),
                    "detailed_status": inv.get("status_details"),
                    "command_status": inv["status"],
                }
            )
        return paging.Page(items, page.next_token)


def _version_row(row: dict[str, Any], by: str, now: float) -> dict[str, Any]:
    snapshot = {k: row[k] for k in Spec.from_row(row).columns()}
    return {
        "association_id": row["id"],
        "version": row["version"],
        "snapshot": snapshot,
        "created_at": now,
        "created_by": by,
    }


def association_view(
    row: dict[str, Any], targets: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "association_id": row["id"],
        "name": row["name"],
        "version": row["version"],
        "document": row["document_name"],
        "document_version": row["document_version"],
        "targets": list(row["targets"]),
        "parameters": row["parameters"],
        "schedule": row["schedule"],
        "timezone": row["timezone"],
        "apply_only_at_cron_interval": bool(row["apply_only_at_cron_interval"]),
        "schedule_offset": row["schedule_offset"],
        "max_concurrency": row["max_concurrency"],
        "max_errors": row["max_errors"],
        "compliance_severity": row["compliance_severity"],
        "sync_compliance": row["sync_compliance"],
        "calendars": list(row["calendars"]),
        "next_run_at": rfc3339(row["next_run_at"]),
        "last_scheduled_run": rfc3339(row["last_slot"]),
        "created_at": rfc3339(row["created_at"]),
        "created_by": row["created_by"],
        "updated_at": rfc3339(row["updated_at"]),
        "updated_by": row["updated_by"],
    }
    if targets is not None:
        view["overview"] = overview(targets)
        view["node_statuses"] = [
            {
                "node_id": t["node_id"],
                "status": t["status"],
                "detailed_status": t["detailed_status"],
                "version_applied": t["version_applied"],
                "last_execution_id": t["last_execution_id"],
                "updated_at": rfc3339(t["updated_at"]),
                "last_success_at": rfc3339(t["last_success_at"]),
            }
            for t in targets[:1000]
        ]
    return view


def overview(targets: list[dict[str, Any]]) -> dict[str, Any]:
    """SSM's AssociationOverview: an overall status and the count of nodes per status."""
    counts = Counter(t["status"] for t in targets)
    if counts.get("Failed"):
        status = "Failed"
    elif counts.get("Pending") or counts.get("InProgress"):
        status = "Pending"
    elif counts:
        status = "Success"
    else:
        status = "Pending"
    return {
        "status": status,
        "detailed_status": status,
        "status_counts": dict(sorted(counts.items())),
    }


def execution_view(row: dict[str, Any]) -> dict[str, Any]:
    status, detailed = execution_status(row)
    return {
        "execution_id": row["id"],
        "association_id": row["association_id"],
        "association_version": row["association_version"],
        "trigger": row["trigger"],
        "scheduled_for": rfc3339(row["slot"]),
        "created_at": rfc3339(row["created_at"]),
        "status": status,
        "detailed_status": detailed,
        "command_id": row["command_id"],
        "target_count": row.get("target_count"),
        "completed_at": rfc3339(row.get("completed_at")),
    }


__all__ = ["AssociationService", "check_name"]
