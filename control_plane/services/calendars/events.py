"""A change calendar's events as time intervals: from an iCalendar text (RRULEs expanded by
``recurring-ical-events``, on top of ``icalendar``) or from a schedule expression and a
duration.  Times without a zone (floating times, all-day dates) are in the calendar's zone.

Everything is pure: :func:`intervals` answers the merged intervals that touch
[start, end), so overlapping or adjoining events are one closed (or open) period.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from agent.errors import ScheduleError
from agent.schedules import Schedule, fire_times, parse
from control_plane.errors import InvalidRequest

MAX_ICS_BYTES = 512 * 1024
MAX_EVENTS = 5000  # occurrences looked at per question (a rate() schedule is capped here)
Interval = tuple[float, float]


@dataclass(frozen=True)
class Events:
    """Where a calendar's events come from: exactly one of ``ics`` and ``schedule``."""

    zone: str
    ics: Any = None  # a parsed icalendar.Calendar
    schedule: Schedule | None = None
    duration: float = 0.0  # seconds, with ``schedule``
    anchor: float | None = None  # what rate() counts from (the calendar's creation)

    @property
    def lookback(self) -> float | None:
        """How far back an event that still covers a time can have started (None: the
        caller's bound; iCalendar events may last anything)."""
        return self.duration + 1.0 if self.schedule is not None else None


def parse_ics(text: str) -> Any:
    """The parsed calendar; a one-line InvalidRequest when it is not iCalendar."""
    import icalendar

    if len(text.encode()) > MAX_ICS_BYTES:
        raise InvalidRequest(f"the iCalendar file is larger than {MAX_ICS_BYTES // 1024} KiB")
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else "unreadable"
        raise InvalidRequest(f"the events file is not iCalendar (RFC 5545): {first}") from None
    if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
        raise InvalidRequest("the events file is not iCalendar: no VCALENDAR")
    if not calendar.walk("VEVENT"):
        raise InvalidRequest("the events file has no VEVENT")
    return calendar


def parse_schedule(expression: str, hours: object) -> tuple[Schedule, float]:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 31:
        raise InvalidRequest("duration must be more than 0 and at most 744 hours (31 days)")
    try:
        schedule = parse(expression, "window")
    except ScheduleError as exc:
        raise InvalidRequest(exc.message) from None
    return schedule, float(hours) * 3600.0


def intervals(events: Events, start: float, end: float) -> list[Interval]:
    """The merged event intervals that overlap [start, end), in order."""
    raw = _ics(events, start, end) if events.ics is not None else _scheduled(events, start, end)
    merged: list[list[float]] = []
    for begin, finish in sorted(raw):
        if finish <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finish)
        else:
            merged.append([begin, finish])
    return [(a, b) for a, b in merged if b > start and a < end]


def _scheduled(events: Events, start: float, end: float) -> list[Interval]:
    assert events.schedule is not None
    out: list[Interval] = []
    after = start - events.duration - 1.0
    while len(out) < MAX_EVENTS:
        batch = fire_times(
            events.schedule,
            after,
            events.zone,
            min(500, MAX_EVENTS - len(out)),
            anchor=events.anchor,
        )
        for fire in batch:
            if fire >= end:
                return out
            out.append((fire, fire + events.duration))
        if not batch:
            return out
        after = batch[-1]
    # Capped: events go on past what was looked at; say so as one period to ``end``.
    out.append((out[-1][0], end))
    return out


def _ics(events: Events, start: float, end: float) -> list[Interval]:
    import recurring_ical_events

    zone = zoneinfo.ZoneInfo(events.zone)
    lo = dt.datetime.fromtimestamp(start, dt.UTC)
    hi = dt.datetime.fromtimestamp(end, dt.UTC)
    out: list[Interval] = []
    for event in recurring_ical_events.of(events.ics).between(lo, hi):
        begin = _epoch(event["DTSTART"].dt, zone)
        if "DTEND" in event:
            finish = _epoch(event["DTEND"].dt, zone)
        elif "DURATION" in event:
            finish = begin + event["DURATION"].dt.total_seconds()
        else:  # RFC 5545: a date lasts the day; a date-time without end is an instant
            value = event["DTSTART"].dt
            finish = begin + (86400.0 if not isinstance(value, dt.datetime) else 0.0)
        out.append((begin, finish))
        if len(out) >= MAX_EVENTS:
            break
    return out


def _epoch(value: dt.date | dt.datetime, zone: zoneinfo.ZoneInfo) -> float:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.timestamp()
