"""Time, injectable so tests can advance it instead of sleeping."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

Clock = Callable[[], float]
system_clock: Clock = time.time


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
