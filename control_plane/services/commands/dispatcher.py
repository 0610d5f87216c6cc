"""The command dispatcher: one task that owns every active command's fan-out state.

Agent reports are stored by the channel handler (so an acknowledged result is durable) and
then queued here; the loop applies them, starts the next nodes, enforces delivery timeouts and
cancellations, and writes each round's decisions in one transaction.  At start-up the state is
rebuilt from the database, so a server restart mid-fan-out loses nothing.

Every invocation reaches a final status: the loop also ends those of a deregistered node and
those whose node has said nothing past their execution timeout plus ``no_report_grace``.  The
timers are looked at every TICK_SECONDS whatever else wakes the loop, so a steady stream of
reports cannot starve them.  A round whose transaction fails (a database error) leaves its
commands to be rebuilt from the database before the next one: what it decided in memory and
could not write is decided again, never half-applied.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.services.audit import AuditService
from control_plane.services.clock import Clock
from control_plane.services.commands.late_results import store_late
from control_plane.services.commands.rate import concurrency_limit, error_threshold
from control_plane.services.commands.state import (
    DETAIL_NODE_DEREGISTERED,
    OFFLINE,
    ONLINE,
    Change,
    CommandState,
    is_delivery_timeout,
    is_error,
)
from control_plane.services.events import EventBus
from control_plane.services.presence import Presence
from control_plane.store import commands as store
from control_plane.store import messages
from control_plane.store.db import Database

ParameterValues = Callable[[dict[str, Any]], Awaitable[dict[str, str]]]

log = logging.getLogger("corral.dispatch")

TICK_SECONDS = 1.0
EXPIRY_GRACE_SECONDS = 300.0
# How long past its execution timeout a started invocation may stay silent (an agent that is
# restarting, a network outage, results queued in its outbox) before it is TimedOut.
NO_REPORT_GRACE_SECONDS = 300.0


@dataclass
class Round:
    """One command's decisions in one loop round, persisted together."""

    changes: list[Change] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)


@dataclass
class Active:
    state: CommandState
    row: dict[str, Any]
    message_ids: dict[str, str] = field(default_factory=dict)  # node -> run_command message id
    cancel_nodes: set[str] = field(default_factory=set)
    cancel_all: bool = False
    gone: set[str] = field(default_factory=set)  # deregistered nodes not dealt with yet
    last_word: dict[str, float] = field(default_factory=dict)  # running node -> last report
    delivered: set[str] = field(default_factory=set)  # nodes its run_command went out to


class Dispatcher:
    def __init__(
        self,
        db: Database,
        presence: Presence,
        events: EventBus,
        clock: Clock,
        *,
        no_report_grace: float = NO_REPORT_GRACE_SECONDS,
    ) -> None:
        self._db = db
        self._presence = presence
        self._events = events
        self._clock = clock
        self._no_report_grace = no_report_grace
        self._loaded_at = clock()
        self._stale: set[str] = set()  # commands whose last round failed: reload first
        self._active: dict[str, Active] = {}
        # (command, node, status, details, when the report was stored)
        self._updates: deque[tuple[str, str, str, str, float]] = deque()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._bodies: dict[str, wire.RunCommandBody] = {}
        self._refs: dict[str, dict[str, Any] | None] = {}
        self._patches: dict[str, dict[str, Any] | None] = {}
        # Plaintext of pinned Parameter Store references (the hub wires ParameterService in).
        self.parameter_values: ParameterValues | None = None
        # Where a late result's arrival is recorded (the hub wires the audit trail in).
        self.audit: AuditService | None = None
        # AWS-RunPatchBaseline: (the command's ``patch`` column, node id) -> the baselines
        # the node gets with it (the hub wires Patch Manager's snapshots in).
        self.patch_delivery: Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]] | None = (
            None
        )
        # Told the seconds from a command's creation to its first delivery to each node
        # (the metrics wire their dispatch latency histogram in).
        self.on_delivered: Callable[[float], None] | None = None

    # Start-up ------------------------------------------------------------------------------
    async def load(self) -> None:
        # A restart gives every silent node its grace again: it could not report meanwhile.
        self._loaded_at = self._clock()
        async with self._db.read() as conn:
            for command_id in await store.active_ids(conn):
                await self._load_one(conn, command_id)
        self._dirty.update(self._active)

    async def _load_one(self, conn: AsyncConnection, command_id: str) -> Active | None:
        row = await store.get(conn, command_id)
        if row is None:
            return None
        invocations = await store.invocations_of(conn, command_id)
        state = self._new_state(row)
        # A cancelled command's first round (re)sends its cancels: the round that sent them
        # may have failed, or the server stopped before it (an agent ignores a repeat).
        active = Active(state=state, row=row, cancel_all=row["cancel_requested_at"] is not None)
        for inv in invocations:
            node, status, details = inv["node_id"], inv["status"], inv["status_details"]
            state.statuses[node] = (status, details)
            if status in wire.TERMINAL_STATUSES:
                state.completed += 1
                if inv["started_at"] is not None or inv["sent_at"] is not None:
                    state.started += 1
                    state.acknowledged += 1 if inv["started_at"] is not None else 0
                state.errors += is_error(status, details)
                state.delivery_timeouts += is_delivery_timeout(status, details)
                continue
            presence = self._presence.get(node)
            if presence is not None and presence.deregistered:
                active.gone.add(node)  # deregistered before its invocation could be ended
            if inv["sent_at"] is None:
                state.pending.append(node)
            else:
                state.started += 1
                if inv["started_at"] is not None:
                    state.acknowledged += 1
                    state.running.add(node)
                    active.last_word[node] = inv["updated_at"]
                else:
                    state.sent.add(node)
                    if inv["message_id"]:
                        active.message_ids[node] = inv["message_id"]
        self._active[command_id] = active
        return active

    @staticmethod
    def _new_state(row: dict[str, Any]) -> CommandState:
        targets = row["target_count"]
        return CommandState(
            command_id=row["id"],
            target_count=targets,
            concurrency=concurrency_limit(row["max_concurrency"], targets),
            error_threshold=error_threshold(row["max_errors"], targets),
        )

    # Inputs (from other services) ------------------------------------------------------------
    def submit(self, row: dict[str, Any], node_ids: list[str]) -> None:
        state = self._new_state(row)
        state.pending.extend(node_ids)
        for node in node_ids:
            state.statuses[node] = (wire.ST_PENDING, wire.ST_PENDING)
        self._active[row["id"]] = Active(state=state, row=row)
        self._kick(row["id"])

    def agent_reported(self, command_id: str, node_id: str, status: str, details: str) -> None:
        self._updates.append((command_id, node_id, status, details, self._clock()))
        self._kick(command_id)

    def node_deregistered(self, node_id: str) -> None:
        """The node was deregistered (committed): end its invocations in the next round."""
        for command_id, active in self._active.items():
            if node_id in active.state.statuses and not active.state.is_terminal(node_id):
                active.gone.add(node_id)
                self._kick(command_id)

    def cancel(self, command_id: str, node_ids: list[str] | None) -> bool:
        """False if the command is not active (finished or unknown)."""
        active = self._active.get(command_id)
        if active is None:
            return False
        if node_ids is None:
            active.cancel_all = True
        else:
            active.cancel_nodes.update(node_ids)
        self._kick(command_id)
        return True

    async def late_result(
        self,
        conn: AsyncConnection,
        node_id: str,
        invocation: dict[str, Any],
        values: dict[str, Any],
    ) -> bool:
        """A report for an invocation already final (the channel's transaction, ``values``
        its cleaned columns): kept if it is a late result (``services/commands/late_results.py``);
        the final status, and so this loop's state, does not change."""
        return await store_late(conn, self.audit, node_id, invocation, values, self._clock())

    def is_active(self, command_id: str) -> bool:
        return command_id in self._active

    def _kick(self, command_id: str) -> None:
        self._dirty.add(command_id)
        self._wake.set()

    async def expand(self, body: dict[str, Any], node_id: str = "") -> dict[str, Any]:
        """The full run_command body for an inbox entry that holds only the command id (the
        command's row is read only when it is not an active one, held in memory)."""
        command_id = str(body.get("command_id"))
        full = self._bodies.get(command_id)
        if full is None:
            active = self._active.get(command_id)
            if active is not None:
                row: dict[str, Any] | None = active.row
            else:
                async with self._db.read() as conn:
                    row = await store.get(conn, command_id)
            if row is None:
                return body
            full = wire.RunCommandBody(
                command_id=command_id,
                document_name=row["document_name"],
                document_version=row["document_version"],
                document=row["document_content"],
                parameters=row["parameters"],
                execution_timeout_seconds=row["execution_timeout"],
            )
            refs = row.get("parameter_refs") or None
            patch = row.get("patch") or None
            if command_id in self._active:
                self._bodies[command_id] = full
                self._refs[command_id] = refs
                self._patches[command_id] = patch
        else:
            refs = self._refs.get(command_id)
            patch = self._patches.get(command_id)
        delivering = self._active.get(command_id)
        if delivering is not None and node_id and node_id not in delivering.delivered:
            delivering.delivered.add(node_id)
            if self.on_delivered is not None:
                self.on_delivered(max(0.0, self._clock() - delivering.row["created_at"]))
        body_out = dict(full)
        if patch and self.patch_delivery is not None:
            body_out["patch"] = await self.patch_delivery(patch, node_id)
        if refs and self.parameter_values is not None:
            # Read now, sent over TLS, never stored: the inbox holds only the command id.
            body_out["ssm_values"] = await self.parameter_values(refs)
        return body_out

    # The loop ------------------------------------------------------------------------------
    async def run(self, passed: Callable[[], None] = lambda: None) -> None:
        """Rounds until cancelled; ``passed()`` after each one that went through (the
        supervisor's sign of life).  A failed round raises: the supervisor runs this again."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_sweep - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            if loop.time() >= next_sweep:
                # On schedule even while reports keep waking the loop.
                self.sweep()
                next_sweep = loop.time() + TICK_SECONDS
            self._wake.clear()
            await self.round()
            passed()

    def sweep(self) -> None:
        """The next round looks at every active command's timers (delivery deadlines, no
        report, Delayed, expiry), not only at those something happened to."""
        self._dirty.update(self._active)

    async def round(self) -> None:
        if self._stale:
            await self._reload_stale()
        dirty, self._dirty = self._dirty, set()
        updates, self._updates = self._updates, deque()
        now = self._clock()
        plan: dict[str, Round] = {}
        for command_id, node_id, status, details, when in updates:
            active = self._active.get(command_id)
            if active is None:
                continue
            change = active.state.agent_update(node_id, status, details)
            if change is not None:
                change.stored = True  # the channel handler wrote it with the agent's report
                active.last_word[node_id] = when
                plan.setdefault(command_id, Round()).changes.append(change)
        for command_id in dirty:
            active = self._active.get(command_id)
            if active is not None:
                self._decide(active, now, plan.setdefault(command_id, Round()))
        if not plan:
            return
        events: list[dict[str, Any]] = []
        finished: list[str] = []
        queued: list[tuple[str, wire.Message]] = []
        try:
            async with self._db.transaction() as conn:
                for command_id, decided in plan.items():
                    active = self._active[command_id]
                    await self._persist(conn, active, decided, now, events, queued)
                    if active.state.done:
                        finished.append(command_id)
                await messages.enqueue_many(conn, queued)
                await self._events.record(conn, events, now)
        except BaseException:
            # Nothing of this round was written: its commands' memory is rebuilt from the
            # database (where the agents' reports are) before anything else is decided.
            self._stale.update(plan)
            raise
        for node_id, message in queued:
            self._presence.push(node_id, message)
        for command_id in finished:
            self._active.pop(command_id, None)
            self._bodies.pop(command_id, None)
            self._refs.pop(command_id, None)
            self._patches.pop(command_id, None)
        self._events.publish(events)

    async def _reload_stale(self) -> None:
        async with self._db.read() as conn:
            for command_id in sorted(self._stale):
                old = self._active.get(command_id)  # kept if the read fails
                fresh = await self._load_one(conn, command_id)
                if fresh is None:
                    self._active.pop(command_id, None)
                elif old is not None:
                    # What is only in memory: per-node cancels, deregistrations, last words.
                    fresh.cancel_nodes |= old.cancel_nodes
                    fresh.cancel_all = fresh.cancel_all or old.cancel_all
                    fresh.gone |= old.gone
                    fresh.delivered |= old.delivered
                    for node_id, when in old.last_word.items():
                        if node_id in fresh.last_word:
                            fresh.last_word[node_id] = max(fresh.last_word[node_id], when)
                # Even one now all final stays: its next round writes the command's end.
                self._stale.discard(command_id)
                self._dirty.add(command_id)

    def _reach(self, now: float) -> Callable[[str], str]:
        def reach(node_id: str) -> str:
            node = self._presence.get(node_id)
            if node is None:
                return wire.ST_UNDELIVERABLE
            if node.deregistered:
                return DETAIL_NODE_DEREGISTERED
            online = self._presence.status(node_id, False, None, now) == "Online"
            return ONLINE if online else OFFLINE

        return reach

    def _decide(self, active: Active, now: float, decided: Round) -> None:
        state, row = active.state, active.row
        changes = decided.changes
        if active.cancel_all and not state.cancelled:
            state.cancelled = True
            active.cancel_nodes.update(state.sent | state.running)
        for node_id in sorted(active.cancel_nodes):
            if node_id in state.pending:
                state.pending.remove(node_id)
                changes.append(state._set(node_id, wire.ST_CANCELLED, wire.ST_CANCELLED))
            elif node_id in state.sent or node_id in state.running:
                decided.cancels.append(node_id)
        active.cancel_nodes.clear()
        for node_id in sorted(active.gone):
            gone = state.node_gone(node_id)
            if gone is not None:
                changes.append(gone)
                active.message_ids.pop(node_id, None)  # its inbox went with it
        active.gone.clear()
        execution = row["execution_timeout"]
        for node_id in sorted(state.running):
            heard = active.last_word.get(node_id, self._loaded_at)
            if now >= max(heard + execution, self._loaded_at) + self._no_report_grace:
                silent = state.no_report(node_id)
                if silent is not None:
                    changes.append(silent)
        changes.extend(state.stop_pending())
        deadline = row["created_at"] + row["delivery_timeout"]
        if now >= max(deadline + execution, self._loaded_at) + EXPIRY_GRACE_SECONDS:
            changes.extend(state.expire())
        elif now >= deadline:
            changes.extend(state.delivery_timed_out())
        sends = state.next_to_send(self._reach(now))
        decided.sends.extend(sends.nodes)
        changes.extend(sends.changes)
        for node_id in sorted(state.sent):
            current = state.statuses[node_id][0]
            online = self._presence.status(node_id, False, None, now) == "Online"
            if current == wire.ST_DELAYED and online:
                changes.append(state.mark_sent(node_id, delayed=False))
            elif current == wire.ST_IN_PROGRESS and not online:
                changes.append(state.mark_sent(node_id, delayed=True))

    async def _persist(
        self,
        conn: AsyncConnection,
        active: Active,
        decided: Round,
        now: float,
        events: list[dict[str, Any]],
        queued: list[tuple[str, wire.Message]],
    ) -> None:
        state, row = active.state, active.row
        command_id = row["id"]
        updates: dict[str, dict[str, Any]] = {}
        for node_id in decided.cancels:
            message = wire.make_message(wire.MSG_CANCEL_COMMAND, {"command_id": command_id})
            queued.append((node_id, message))
        for node_id in decided.sends:
            message = wire.make_message(wire.MSG_RUN_COMMAND, {"command_id": command_id})
            queued.append((node_id, message))
            active.message_ids[node_id] = message["id"]
            updates[node_id] = {"sent_at": now, "message_id": message["id"], "updated_at": now}
        for change in decided.changes:
            node_id = change.node_id
            if not change.stored:
                columns = updates.setdefault(node_id, {"updated_at": now})
                columns.update(status=change.status, status_details=change.details)
                if (
                    change.details == wire.DETAIL_DELIVERY_TIMED_OUT
                    and node_id in active.message_ids
                ):
                    await messages.acknowledge(conn, node_id, [active.message_ids.pop(node_id)])
            events.append(
                {
                    "type": "command.invocation_status_changed",
                    "command_id": command_id,
                    "node_id": node_id,
                    "status": change.status,
                    "status_details": change.details,
                    "time": now,
                }
            )
        await store.update_invocations(conn, command_id, updates)
        status, details = state.overall()
        if (status, details) != (row["status"], row["status_details"]) or state.done:
            values: dict[str, Any] = {"status": status, "status_details": details}
            if state.done and row.get("completed_at") is None:
                values["completed_at"] = now
            await store.update_command(conn, command_id, **values)
            if (status, details) != (row["status"], row["status_details"]):
                events.append(
                    {
                        "type": "command.status_changed",
                        "command_id": command_id,
                        "status": status,
                        "status_details": details,
                        "time": now,
                    }
                )
            row.update(values)
