"""``corral calendars``: change calendars (SSM Change Calendar)."""

from __future__ import annotations

from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, pass_runtime
from control_plane.cli.mw import outputs
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field

COLUMNS: list[Column] = [
    field("name"),
    field("type"),
    field("source"),
    field("state"),
    field("next_transition_time"),
]
FIELDS = ["name", "type", "state", "at", "next_transition_time", "source", "schedule"]
MAX_ICS_BYTES = 512 * 1024


def _path(name: str, *rest: str) -> str:
    return "/".join(["/v1/calendars", quote(name, safe=""), *rest])


def _read_ics(path: str) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_ICS_BYTES + 1)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}", param_hint="--events"
        ) from None
    if len(data) > MAX_ICS_BYTES:
        raise click.BadParameter(f"{path} is larger than 512 KiB", param_hint="--events")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="--events") from None


@click.group()
def calendars() -> None:
    """Change calendars: OPEN/CLOSED periods that gate associations, windows and commands."""


@calendars.command()
@click.option("--name", required=True, help="3-128 characters: letters, digits, _ - .")
@click.option("--events", "events_file", default=None, metavar="FILE.ics", help="iCalendar.")
@click.option("--schedule", default=None, metavar="EXPR", help="When each event starts.")
@click.option("--duration", type=float, default=None, metavar="HOURS", help="With --schedule.")
@click.option(
    "--type",
    "calendar_type",
    type=click.Choice(["DEFAULT_OPEN", "DEFAULT_CLOSED"]),
    default="DEFAULT_OPEN",
    show_default=True,
    help="DEFAULT_OPEN: events close it; DEFAULT_CLOSED: events open it.",
)
@click.option("--tz", "timezone", default="UTC", show_default=True, help="An IANA time zone.")
@click.option("--description", default="")
@outputs
@pass_runtime
def create(
    rt: Runtime,
    name: str,
    events_file: str | None,
    schedule: str | None,
    duration: float | None,
    calendar_type: str,
    timezone: str,
    description: str,
    output: str,
) -> None:
    """Create a change calendar from an iCalendar file or a schedule and a duration."""
    if (events_file is None) == (schedule is None):
        raise click.UsageError("give either --events FILE.ics or --schedule EXPR --duration H")
    if schedule is not None and duration is None:
        raise click.UsageError("--schedule needs --duration HOURS")
    body = {
        "name": name,
        "calendar_type": calendar_type,
        "ics": _read_ics(events_file) if events_file is not None else None,
        "schedule": schedule,
        "duration": duration,
        "timezone": timezone,
        "description": description,
    }
    with rt.client() as api:
        emit_object(api.post("/v1/calendars", body), output, FIELDS)


@calendars.command("list")
@max_items_option
@outputs
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List change calendars with their state now."""
    with rt.client() as api:
        emit_list(api.get_list("/v1/calendars", "calendars", max_items=max_items), COLUMNS, output)


@calendars.command()
@click.argument("name")
@outputs
@pass_runtime
def show(rt: Runtime, name: str, output: str) -> None:
    """A calendar, its state now and its next transition."""
    with rt.client() as api:
        emit_object(api.get(_path(name)), output, FIELDS)


@calendars.command()
@click.argument("name")
@click.option("--at", "at", default=None, metavar="TIME", help="ISO 8601 (default: now).")
@outputs
@pass_runtime
def state(rt: Runtime, name: str, at: str | None, output: str) -> None:
    """OPEN or CLOSED (now, or at TIME), and when that changes."""
    with rt.client() as api:
        found = api.get(_path(name, "state"), params={"at": at} if at else None)
    nxt = found["next_transition_time"] or "no change ahead"
    emit_message(f"{found['name']}: {found['state']} (next change: {nxt})", found, output)


@calendars.command()
@click.argument("name")
@outputs
@pass_runtime
def delete(rt: Runtime, name: str, output: str) -> None:
    """Delete a change calendar."""
    with rt.client() as api:
        result = api.delete(_path(name))
    emit_message(f"deleted calendar {name}", result, output)
