"""The scheduler's lease: one server acts on schedules at a time; another takes over only once
the holder's lease has expired (or it gave it up); a holder that cannot renew stops acting.
Two schedulers on one database, a clock the test moves."""

from __future__ import annotations

import asyncio

from control_plane.config import load_config
from control_plane.services.scheduling import Lease, Scheduler
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from tests.unit.conftest import FakeClock, ServerDir


class Counting:
    name = "counting"

    def __init__(self) -> None:
        self.ticks = 0

    async def tick(self, now: float) -> float | None:
        self.ticks += 1
        return None


def database(server_dir: ServerDir) -> Database:
    config = load_config(server_dir.path)
    upgrade(config.sync_database_url)
    return Database(config.async_database_url)


def test_one_holder_at_a_time_and_a_takeover_after_expiry(
    server_dir: ServerDir, clock: FakeClock
) -> None:
    async def scenario() -> None:
        db = database(server_dir)
        first, second = Lease(db, clock, holder="a"), Lease(db, clock, holder="b")
        assert await first.acquire() and first.held()
        assert not await second.acquire() and not second.held()
        clock.advance(20)
        assert await first.acquire(), "the holder renews"
        clock.advance(20)
        assert not await second.acquire(), "renewed 20 s ago: still held"
        clock.advance(15)  # 35 s after the last renewal: expired
        assert not first.held(), "a holder that could not renew stops acting"
        assert await second.acquire()
        assert not await first.acquire(), "the old holder does not take it back"
        await second.release()
        assert await first.acquire(), "given up: taken at once"
        await db.close()

    asyncio.run(scenario())


def test_only_the_holder_ticks_its_jobs(server_dir: ServerDir, clock: FakeClock) -> None:
    async def scenario() -> None:
        db = database(server_dir)
        jobs = Counting(), Counting()
        one = Scheduler(Lease(db, clock, holder="a"), clock, [jobs[0]])
        two = Scheduler(Lease(db, clock, holder="b"), clock, [jobs[1]])
        for _ in range(3):
            await one.run_once()
            await two.run_once()
            clock.advance(31)
        assert jobs[0].ticks == 3 and jobs[1].ticks == 0
        await db.close()

    asyncio.run(scenario())
