"""`corral schedule next EXPR`: the next fire times of a schedule expression, checked
before anyone trusts it.  Runs locally (agent.schedules), no server needed.

    corral schedule next 'cron(0 2 ? * SUN *)' --tz Europe/Berlin --after 2027-03-27T12:00:00

prints each fire time in the zone (ISO 8601 with its offset) and in UTC.  ``--after`` is a
wall-clock time in the zone (default: now); a time that a DST change repeats is its first
occurrence.  ``--purpose association`` applies State Manager's stricter rules.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import click

from control_plane.cli.context import output_option
from control_plane.cli.errors import CliError

if TYPE_CHECKING:
    import zoneinfo

    from agent.schedules import Purpose


@click.group()
def schedule() -> None:
    """Check AWS-style schedule expressions: cron(...), rate(...), at(...)."""


@schedule.command("next")
@click.argument("expression")
@click.option(
    "--tz", "zone_name", default="UTC", show_default=True, metavar="ZONE", help="IANA time zone."
)
@click.option(
    "--after",
    metavar="YYYY-MM-DDTHH:MM:SS",
    help="Start after this local time in the zone (default: now).",
)
@click.option(
    "--count", type=click.IntRange(1, 1000), default=5, show_default=True, help="How many."
)
@click.option(
    "--purpose",
    type=click.Choice(["association", "window"]),
    default="window",
    show_default=True,
    help="Whose rules: associations take fewer expressions than maintenance windows.",
)
@click.option(
    "--schedule-offset",
    "offset_days",
    type=click.IntRange(0, 6),
    default=0,
    show_default=True,
    metavar="DAYS",
    help="Run N days after each cron time (cron only, 1-6).",
)
@output_option
@click.option("--json", "as_json", is_flag=True, help="Same as --output json.")
def next_(
    expression: str,
    zone_name: str,
    after: str | None,
    count: int,
    purpose: Purpose,
    offset_days: int,
    output: str,
    as_json: bool,
) -> None:
    """Print the next fire times of EXPRESSION, in the zone and in UTC."""
    from agent.errors import ScheduleError
    from agent.schedules import check_zone, fire_times, parse
    from control_plane.cli.output import emit_json, emit_list, field

    try:
        zone = check_zone(zone_name)
        start = _start(after, zone)
        s = parse(expression, purpose)
        fires = fire_times(s, start, zone_name, count, offset_days=offset_days)
    except ScheduleError as exc:
        raise CliError(exc.message) from exc
    rows = [_row(t, zone) for t in fires]
    if as_json or output == "json":
        emit_json(
            {
                "expression": s.expression,
                "kind": s.kind,
                "purpose": purpose,
                "zone": zone_name,
                "after": _local(start, zone),
                "schedule_offset": offset_days,
                "fires": rows,
            }
        )
        return
    if not rows:
        click.echo(f"{s.expression} does not fire after {_local(start, zone)} ({zone_name})")
        return
    emit_list(rows, [field("local"), field("utc")], output)


def _start(after: str | None, zone: zoneinfo.ZoneInfo) -> float:
    if after is None:
        return time.time()
    try:
        when = dt.datetime.fromisoformat(after.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(
            f"{after!r} is not a date and time like 2027-03-27T12:00:00", param_hint="--after"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.timestamp()


def _local(epoch: float, zone: zoneinfo.ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(epoch, zone).isoformat(timespec="seconds")


def _row(epoch: float, zone: zoneinfo.ZoneInfo) -> dict[str, object]:
    utc = dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")
    return {"local": _local(epoch, zone), "utc": utc.replace("+00:00", "Z"), "epoch": epoch}
