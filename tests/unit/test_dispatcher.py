"""The dispatcher on its own: a real database, an in-memory presence, a clock the test moves;
each test drives the rounds itself (or runs the loop and waits for a condition), no server.

What it holds: rate control that goes on past an offline or deregistered node, a final status
for every invocation (deregistration, no report), timers that fire under a steady stream of
reports, and a round whose transaction fails leaving nothing half-applied.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.config import load_config
from control_plane.services.commands.dispatcher import Dispatcher
from control_plane.services.commands.state import DETAIL_NO_REPORT, DETAIL_NODE_DEREGISTERED
from control_plane.services.events import EventBus
from control_plane.services.presence import Presence
from control_plane.store import commands as store
from control_plane.store import messages
from control_plane.store.db import Database
from control_plane.store.schema import node_inbox
from tests.unit.conftest import FakeClock, ServerDir
from tests.unit.test_execution_support import eventually

GRACE = 300.0
EXECUTION = 600
DELIVERY = 3600


class Fleet:
    """A dispatcher with its database, presence and clock, and the steps the tests need."""

    def __init__(self, db: Database, clock: FakeClock, events: EventBus | None = None) -> None:
        self.db = db
        self.clock = clock
        self.presence = Presence()
        self.events = events or EventBus()
        self.dispatcher = self.new_dispatcher()
        self.last_command = ""

    def new_dispatcher(self) -> Dispatcher:
        return Dispatcher(self.db, self.presence, self.events, self.clock, no_report_grace=GRACE)

    def node(self, node_id: str, online: bool = True) -> str:
        self.presence.add(node_id, 1)
        if online:
            self.presence.get(node_id).polls_held = 1  # type: ignore[union-attr]
        return node_id

    def offline(self, node_id: str) -> None:
        self.presence.get(node_id).polls_held = 0  # type: ignore[union-attr]

    async def send(self, nodes: list[str], concurrency: str = "50", errors: str = "0") -> str:
        now = self.clock()
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "document_name": "AWS-RunShellScript",
            "document_version": "1",
            "document_sha256": "0" * 64,
            "document_content": {},
            "parameters": {},
            "targets": nodes,
            "max_concurrency": concurrency,
            "max_errors": errors,
            "execution_timeout": EXECUTION,
            "delivery_timeout": DELIVERY,
            "status": wire.ST_PENDING,
            "status_details": wire.ST_PENDING,
            "target_count": len(nodes),
            "created_at": now,
        }
        async with self.db.transaction() as conn:
            await store.insert(conn, row, nodes, now)
            row = await store.get(conn, row["id"]) or {}
        self.last_command = str(row["id"])
        self.dispatcher.submit(row, nodes)
        await self.dispatcher.round()
        return str(row["id"])

    async def report(self, command_id: str, node_id: str, status: str, details: str = "") -> None:
        """What the channel does with an agent's report: store it, then tell the dispatcher."""
        async with self.db.transaction() as conn:
            values: dict[str, Any] = {
                "status": status,
                "status_details": details or status,
                "updated_at": self.clock(),
            }
            if status == wire.ST_IN_PROGRESS:
                values["started_at"] = self.clock()
            await store.update_invocations(conn, command_id, {node_id: values})
        self.dispatcher.agent_reported(command_id, node_id, status, details or status)

    async def statuses(self, command_id: str) -> dict[str, tuple[str, str]]:
        async with self.db.read() as conn:
            rows = await store.invocations_of(conn, command_id)
        return {r["node_id"]: (r["status"], r["status_details"]) for r in rows}

    async def command(self, command_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await store.get(conn, command_id) or {}

    async def inbox(self, node_id: str) -> list[str]:
        async with self.db.read() as conn:
            found = await messages.pending(conn, node_id, 100)
        return [str(m["body"].get("command_id")) for m in found]

    async def inbox_size(self) -> int:
        async with self.db.read() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(node_inbox))
        return int(count or 0)


@pytest.fixture
def fleet(server_dir: ServerDir, clock: FakeClock) -> Iterator[Callable[..., Any]]:
    """``fleet(scenario)`` runs ``await scenario(Fleet)`` on a fresh database."""

    def run(scenario: Callable[[Fleet], Awaitable[None]]) -> None:
        async def main() -> None:
            db = Database(load_config(server_dir.path).async_database_url)
            try:
                await scenario(Fleet(db, clock))
            finally:
                await db.close()

        asyncio.run(main())

    yield run


# Rate control ---------------------------------------------------------------------------------


def test_an_offline_first_target_waits_while_the_ramp_goes_on(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        first = f.node("mi-00000000000000001", online=False)
        others = [f.node(f"mi-0000000000000001{i}") for i in range(4)]
        command_id = await f.send([first, *others], concurrency="3")
        seen = await f.statuses(command_id)
        assert seen[first] == (wire.ST_DELAYED, wire.ST_DELAYED)
        assert seen[others[0]] == (wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)
        assert await f.inbox(first) == [command_id]  # it gets it when it comes back
        await f.report(command_id, others[0], wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        seen = await f.statuses(command_id)
        # Within MaxConcurrency 3: the offline node, the running one and one more.
        assert seen[others[1]][0] == wire.ST_IN_PROGRESS
        assert seen[others[2]][0] == wire.ST_PENDING
        await f.report(command_id, others[0], wire.ST_SUCCESS)
        await f.report(command_id, others[1], wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[others[2]][0] == wire.ST_IN_PROGRESS
        # The offline node keeps its slot until its delivery timeout, then ends without error.
        f.clock.advance(DELIVERY + 1)
        f.dispatcher.sweep()
        await f.dispatcher.round()
        seen = await f.statuses(command_id)
        assert seen[first] == (wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT)
        assert await f.inbox(first) == []  # withdrawn: it must not run after all

    fleet(scenario)


def test_a_deregistered_target_is_undeliverable_and_the_ramp_goes_on(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        gone, live = f.node("mi-00000000000000002"), f.node("mi-00000000000000003")
        f.presence.deregister(gone, 2)
        command_id = await f.send([gone, live])
        seen = await f.statuses(command_id)
        assert seen[gone] == (wire.ST_UNDELIVERABLE, DETAIL_NODE_DEREGISTERED)
        assert seen[live] == (wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)
        await f.report(command_id, live, wire.ST_SUCCESS)
        await f.dispatcher.round()
        command = await f.command(command_id)
        # Undeliverable does not keep the command from Success (SSM's table).
        assert (command["status"], command["completed_at"] is not None) == (wire.ST_SUCCESS, True)

    fleet(scenario)


# Final statuses ---------------------------------------------------------------------------------


def test_deregistration_ends_every_invocation_of_the_node(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        node = f.node("mi-00000000000000004")
        running = await f.send([node])
        await f.report(running, node, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        queued = await f.send([node])  # in its inbox, never acknowledged
        assert (await f.statuses(queued))[node][0] == wire.ST_IN_PROGRESS
        f.presence.deregister(node, 2)
        f.dispatcher.node_deregistered(node)
        await f.dispatcher.round()
        assert (await f.statuses(running))[node] == (wire.ST_CANCELLED, DETAIL_NODE_DEREGISTERED)
        assert (await f.statuses(queued))[node] == (
            wire.ST_UNDELIVERABLE,
            DETAIL_NODE_DEREGISTERED,
        )
        for command_id in (running, queued):
            command = await f.command(command_id)
            assert command["completed_at"] is not None
            assert command["status"] == wire.ST_FAILED
            assert not f.dispatcher.is_active(command_id)
        # A report that still comes (it cannot: the node's token is refused) changes nothing.
        f.dispatcher.agent_reported(running, node, wire.ST_SUCCESS, wire.ST_SUCCESS)
        await f.dispatcher.round()

    fleet(scenario)


def test_a_round_never_overwrites_a_result_stored_beside_it(fleet: Any) -> None:
    """The channel commits a node's Success before the dispatcher hears of it; a round that
    decides from memory meanwhile (the node went offline: Delayed) must not put the stored
    result back to a running status (the fault harness found Success rows turned InProgress)."""

    async def scenario(f: Fleet) -> None:
        node, other = f.node("mi-00000000000000009"), f.node("mi-00000000000000019")
        command_id = await f.send([node, other])
        async with f.db.transaction() as conn:  # the result, stored; the dispatcher not told yet
            await store.update_invocations_at(
                conn,
                {(command_id, node): {"status": wire.ST_SUCCESS, "status_details": "Success"}},
            )
        f.offline(node)
        # Another node's report makes a round; from memory the first is InProgress and
        # offline: Delayed.
        await f.report(command_id, other, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[node] == (wire.ST_SUCCESS, wire.ST_SUCCESS)

    fleet(scenario)


def test_a_deregistration_the_server_did_not_finish_is_finished_at_restart(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        node = f.node("mi-00000000000000005")
        command_id = await f.send([node])
        await f.report(command_id, node, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        f.presence.deregister(node, 2)  # committed, then the server stopped before its round
        f.dispatcher = f.new_dispatcher()
        await f.dispatcher.load()
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[node] == (
            wire.ST_CANCELLED,
            DETAIL_NODE_DEREGISTERED,
        )

    fleet(scenario)


def test_a_silent_node_times_out_after_its_timeout_and_the_grace(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        quiet, talks = f.node("mi-00000000000000006"), f.node("mi-00000000000000007")
        command_id = await f.send([quiet, talks])
        await f.report(command_id, quiet, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        await f.report(command_id, talks, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        f.clock.advance(EXECUTION + GRACE - 10)
        await f.report(command_id, talks, wire.ST_SUCCESS)
        f.dispatcher.sweep()
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[quiet][0] == wire.ST_IN_PROGRESS  # not yet
        f.clock.advance(20)
        f.dispatcher.sweep()
        await f.dispatcher.round()
        seen = await f.statuses(command_id)
        assert seen[quiet] == (wire.ST_TIMED_OUT, DETAIL_NO_REPORT)
        command = await f.command(command_id)
        assert (command["status"], command["status_details"]) == (
            wire.ST_TIMED_OUT,
            wire.DETAIL_EXECUTION_TIMED_OUT,
        )

    fleet(scenario)


def test_a_restart_gives_silent_nodes_their_grace_again(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        node = f.node("mi-00000000000000008")
        command_id = await f.send([node])
        await f.report(command_id, node, wire.ST_IN_PROGRESS)
        await f.dispatcher.round()
        # The server was down all that time, past the command's whole time even.
        f.clock.advance(DELIVERY + EXECUTION + GRACE + 60)
        f.dispatcher = f.new_dispatcher()
        await f.dispatcher.load()
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[node][0] == wire.ST_IN_PROGRESS
        f.clock.advance(GRACE + 1)
        f.dispatcher.sweep()
        await f.dispatcher.round()
        assert (await f.statuses(command_id))[node] == (wire.ST_TIMED_OUT, DETAIL_NO_REPORT)

    fleet(scenario)


# The loop ---------------------------------------------------------------------------------------


def test_delivery_timeouts_fire_while_reports_keep_the_loop_busy(fleet: Any) -> None:
    async def scenario(f: Fleet) -> None:
        busy, waiting = f.node("mi-00000000000000009"), f.node("mi-00000000000000010", False)
        chatty = await f.send([busy])
        await f.report(chatty, busy, wire.ST_IN_PROGRESS)
        stalled = await f.send([waiting])
        assert (await f.statuses(stalled))[waiting][0] == wire.ST_DELAYED
        f.clock.advance(DELIVERY + 1)  # only a timer pass can see that the deadline passed
        stop = asyncio.Event()

        async def reports() -> None:  # the channel handing the loop a report every few ms
            while not stop.is_set():
                f.dispatcher.agent_reported(chatty, busy, wire.ST_IN_PROGRESS, "InProgress")
                await asyncio.sleep(0.005)

        async def timed_out() -> bool:
            return (await f.statuses(stalled))[waiting][1] == wire.DETAIL_DELIVERY_TIMED_OUT

        async with asyncio.TaskGroup() as tg:
            loop = tg.create_task(f.dispatcher.run())
            feeder = tg.create_task(reports())
            try:
                await eventually(timed_out, "the delivery timeout fired under load")
            finally:
                stop.set()
                await feeder
                loop.cancel()

    fleet(scenario)


class FailingEvents(EventBus):
    """Events whose recording fails ``failures`` times: the round's transaction fails."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def record(self, conn: AsyncConnection, events: list[dict[str, Any]], now: float) -> None:
        if self.failures:
            self.failures -= 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        await super().record(conn, events, now)


def test_a_failed_round_is_decided_again_from_the_database(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    async def main() -> None:
        db = Database(load_config(server_dir.path).async_database_url)
        try:
            f = Fleet(db, clock, FailingEvents(failures=1))
            nodes = [f.node(f"mi-0000000000000002{i}") for i in range(3)]
            with pytest.raises(sa.exc.OperationalError):
                await f.send(nodes)
            seen = await f.statuses(f.last_command)
            assert all(s == (wire.ST_PENDING, wire.ST_PENDING) for s in seen.values())
            assert await f.inbox_size() == 0  # nothing half-applied
            await f.dispatcher.round()  # the next round rebuilds the command and sends
            command_id = f.last_command
            seen = await f.statuses(command_id)
            assert sorted(s[0] for s in seen.values()) == [
                wire.ST_IN_PROGRESS,
                wire.ST_PENDING,
                wire.ST_PENDING,
            ]
            assert await f.inbox_size() == 1  # sent once, not twice
        finally:
            await db.close()

    asyncio.run(main())


def test_a_command_whose_finishing_round_failed_still_ends(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    async def main() -> None:
        db = Database(load_config(server_dir.path).async_database_url)
        try:
            events = FailingEvents(failures=0)
            f = Fleet(db, clock, events)
            node = f.node("mi-00000000000000030")
            command_id = await f.send([node])
            await f.report(command_id, node, wire.ST_SUCCESS)  # stored by the channel
            events.failures = 1
            with pytest.raises(sa.exc.OperationalError):
                await f.dispatcher.round()
            assert (await f.command(command_id))["completed_at"] is None
            await f.dispatcher.round()  # rebuilt: every invocation final, the command ends
            command = await f.command(command_id)
            assert command["status"] == wire.ST_SUCCESS and command["completed_at"] is not None
            assert not f.dispatcher.is_active(command_id)
        finally:
            await db.close()

    asyncio.run(main())


def test_a_cancel_whose_round_failed_is_sent_after_all(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    async def main() -> None:
        db = Database(load_config(server_dir.path).async_database_url)
        try:
            events = FailingEvents(failures=0)
            f = Fleet(db, clock, events)
            node = f.node("mi-00000000000000031")
            command_id = await f.send([node])
            await f.report(command_id, node, wire.ST_IN_PROGRESS)
            await f.dispatcher.round()
            async with db.transaction() as conn:  # what CommandService.cancel writes
                await store.update_command(conn, command_id, cancel_requested_at=clock())
            f.dispatcher.cancel(command_id, None)
            events.failures = 1
            with pytest.raises(sa.exc.OperationalError):
                await f.dispatcher.round()
            await f.dispatcher.round()
            async with db.read() as conn:
                waiting = await messages.pending(conn, node, 100)
            assert wire.MSG_CANCEL_COMMAND in [m["type"] for m in waiting]
        finally:
            await db.close()

    asyncio.run(main())
