"""A change calendar's state at a time, and when it next changes (pure).

DEFAULT_OPEN: OPEN except during its events; DEFAULT_CLOSED: CLOSED except during them (as
SSM Change Calendar).  The next change is looked for up to HORIZON ahead; None: none within
it (a calendar with no more events stays as it is)."""

from __future__ import annotations

from typing import Final

from control_plane.services.calendars.events import Events, intervals

OPEN: Final = "OPEN"
CLOSED: Final = "CLOSED"
DEFAULT_OPEN: Final = "DEFAULT_OPEN"
DEFAULT_CLOSED: Final = "DEFAULT_CLOSED"
TYPES: Final = (DEFAULT_OPEN, DEFAULT_CLOSED)

LOOKBACK: Final = 400 * 86400.0  # an event that began this long ago still counts
HORIZON: Final = 2 * 366 * 86400.0


def state_at(calendar_type: str, events: Events, at: float) -> tuple[str, float | None]:
    """(OPEN or CLOSED at ``at``, the time it next changes or None)."""
    lookback = events.lookback or LOOKBACK
    found = intervals(events, at - lookback, at + HORIZON)
    inside = next((iv for iv in found if iv[0] <= at < iv[1]), None)
    if inside is not None:
        change: float | None = inside[1] if inside[1] < at + HORIZON else None
    else:
        change = next((iv[0] for iv in found if iv[0] > at), None)
    in_event = inside is not None
    closed = in_event if calendar_type == DEFAULT_OPEN else not in_event
    return (CLOSED if closed else OPEN), change
