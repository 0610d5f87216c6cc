"""The scheduler loop: while this server holds the lease, ask every job what is due.

A job is anything with a name and ``tick(now)``: it acts on what is due at ``now`` (each due
run claimed in the transaction that records it) and answers when it next wants to be asked
(None: nothing scheduled; it is asked again after ``idle`` seconds or when woken).  The API
wakes the loop when something changes (an association created, a window enabled), so a new
schedule does not wait for the idle interval.

Tests do not run the loop: they call ``tick(now)`` on a job, or :meth:`Scheduler.run_once`
with the time they choose, so nothing sleeps to wait for a schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from control_plane.services.clock import Clock
from control_plane.services.scheduling.lease import Lease

log = logging.getLogger("corral.scheduler")

IDLE_SECONDS = 30.0
MIN_SLEEP = 0.05


class ScheduledJob(Protocol):
    name: str

    async def tick(self, now: float) -> float | None:
        """Act on what is due at ``now``; the next time worth looking, or None."""
        ...


class Scheduler:
    def __init__(
        self,
        lease: Lease,
        clock: Clock,
        jobs: Sequence[ScheduledJob] = (),
        *,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self._lease = lease
        self._clock = clock
        self._jobs: list[ScheduledJob] = list(jobs)
        self._idle = idle
        self._woken = asyncio.Event()
        self._next: dict[str, float] = {}

    def add(self, job: ScheduledJob) -> None:
        self._jobs.append(job)

    def wake(self, job: str | None = None) -> None:
        """Something changed (a schedule created or edited): look again now (every job, or
        only the one named)."""
        if job is None:
            self._next.clear()
        else:
            self._next.pop(job, None)
        self._woken.set()

    @property
    def jobs(self) -> list[ScheduledJob]:
        return list(self._jobs)

    async def run_once(self, now: float | None = None) -> float:
        """One pass: tick every job that is due (all of them when woken); the time of the
        next pass.  Only while the lease is held."""
        now = self._clock() if now is None else now
        if not await self._lease.acquire():
            return now + min(self._idle, self._lease.seconds / 3)
        wake = now + min(self._idle, self._lease.seconds / 3)
        for job in self._jobs:
            due = self._next.get(job.name, now)
            if due <= now:
                if not self._lease.held():  # renewing failed long enough: stop acting
                    break
                wanted = await job.tick(now)
                due = wanted if wanted is not None else now + self._idle
                self._next[job.name] = due
            wake = min(wake, due)
        return wake

    async def run(self, passed: Callable[[], None] = lambda: None) -> None:
        """The loop (under the server's supervisor: an exception restarts it after backoff)."""
        try:
            while True:
                self._woken.clear()
                wake = await self.run_once()
                passed()
                delay = max(MIN_SLEEP, wake - self._clock())
                try:
                    async with asyncio.timeout(delay):
                        await self._woken.wait()
                except TimeoutError:
                    pass
        finally:
            if self._lease.held():
                await asyncio.shield(self._lease.release())
