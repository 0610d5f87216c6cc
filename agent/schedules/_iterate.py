"""Walk a cron expression's fire times with the cron library, forwards or backwards.

cronsim (imported here, lazily: the agent pays for it only when it has a schedule) gives
the times that match the five Vixie fields, with Debian cron's DST handling; this module
adds what AWS has and cronsim lacks: the year field, ``nW`` (nearest weekday) and the
seconds field.  Where a candidate fails the year or ``nW`` test, the walk restarts at the
next year or day that could match, so a far year costs one jump, not a year of minutes.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator

from agent.schedules._model import CronSpec

UTC = dt.UTC
FIRST_YEAR, LAST_YEAR = 1970, 2199


def nearest_weekday(year: int, month: int, n: int) -> int | None:
    """Day of the month of AWS/Quartz ``nW``: the weekday nearest to day n, same month."""
    _, days = calendar.monthrange(year, month)
    if n > days:
        return None
    weekday = calendar.weekday(year, month, n)  # Monday 0 .. Sunday 6
    if weekday == 5:  # Saturday: the Friday before, or Monday the 3rd for 1W
        return n - 1 if n > 1 else n + 2
    if weekday == 6:  # Sunday: the Monday after, or Friday for the month's last day
        return n + 1 if n < days else n - 2
    return n


def _wanted(spec: CronSpec, local: dt.datetime) -> str:
    """Which filter ``local`` fails: "year", "day", or "" when it passes both."""
    if spec.years is not None and local.year not in spec.years:
        return "year"
    n = spec.nearest_weekday
    if n is not None and local.day != nearest_weekday(local.year, local.month, n):
        return "day"
    return ""


def _restart(spec: CronSpec, local: dt.datetime, failed: str, reverse: bool) -> dt.datetime | None:
    """Where to start the library again after ``local`` failed the ``failed`` filter."""
    zone = local.tzinfo
    if failed == "year":
        years = sorted(spec.years or ())
        if reverse:
            earlier = [y for y in years if y < local.year]
            if not earlier:
                return None
            return dt.datetime(earlier[-1] + 1, 1, 1, tzinfo=zone)
        later = [y for y in years if y > local.year]
        if not later:
            return None
        return dt.datetime(later[0], 1, 1, tzinfo=zone) - dt.timedelta(seconds=1)
    day = local.replace(tzinfo=None).date()
    if reverse:
        return dt.datetime.combine(day, dt.time(), tzinfo=zone)
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=zone)


def walk(spec: CronSpec, start: float, zone: dt.tzinfo, reverse: bool) -> Iterator[float]:
    """Fire times (epoch seconds) of the cron slots after ``start`` (before it if reverse).

    Forwards: slots strictly after ``start``; backwards: slots strictly before it.  The
    caller filters on the exact bound (DST can hand back a time on the wrong side of it).
    """
    from cronsim import CronSim, CronSimError

    at: dt.datetime | None = dt.datetime.fromtimestamp(start, UTC).astimezone(zone)
    while at is not None:
        try:
            times = CronSim(spec.library_expr, at, reverse=reverse)
        except CronSimError:
            return
        restart: dt.datetime | None = None
        for local in times:
            if not FIRST_YEAR <= local.year <= LAST_YEAR:
                return
            failed = _wanted(spec, local)
            if failed:
                restart = _restart(spec, local, failed, reverse)
                break
            yield local.timestamp() + spec.seconds
        else:
            return
        at = restart
