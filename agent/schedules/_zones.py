"""IANA time zones, and local wall-clock times that DST skips or repeats.

A wall-clock time skipped by a spring-forward change (02:30 in Berlin on 2027-03-28) is
read as the first instant after the gap (03:00), as Vixie and Debian cron run such a job;
a time repeated by a fall-back change (01:30 twice) is its first occurrence.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from agent.errors import ScheduleError

UTC = dt.UTC


def check_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone named ``name`` (``Europe/Berlin``, ``UTC``), or ScheduleError."""
    return _zone(name)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    if not name or name != name.strip():
        raise ScheduleError(f"time zone {name!r} is not an IANA name such as Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)"
        ) from exc


def is_skipped(local: dt.datetime) -> bool:
    """True if the aware ``local`` wall-clock time does not exist (a DST gap)."""
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) != local.replace(
        tzinfo=None
    )


def resolve(wall: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """The instant of the naive wall-clock time ``wall`` in ``zone`` (see the module doc)."""
    local = wall.replace(tzinfo=zone, fold=0)
    if not is_skipped(local):
        return local
    # In a gap: walk forward a minute at a time to the first wall time that exists (gaps
    # begin and end on whole minutes in every zone of the tz database).  Seconds ride
    # along: a cron(24 30 2 ...) slot skipped at 02:30 fires at 03:00:24, as it does
    # without an offset (the cron slot moves to 03:00, then its seconds are added).
    probe = local
    while is_skipped(probe):
        probe = (probe.replace(tzinfo=None) + dt.timedelta(minutes=1)).replace(tzinfo=zone)
    return probe
