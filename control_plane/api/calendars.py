"""/v1/calendars: change calendars (operator)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import InvalidRequest
from control_plane.services import audit_context
from control_plane.services.calendars.events import MAX_ICS_BYTES
from control_plane.services.clock import rfc3339

router = APIRouter(prefix="/v1/calendars", tags=["change calendars"])

CALENDAR = "calendar/{name}"
At = Annotated[
    str | None,
    Query(max_length=64, description="An ISO 8601 time (UTC unless it has an offset)."),
]


class CreateCalendar(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(max_length=256)
    calendar_type: StrictStr = Field("DEFAULT_OPEN", max_length=16)
    ics: StrictStr | None = Field(None, max_length=MAX_ICS_BYTES)
    schedule: StrictStr | None = Field(None, max_length=256)
    duration: StrictFloat | StrictInt | None = None
    timezone: StrictStr = Field("UTC", max_length=64)
    description: StrictStr = Field("", max_length=256)


def _at(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"at {text[:64]!r} is not an ISO 8601 time (2027-01-01T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@router.post("", status_code=201)
async def create(
    body: CreateCalendar,
    cp: CP,
    caller: Annotated[Caller, allow("calendars:Create", per_item=True, redact=("ics",))],
) -> dict[str, Any]:
    await caller.require("calendars:Create", f"calendar/{body.name}")
    audit_context.name_resource(f"calendar/{body.name}")
    return await cp.calendars.create(created_by=caller.operator.name, **body.model_dump())


@router.get("")
async def list_calendars(
    cp: CP,
    caller: Annotated[Caller, allow("calendars:List", per_item=True)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Calendars by name with their state now, a page at a time."""
    page = await cp.calendars.list_page(
        limit=limit,
        next_token=next_token,
        visible=lambda name: caller.allowed("calendars:List", f"calendar/{name}"),
    )
    return body("calendars", page)


@router.get("/{name}")
async def show(
    name: str, cp: CP, _caller: Annotated[Caller, allow("calendars:Get", CALENDAR)], at: At = None
) -> dict[str, Any]:
    """The calendar, its state now (or ``at``) and when that next changes."""
    return await cp.calendars.get(name, _at(at))


@router.get("/{name}/state")
async def state(
    name: str, cp: CP, _caller: Annotated[Caller, allow("calendars:Get", CALENDAR)], at: At = None
) -> dict[str, Any]:
    """OPEN or CLOSED at ``at`` (now), and the next transition (SSM's GetCalendarState)."""
    when = _at(at)
    when = cp.clock() if when is None else when
    found, change = await cp.calendars.state(name, when)
    return {
        "name": name,
        "state": found,
        "at": rfc3339(when),
        "next_transition_time": rfc3339(change),
    }


@router.delete("/{name}")
async def delete(
    name: str, cp: CP, _caller: Annotated[Caller, allow("calendars:Delete", CALENDAR)]
) -> dict[str, Any]:
    await cp.calendars.delete(name)
    return {"deleted": name}
