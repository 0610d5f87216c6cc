"""Change calendars: OPEN/CLOSED from iCalendar events (with RRULEs, all-day events and
zones) or from a schedule and a duration, the next transition, closed_reason() as the gated
work reads it, and bad input refused with nothing stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from control_plane.services.calendars.events import Events, parse_ics, parse_schedule
from control_plane.services.calendars.state import state_at
from tests.unit.conftest import Api, RunApi, assert_error

FREEZE = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//corral tests//EN
BEGIN:VEVENT
UID:freeze-1
DTSTART:20261224T000000Z
DTEND:20270102T000000Z
SUMMARY:year-end freeze
END:VEVENT
BEGIN:VEVENT
UID:standup-1
DTSTART;TZID=Europe/Berlin:20261207T090000
DURATION:PT2H
RRULE:FREQ=WEEKLY;BYDAY=MO
SUMMARY:weekly release review
END:VEVENT
BEGIN:VEVENT
UID:holiday-1
DTSTART;VALUE=DATE:20270301
SUMMARY:all day
END:VEVENT
END:VCALENDAR
"""


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ics_events(zone: str = "UTC") -> Events:
    return Events(zone=zone, ics=parse_ics(FREEZE))


@pytest.mark.parametrize(
    ("when", "state", "change"),
    [
        ("2026-12-20T12:00:00+00:00", "OPEN", "2026-12-21T08:00:00Z"),  # Monday 09:00 Berlin
        ("2026-12-21T08:30:00+00:00", "CLOSED", "2026-12-21T10:00:00Z"),
        ("2026-12-25T00:00:00+00:00", "CLOSED", "2027-01-02T00:00:00Z"),  # the freeze
        # The freeze and a Monday review overlap: one closed period.
        ("2026-12-28T08:30:00+00:00", "CLOSED", "2027-01-02T00:00:00Z"),
        ("2027-01-02T00:00:00+00:00", "OPEN", "2027-01-04T08:00:00Z"),
        # The all-day event is a day in the calendar's zone; a review (09:00 Berlin) in it.
        ("2027-03-01T12:00:00+00:00", "CLOSED", "2027-03-02T00:00:00Z"),
    ],
)
def test_a_default_open_calendar_is_closed_during_its_events(
    when: str, state: str, change: str
) -> None:
    found, nxt = state_at("DEFAULT_OPEN", ics_events(), at(when))
    assert (found, iso(nxt)) == (state, change)


def test_a_default_closed_calendar_is_open_only_during_its_events() -> None:
    schedule, seconds = parse_schedule("cron(0 22 ? * SAT *)", 4)
    events = Events(zone="Europe/Berlin", schedule=schedule, duration=seconds)
    # Saturday 2027-01-09 22:00 Berlin (21:00 UTC) for four hours.
    assert state_at("DEFAULT_CLOSED", events, at("2027-01-09T20:59:00+00:00")) == (
        "CLOSED",
        at("2027-01-09T21:00:00+00:00"),
    )
    assert state_at("DEFAULT_CLOSED", events, at("2027-01-09T23:00:00+00:00")) == (
        "OPEN",
        at("2027-01-10T01:00:00+00:00"),
    )


def test_overlapping_scheduled_events_merge() -> None:
    schedule, seconds = parse_schedule("rate(1 hour)", 2)
    events = Events(zone="UTC", schedule=schedule, duration=seconds)
    state, change = state_at("DEFAULT_OPEN", events, at("2027-01-09T20:30:00+00:00"))
    assert state == "CLOSED" and change is None  # closed for as far as it looks


async def create(api: Api, **fields: Any) -> Any:
    body = {"name": "freeze", **fields}
    return await api.client.post("/v1/calendars", json=body, headers=api.admin)


def test_closed_reason_names_the_calendar_and_when_it_opens(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        made = await create(api, ics=FREEZE)
        assert made.status_code == 201, made.text
        made = await create(api, name="weekends", schedule="cron(0 0 ? * SAT *)", duration=48)
        assert made.status_code == 201, made.text
        calendars = api.cp.calendars
        inside = at("2026-12-30T12:00:00+00:00")  # a Wednesday in the freeze
        assert await calendars.closed_reason(["weekends", "freeze"], inside) == (
            "change calendar freeze is CLOSED until 2027-01-02T00:00:00.000Z"
        )
        assert await calendars.closed_reason(["weekends"], inside) is None
        assert await calendars.closed_reason([], inside) is None
        saturday = at("2027-01-09T12:00:00+00:00")
        reason = await calendars.closed_reason(["freeze", "weekends"], saturday)
        assert reason == "change calendar weekends is CLOSED until 2027-01-11T00:00:00.000Z"
        assert "does not exist" in str(await calendars.closed_reason(["gone"], inside))
        state = await api.client.get(
            "/v1/calendars/freeze/state",
            params={"at": "2026-12-30T12:00:00Z"},
            headers=api.admin,
        )
        assert state.status_code == 200, state.text
        assert state.json()["state"] == "CLOSED"
        assert state.json()["next_transition_time"] == "2027-01-02T00:00:00.000Z"
        listed = await api.client.get("/v1/calendars", headers=api.admin)
        assert [c["name"] for c in listed.json()["calendars"]] == ["freeze", "weekends"]
        gone = await api.client.delete("/v1/calendars/freeze", headers=api.admin)
        assert gone.status_code == 200, gone.text
        assert_error(
            await api.client.get("/v1/calendars/freeze", headers=api.admin), 404, "not_found"
        )

    run_api(scenario)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"ics": "not a calendar"}, "iCalendar"),
        ({"ics": "BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n"}, "VEVENT"),
        ({"schedule": "cron(0 2 ? * ? *)", "duration": 1}, "?"),
        ({"schedule": "rate(1 hour)"}, "duration"),
        ({"schedule": "rate(1 hour)", "duration": 0}, "duration"),
        ({"ics": FREEZE, "schedule": "rate(1 hour)", "duration": 1}, "either"),
        ({}, "either"),
        ({"ics": FREEZE, "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"ics": FREEZE, "calendar_type": "SOMETIMES"}, "SOMETIMES"),
        ({"ics": FREEZE, "name": "a b"}, "name"),
        ({"ics": FREEZE, "name": "ab"}, "name"),
    ],
)
def test_bad_calendars_are_refused_and_nothing_is_stored(
    run_api: RunApi, fields: dict[str, Any], says: str
) -> None:
    async def scenario(api: Api) -> None:
        message = assert_error(await create(api, **fields), 400, "invalid_request")
        assert "\n" not in message and says in message, message
        listed = await api.client.get("/v1/calendars", headers=api.admin)
        assert listed.json()["calendars"] == []

    run_api(scenario)


def test_a_calendar_name_is_taken_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert (await create(api, ics=FREEZE)).status_code == 201
        assert_error(await create(api, ics=FREEZE), 409, "conflict")

    run_api(scenario)


def test_a_bad_time_is_refused(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        assert (await create(api, ics=FREEZE)).status_code == 201
        response = await api.client.get(
            "/v1/calendars/freeze/state", params={"at": "tomorrow"}, headers=api.admin
        )
        assert "tomorrow" in assert_error(response, 400, "invalid_request")

    run_api(scenario)
