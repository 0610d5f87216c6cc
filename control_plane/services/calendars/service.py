"""Change calendars (SSM Change Calendar): named OPEN/CLOSED periods that gate work.

Associations, maintenance windows and Run Command ask :meth:`CalendarService.closed_reason`
before they run something gated by calendars: None when every calendar named is OPEN, else
the reason (``change calendar freeze is CLOSED until 2027-01-02T00:00:00Z``), which becomes
the run's Skipped status details.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.errors import ScheduleError
from agent.schedules import check_zone
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.calendars.events import Events, parse_ics, parse_schedule
from control_plane.services.calendars.state import CLOSED, TYPES, state_at
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.validation import check_text
from control_plane.store import calendars as store
from control_plane.store.db import Database

_NAME = re.compile(r"[a-zA-Z0-9_\-.]{3,128}")
MAX_GATING_CALENDARS = 10


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"calendar name {name[:140]!r} must be 3 to 128 characters of letters, digits, _ - ."
        )
    return name


def _events(row: dict[str, Any]) -> Events:
    if row["ics"] is not None:
        return Events(zone=row["timezone"], ics=parse_ics(row["ics"]))
    schedule, seconds = parse_schedule(row["schedule"], row["duration"])
    return Events(
        zone=row["timezone"],
        schedule=schedule,
        duration=seconds,
        anchor=float(int(row["created_at"])),
    )


class CalendarService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._parsed: dict[tuple[str, float], Events] = {}  # (name, modified_at) -> events

    async def create(
        self,
        *,
        created_by: str,
        name: str,
        calendar_type: str = "DEFAULT_OPEN",
        ics: str | None = None,
        schedule: str | None = None,
        duration: float | None = None,
        timezone: str = "UTC",
        description: str = "",
    ) -> dict[str, Any]:
        check_name(name)
        check_text("description", description, 256)
        if calendar_type not in TYPES:
            raise InvalidRequest(
                f"calendar type {calendar_type[:32]!r} must be {' or '.join(TYPES)}"
            )
        try:
            check_zone(timezone)
        except ScheduleError as exc:
            raise InvalidRequest(exc.message) from None
        if (ics is None) == (schedule is None):
            raise InvalidRequest("give the events either as an iCalendar file or as a schedule")
        if schedule is not None and duration is None:
            raise InvalidRequest("a schedule needs a duration (hours each event lasts)")
        if ics is not None and duration is not None:
            raise InvalidRequest("a duration goes with a schedule, not with an iCalendar file")
        now = self._clock()
        row: dict[str, Any] = {
            "name": name,
            "calendar_type": calendar_type,
            "description": description,
            "ics": ics,
            "schedule": schedule,
            "duration": float(duration) if duration is not None else None,
            "timezone": timezone,
            "created_at": now,
            "modified_at": now,
            "created_by": created_by,
        }
        _events(row)  # every check of the events, before anything is stored
        async with self._db.transaction() as conn:
            if await store.get(conn, name) is not None:
                raise Conflict(f"calendar {name} already exists")
            await store.insert(conn, row)
        return self._view(row, now)

    async def _row(self, name: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get(conn, name)
        if row is None:
            raise NotFound(f"calendar {name} not found")
        return row

    def _parsed_events(self, row: dict[str, Any]) -> Events:
        key = (row["name"], row["modified_at"])
        if key not in self._parsed:
            if len(self._parsed) > 1000:
                self._parsed.clear()
            self._parsed[key] = _events(row)
        return self._parsed[key]

    def _state(self, row: dict[str, Any], at: float) -> tuple[str, float | None]:
        return state_at(row["calendar_type"], self._parsed_events(row), at)

    def _view(self, row: dict[str, Any], at: float) -> dict[str, Any]:
        state, change = self._state(row, at)
        return {
            "name": row["name"],
            "type": row["calendar_type"],
            "description": row["description"],
            "source": "ics" if row["ics"] is not None else "schedule",
            "schedule": row["schedule"],
            "duration_hours": None if row["duration"] is None else row["duration"],
            "timezone": row["timezone"],
            "state": state,
            "at": rfc3339(at),
            "next_transition_time": rfc3339(change),
            "created_at": rfc3339(row["created_at"]),
            "created_by": row["created_by"],
        }

    async def get(self, name: str, at: float | None = None) -> dict[str, Any]:
        """The calendar, its state at ``at`` (now) and when that changes."""
        return self._view(await self._row(name), self._clock() if at is None else at)

    async def state(self, name: str, at: float) -> tuple[str, float | None]:
        """(OPEN or CLOSED, the next change or None)."""
        return self._state(await self._row(name), at)

    async def list_page(
        self,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
        visible: Callable[[str], bool] = lambda _name: True,
    ) -> paging.Page[dict[str, Any]]:
        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            async with self._db.read() as conn:
                return await store.list_after(conn, n, None if after is None else str(after[0]))

        page = await paging.scan(
            fetch,
            key=lambda r: (r["name"],),
            limit=limit,
            next_token=next_token,
            shape=(str,),
            visible=lambda r: visible(r["name"]),
        )
        now = self._clock()
        return paging.Page([self._view(r, now) for r in page.items], page.next_token)

    async def delete(self, name: str) -> None:
        async with self._db.transaction() as conn:
            if not await store.delete(conn, name):
                raise NotFound(f"calendar {name} not found")

    async def check_names(self, names: list[str]) -> list[str]:
        """For who stores calendar names (an association, a window): each exists."""
        if len(names) > MAX_GATING_CALENDARS:
            raise InvalidRequest(f"at most {MAX_GATING_CALENDARS} change calendars")
        async with self._db.read() as conn:
            found = await store.get_many(conn, list(names))
        missing = [n for n in names if n not in found]
        if missing:
            raise InvalidRequest(f"change calendar {missing[0][:128]} does not exist")
        return list(names)

    async def closed_reason(self, names: list[str], at: float) -> str | None:
        """None when every calendar in ``names`` is OPEN at ``at``; else why not (the first
        CLOSED one, with when it opens).  A calendar deleted since it was named counts as
        CLOSED: work gated by a calendar never runs unchecked."""
        if not names:
            return None
        async with self._db.read() as conn:
            rows = await store.get_many(conn, list(names))
        for name in names:
            row = rows.get(name)
            if row is None:
                return f"change calendar {name} does not exist (deleted?): not run"
            state, change = self._state(row, at)
            if state == CLOSED:
                until = f"until {rfc3339(change)}" if change is not None else "with no end ahead"
                return f"change calendar {name} is CLOSED {until}"
        return None
