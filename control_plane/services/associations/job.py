"""The State Manager job of the scheduler (services/scheduling/): each tick

1. starts every scheduled run that is due: the latest slot passed (a server that was down
   over several slots runs once, not once per slot), claimed in the transaction that stores
   the run (runs.py), so a restart or a second server never runs a slot twice;
2. re-evaluates every association's targets against the fleet (every RECONCILE_SECONDS, or
   at once when something changed): a node that now matches gets the association applied
   (unless it applies only at its cron interval), one that no longer matches is dropped, an
   association without a schedule runs again where its version changed; and every node whose
   set of associations changed is sent it (node_sets.py);
3. applies the nodes' results: each target's status, and its compliance item (type
   Association) when the association syncs compliance.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.errors import AgentError
from control_plane.services.associations import node_sets
from control_plane.services.associations.model import (
    FAILED,
    PENDING,
    SUCCESS,
    invocation_status,
)
from control_plane.services.associations.runs import RunRequest, Runs
from control_plane.services.clock import Clock
from control_plane.services.presence import Presence
from control_plane.services.targets import Fleet, fleet
from control_plane.store import associations as store
from control_plane.store import commands as command_store
from control_plane.store import messages
from control_plane.store.db import Database

log = logging.getLogger("corral.associations")

COMMAND_EVENTS = ("command.invocation_status_changed", "command.status_changed")
MAX_TOUCHED = 100_000  # past this, the next sweep applies the rest

RECONCILE_SECONDS = 60.0
SWEEP_SECONDS = 300.0  # every open execution looked at, whatever events said
DUE_BATCH = 500
SYNC_BATCH = 200


class Compliance(Protocol):
    async def put_items_in(
        self,
        conn: AsyncConnection,
        node_id: str,
        compliance_type: str,
        items: list[dict[str, Any]],
        *,
        execution_id: str,
        execution_type: str,
        execution_time: float,
    ) -> Any: ...


class AssociationJob:
    name = "associations"

    def __init__(
        self,
        db: Database,
        runs: Runs,
        check_run: Any,
        presence: Presence,
        clock: Clock,
        compliance: Compliance | None = None,
        *,
        reconcile_seconds: float = RECONCILE_SECONDS,
    ) -> None:
        self._db = db
        self._runs = runs
        self._check_run = check_run
        self._presence = presence
        self._clock = clock
        self.compliance = compliance
        self._reconcile_seconds = reconcile_seconds
        self._next_reconcile = 0.0
        self._dirty = True
        self._prepared = node_sets.Prepared(check_run)
        self._fleet: Fleet | None = None  # the fleet as the last reconcile read it
        self._rows: dict[str, dict[str, Any]] = {}  # associations as last read, by id
        self._touched: set[str] = set()  # command ids whose status changed since the last tick
        self._next_sweep = 0.0
        self.wake: Callable[[], None] = lambda: None  # the scheduler's, for this job
        # One pass at a time (the loop, run-now, a test): two reconciles could both see a
        # node as new and both apply the association to it.
        self._lock = asyncio.Lock()

    def changed(self) -> None:
        """An association or a node's targeting changed: reconcile at the next tick (a change
        made during a reconcile is seen by the next one)."""
        self._dirty = True

    async def tick(self, now: float) -> float | None:
        async with self._lock:
            return await self._tick(now)

    async def _tick(self, now: float) -> float | None:
        await self.run_due(now)
        if self._dirty or now >= self._next_reconcile:
            self._dirty = False
            self._next_reconcile = now + self._reconcile_seconds
            await self.reconcile(now)
        await self.sync(now)
        async with self._db.read() as conn:
            due = await store.next_due(conn)
        wake = now if self._dirty else self._next_reconcile
        if due is not None:
            wake = min(wake, due)
        wake = min(wake, self._next_sweep)
        if self._touched:
            wake = now
        return wake

    # 1. Scheduled runs ---------------------------------------------------------------------
    async def run_due(self, now: float) -> int:
        """Start every due scheduled run, DUE_BATCH at a time, each batch in one
        transaction; how many started."""
        from agent import schedules

        started = 0
        snapshot: Fleet | None = None
        fire_times = _FireTimes(schedules)
        while True:
            async with self._db.read() as conn:
                rows = await store.due(conn, now, DUE_BATCH)
                if rows and snapshot is None:
                    # The last reconcile's (a tag change or a registration makes one at once).
                    snapshot = self._fleet or await fleet(conn)
            if not rows or snapshot is None:
                return started
            requests: list[RunRequest] = []
            for row in rows:
                try:
                    slot, following = fire_times(row, now)
                except AgentError as exc:  # stored before a rule changed: stop, say why
                    log.error(
                        "association schedule unreadable; not scheduled",
                        extra={"association_id": row["id"], "error": exc.message},
                    )
                    slot, following = None, None
                claim: dict[str, Any] = {"next_run_at": following}
                if slot is None:  # nothing due after all: only the next time is stored
                    async with self._db.transaction() as conn:
                        await store.claim(conn, row["id"], row["version"], row["last_slot"], claim)
                    continue
                claim["last_slot"] = slot
                requests.append(
                    RunRequest(
                        row,
                        "schedule",
                        snapshot.match(list(row["targets"])),
                        slot=slot,
                        claim=claim,
                        delivery_timeout=int((following or slot + 86_400) - slot),
                    )
                )
            executions = await self._runs.start_many(requests)
            started += sum(e is not None for e in executions)
            if len(rows) < DUE_BATCH:
                return started

    # 2. Targets and node sets --------------------------------------------------------------
    async def reconcile(self, now: float) -> None:
        async with self._db.read() as conn:
            snapshot = await fleet(conn)
            assocs = await self._associations(conn)
            current = await store.applied_versions(conn)
            sent = await store.node_revisions(conn)
        self._fleet = snapshot
        by_assoc: dict[str, dict[str, int | None]] = defaultdict(dict)
        for association_id, node_id, version in current:
            by_assoc[association_id][node_id] = version
        self._prepared.start_pass(now)
        per_node: dict[str, list[node_sets.Entry]] = defaultdict(list)
        runs: list[RunRequest] = []
        for assoc in assocs:
            matched = snapshot.match(list(assoc["targets"]))
            existing = by_assoc.get(assoc["id"], {})
            run = await self._apply_targets(assoc, matched, existing, now)
            if run is not None:
                runs.append(run)
            told = node_sets.entry(assoc, await self._prepared.get(assoc, now))
            for node_id in matched:
                per_node[node_id].append(told)
        for start in range(0, len(runs), DUE_BATCH):  # applied together, as due runs are
            await self._runs.start_many(runs[start : start + DUE_BATCH])
        await self._send_sets(snapshot, per_node, sent, now)

    async def _associations(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        """Every association, read whole only when new or changed since the last pass."""
        versions = await store.versions_now(conn)
        stale = [i for i, v in versions.items() if self._rows.get(i, {}).get("version") != v]
        if stale:
            for row in await store.rows_of(conn, stale):
                self._rows[row["id"]] = row
        self._rows = {i: r for i, r in self._rows.items() if i in versions}
        return list(self._rows.values())

    async def _apply_targets(
        self,
        assoc: dict[str, Any],
        matched: list[str],
        existing: dict[str, int | None],
        now: float,
    ) -> RunRequest | None:
        """Drop the nodes that no longer match; the run that applies it where it has not
        been applied (at its current version), if any."""
        gone = [n for n in existing if n not in set(matched)]
        if gone:
            async with self._db.transaction() as conn:
                await store.delete_targets(conn, assoc["id"], gone)
        fresh = [n for n in matched if n not in existing]
        changed = [
            n for n in matched if n in existing and existing[n] not in (None, assoc["version"])
        ]
        waits = assoc["schedule"] is not None and assoc["apply_only_at_cron_interval"]
        if waits:  # the nodes join; the next cron interval applies it
            if fresh:
                async with self._db.transaction() as conn:
                    await store.upsert_targets(
                        conn,
                        [
                            {
                                "association_id": assoc["id"],
                                "node_id": n,
                                "version_applied": None,
                                "last_execution_id": None,
                                "status": PENDING,
                                "detailed_status": "waiting for the schedule",
                                "updated_at": now,
                                "last_success_at": None,
                            }
                            for n in fresh
                        ],
                    )
            return None
        runs = fresh + changed
        if not runs:
            return None
        trigger = "update" if changed and not fresh else ("targets" if existing else "create")
        return RunRequest(assoc, trigger, runs)

    async def _send_sets(
        self,
        snapshot: Fleet,
        per_node: dict[str, list[node_sets.Entry]],
        sent: dict[str, str],
        now: float,
    ) -> None:
        queued: list[tuple[str, wire.Message]] = []
        revisions: dict[str, str] = {}
        for node_id in snapshot.node_ids:
            items = per_node.get(node_id, [])
            if not items and node_id not in sent:
                continue  # never had any: nothing to tell
            if sent.get(node_id) == node_sets.revision(items):
                continue
            body = node_sets.build(items)
            queued.append((node_id, wire.make_message(wire.MSG_ASSOCIATIONS, dict(body))))
            revisions[node_id] = body["revision"]
        if not queued:
            return
        async with self._db.transaction() as conn:
            await messages.enqueue_many(conn, queued)
            await store.set_node_revisions(conn, revisions, now)
        for node_id, message in queued:
            self._presence.push(node_id, message)
        log.info("association sets sent", extra={"nodes": len(queued)})

    # 3. Results ----------------------------------------------------------------------------
    def command_event(self, event: dict[str, Any]) -> None:
        """An EventBus listener: a command's status changed (after its commit).  If it is
        one of our runs, its results are applied at the next tick, which is asked for now."""
        if event.get("type") not in COMMAND_EVENTS:
            return
        command_id = event.get("command_id")
        if isinstance(command_id, str) and len(self._touched) < MAX_TOUCHED:
            if not self._touched:
                self.wake()
            self._touched.add(command_id)

    async def sync(self, now: float, *, sweep: bool = False) -> None:
        """Apply finished nodes' results: of the runs whose commands changed, and every
        SWEEP_SECONDS (or when asked) of every run still open (what a restart's lost events
        missed)."""
        touched, self._touched = self._touched, set()
        if sweep or now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            after: tuple[float, str] | None = None
            while True:
                async with self._db.read() as conn:
                    executions = await store.unsynced(conn, SYNC_BATCH, after)
                for execution in executions:
                    await self._sync_one(execution, now)
                if len(executions) < SYNC_BATCH:
                    break
                after = (executions[-1]["created_at"], executions[-1]["id"])
            return
        ids = sorted(touched)
        for start in range(0, len(ids), SYNC_BATCH):
            async with self._db.read() as conn:
                executions = await store.unsynced_of(conn, ids[start : start + SYNC_BATCH])
            for execution in executions:
                await self._sync_one(execution, now)

    async def _sync_one(self, execution: dict[str, Any], now: float) -> bool:
        touched: list[str] = []
        async with self._db.transaction() as conn:
            invocations = await command_store.invocations_of(conn, execution["command_id"])
            targets = {
                r["node_id"]: r
                for r in await store.targets_of(conn, execution["association_id"])
                if r["last_execution_id"] == execution["id"]
            }
            updates = []
            for inv in invocations:
                row = targets.get(inv["node_id"])
                status = invocation_status(inv["status"])
                if row is None or (row["status"], row["detailed_status"]) == (
                    status,
                    inv["status_details"],
                ):
                    continue
                success = now if status == SUCCESS else row["last_success_at"]
                updates.append(
                    {
                        **row,
                        "status": status,
                        "detailed_status": str(inv["status_details"])[:300],
                        "updated_at": now,
                        "last_success_at": success,
                    }
                )
                if status in (SUCCESS, FAILED):
                    touched.append(inv["node_id"])
            await store.upsert_targets(conn, updates)
            done = execution["completed_at"] is not None and all(
                inv["status"] in wire.TERMINAL_STATUSES for inv in invocations
            )
            if done:
                await store.mark_synced(conn, execution["id"], now)
            if touched and self.compliance is not None:
                # In the same transaction: a status applied is never left without its item.
                await self._put_compliance(conn, touched, execution, now)
        return done

    async def _put_compliance(
        self, conn: AsyncConnection, node_ids: list[str], execution: dict[str, Any], now: float
    ) -> None:
        """Each node's Association items: one per association it has run, AUTO sync only."""
        assert self.compliance is not None
        assocs = {a["id"]: a for a in await store.all_rows(conn)}
        rows = await store.targets_of_nodes(conn, node_ids)
        by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            assoc = assocs.get(row["association_id"])
            if assoc is None or assoc["sync_compliance"] != "AUTO":
                continue
            if row["status"] not in (SUCCESS, FAILED):
                continue
            by_node[row["node_id"]].append(
                {
                    "id": assoc["id"],
                    "title": assoc["name"],
                    "severity": assoc["compliance_severity"],
                    "status": "COMPLIANT" if row["status"] == SUCCESS else "NON_COMPLIANT",
                    "details": {
                        "DocumentName": assoc["document_name"],
                        "DocumentVersion": str(assoc["document_version"] or "$DEFAULT"),
                    },
                }
            )
        for node_id in node_ids:
            await self.compliance.put_items_in(
                conn,
                node_id,
                "Association",
                by_node.get(node_id, []),
                execution_id=execution["id"],
                execution_type="Command",
                execution_time=now,
            )


class _FireTimes:
    """An association's due slot and next time, computed once per distinct schedule in a
    pass: a thousand associations on ``cron(0/30 * * * ? *)`` due together cost one cron
    walk, not a thousand (a cron() anchor only matters when it is after the last slot, or
    with an offset; rate() is arithmetic and not kept)."""

    def __init__(self, schedules: Any) -> None:
        self._schedules = schedules
        self._parsed: dict[str, Any] = {}
        self._known: dict[tuple[Any, ...], tuple[float | None, float | None]] = {}

    def __call__(self, row: dict[str, Any], now: float) -> tuple[float | None, float | None]:
        text = row["schedule"]
        sched = self._parsed.get(text)
        if sched is None:
            sched = self._parsed[text] = self._schedules.parse(text, "association")
        anchor = row["anchor"]
        after = row["last_slot"] if row["last_slot"] is not None else anchor
        offset = row["schedule_offset"] or 0
        # With an offset, a cron time before the anchor may land after ``after``: keep it.
        mattering = anchor if anchor >= after or offset else None
        key = (text, row["timezone"], offset, after, mattering)
        if sched.kind != "cron" or key not in self._known:
            zone = row["timezone"]
            options = {"anchor": anchor, "offset_days": offset}
            found = (
                self._schedules.last_fire(sched, after, now, zone, **options),
                self._schedules.next_fire(sched, now, zone, **options),
            )
            if sched.kind != "cron":
                return found
            self._known[key] = found
        return self._known[key]
