"""Supervised background loops: a loop that fails is logged, counted and run again after a
backoff; it never ends the server's task group.

Each loop of the server (the dispatcher with its timers, webhook delivery, the channel's
writer, housekeeping, audit upkeep, parameter policies) runs under :meth:`Supervisor.run`.
An exception (a database error, "database is locked", a bug) is logged with its traceback
and counted, and the loop starts again after ``backoff_base * 2**(n-1)`` seconds (capped),
n being its failures within the last ``window`` seconds: a loop that fails on every pass,
or on every other one, backs off alike.

``/readyz`` asks :meth:`Supervisor.failing`: a loop that failed ``failing_after`` times
within the window, or that reports its passes (``passed()``) and has completed none for
``stale_after`` seconds, makes the server not ready, by name.  The loop is ready again once
its failures age out of the window (or, stale, at its next pass).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("corral.supervise")

Passed = Callable[[], None]
Body = Callable[[Passed], Awaitable[None]]

BACKOFF_BASE = 1.0
BACKOFF_CAP = 10.0  # a recovered database is used again within seconds
FAILING_AFTER = 3
WINDOW = 300.0


@dataclass
class LoopHealth:
    name: str
    stale_after: float | None = None  # a loop that reports passes: at most this between two
    failures: int = 0
    recent: deque[float] = field(default_factory=deque)  # failure times within the window
    last_error: str | None = None
    last_failure_at: float | None = None
    last_pass_at: float | None = None
    started_at: float | None = None


class Supervisor:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        failing_after: int = FAILING_AFTER,
        window: float = WINDOW,
    ) -> None:
        self._clock = clock
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.failing_after = failing_after
        self.window = window
        self.loops: dict[str, LoopHealth] = {}

    def backoff(self, failures: int) -> float:
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1)))

    def _recent(self, health: LoopHealth, now: float) -> int:
        while health.recent and now - health.recent[0] >= self.window:
            health.recent.popleft()
        return len(health.recent)

    async def run(self, name: str, body: Body, *, stale_after: float | None = None) -> None:
        """Run ``body(passed)`` until cancelled, again after each failure."""
        health = self.loops.setdefault(name, LoopHealth(name, stale_after))

        def passed() -> None:
            health.last_pass_at = self._clock()

        while True:
            health.started_at = self._clock()
            try:
                await body(passed)
                error = "the loop returned"  # a loop runs until cancelled: a bug
                log.error("background loop ended; starting it again", extra={"loop": name})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # what the loop could not handle: count it, go on
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception(
                    "background loop failed; starting it again",
                    extra={"loop": name, "error": error},
                )
            now = self._clock()
            health.failures += 1
            health.recent.append(now)
            health.last_error = error
            health.last_failure_at = now
            await asyncio.sleep(self.backoff(self._recent(health, now)))

    def failing(self) -> list[dict[str, Any]]:
        """The loops that keep failing (or have stopped completing passes), for readiness."""
        now = self._clock()
        out: list[dict[str, Any]] = []
        for health in self.loops.values():
            why = self._why_failing(health, now)
            if why is not None:
                out.append(
                    {
                        "loop": health.name,
                        "why": why,
                        "recent_failures": len(health.recent),
                        "failures": health.failures,
                    }
                )
        return out

    def _why_failing(self, health: LoopHealth, now: float) -> str | None:
        recent = self._recent(health, now)
        if recent >= self.failing_after:
            return f"failed {recent} times in the last {self.window:g} s"
        if health.stale_after is not None and health.started_at is not None:
            progress = max(health.last_pass_at or health.started_at, health.started_at)
            if now - progress > health.stale_after:
                return f"no pass completed in {now - progress:.0f} s"
        return None
