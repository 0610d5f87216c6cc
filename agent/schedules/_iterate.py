"""Walk a cron expression's fire times, forwards or backwards.

cronsim (imported here, lazily: the agent pays for it only when it has a schedule) finds
the wall-clock times that match the five Vixie fields.  This module adds what AWS has and
cronsim lacks (the year field, ``nW``, the seconds field) and turns wall-clock times into
instants in the zone, with Debian cron's DST rule (see ``agent/schedules/__init__.py``):

* fixed-time expressions: a skipped time fires at the first instant after the gap, a
  repeated one at its first occurrence;
* expressions with ``*`` in the minute or hour field: each matching local time that exists
  fires, both passes of a repeated hour included (real time).

cronsim can apply that rule itself when given an aware datetime, but its real-time stepping
assumes whole-hour DST changes and misses times around Lord Howe Island's 30-minute one
(found by tests/unit/test_schedules_property.py), so it is given naive wall-clock times and
the zone is applied here.  Where a candidate fails the year or ``nW`` test, the walk
restarts at the next year or day that could match: a far year costs one jump.
"""

from __future__ import annotations

import calendar
import datetime as dt
import heapq
import math
from collections.abc import Iterator

from agent.schedules._model import CronSpec
from agent.schedules._zones import UTC, resolve

FIRST_YEAR, LAST_YEAR = 1970, 2199
# The most a DST change moves the wall clock (2 hours in the tz database since 1970, for
# one change): instants of wall-clock times further apart than this are in order.
DST_SPAN = 3 * 3600.0
_SPAN = dt.timedelta(seconds=DST_SPAN)
_BEFORE_FIRST = dt.datetime(FIRST_YEAR, 1, 1) - dt.timedelta(seconds=1)
_EARLIEST = dt.datetime(FIRST_YEAR - 1, 12, 30, tzinfo=UTC).timestamp()
_LATEST = dt.datetime(LAST_YEAR + 1, 1, 2, tzinfo=UTC).timestamp()


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


def _wanted(spec: CronSpec, wall: dt.datetime) -> str:
    """Which filter ``wall`` fails: "year", "day", or "" when it passes both."""
    if spec.years is not None and wall.year not in spec.years:
        return "year"
    n = spec.nearest_weekday
    if n is not None and wall.day != nearest_weekday(wall.year, wall.month, n):
        return "day"
    return ""


def _restart(spec: CronSpec, wall: dt.datetime, failed: str, reverse: bool) -> dt.datetime | None:
    """Where to start the library again after ``wall`` failed the ``failed`` filter."""
    if failed == "year":
        years = sorted(spec.years or ())
        if reverse:
            earlier = [y for y in years if y < wall.year]
            return dt.datetime(earlier[-1] + 1, 1, 1) if earlier else None
        later = [y for y in years if y > wall.year]
        return dt.datetime(later[0], 1, 1) - dt.timedelta(seconds=1) if later else None
    if reverse:
        return dt.datetime.combine(wall.date(), dt.time())
    return dt.datetime.combine(wall.date(), dt.time(23, 59, 59))


def _walls(spec: CronSpec, start: dt.datetime, reverse: bool) -> Iterator[dt.datetime]:
    """Matching naive wall-clock times strictly after ``start`` (before it if reverse)."""
    from cronsim import CronSim, CronSimError

    at: dt.datetime | None = start
    while at is not None:
        try:
            times = CronSim(spec.library_expr, at, reverse=reverse)
        except CronSimError:
            return
        restart: dt.datetime | None = None
        for wall in times:
            if not FIRST_YEAR <= wall.year <= LAST_YEAR:
                if (wall.year < FIRST_YEAR) == reverse:
                    return  # walked out of the years AWS allows
                # not into them yet: jump to their edge
                restart = dt.datetime(LAST_YEAR + 1, 1, 1) if reverse else _BEFORE_FIRST
                break
            failed = _wanted(spec, wall)
            if failed:
                restart = _restart(spec, wall, failed, reverse)
                break
            yield wall
        else:
            return
        at = restart


def _existing(wall: dt.datetime, zone: dt.tzinfo) -> list[float]:
    """The instants at which the local time is ``wall``: none in a gap, two in a repeat."""
    found: list[float] = []
    for fold in (0, 1):
        local = wall.replace(tzinfo=zone, fold=fold)
        instant = local.timestamp()
        back = dt.datetime.fromtimestamp(instant, zone).replace(tzinfo=None)
        if back == wall and instant not in found:
            found.append(instant)
    return found


def _quiet(zone: dt.tzinfo, instant: float) -> bool:
    """True if the zone's offset does not change within DST_SPAN of ``instant``."""
    before = dt.datetime.fromtimestamp(instant - DST_SPAN, zone).utcoffset()
    now = dt.datetime.fromtimestamp(instant, zone).utcoffset()
    return before == now == dt.datetime.fromtimestamp(instant + DST_SPAN, zone).utcoffset()


def walk(spec: CronSpec, start: float, zone: dt.tzinfo, reverse: bool) -> Iterator[float]:
    """Fire times (epoch seconds, seconds field added) of the slots strictly after
    ``start`` (strictly before it if reverse), in order, each once."""
    if not _EARLIEST <= start <= _LATEST:  # outside AWS's years (and maybe datetime's)
        if (start < _EARLIEST) == reverse:
            return
        start = _LATEST if reverse else _EARLIEST
    # A whole second on the far side of ``start``: datetime rounds a timestamp to the nearest
    # microsecond, which could move it past a slot just after it (1830297599.9999998 became
    # 19:00:00.000000 and the 19:00 slot was missed).  What lies between is filtered below.
    edge = math.ceil(start) if reverse else math.floor(start)
    wall_start = dt.datetime.fromtimestamp(edge, UTC).astimezone(zone).replace(tzinfo=None)
    if not _quiet(zone, start):  # wall times near a DST change can be on either side of it
        wall_start += _SPAN if reverse else -_SPAN
    walls = _walls(spec, wall_start, reverse)
    sign = -1.0 if reverse else 1.0
    last = start
    if spec.wall_clock:
        for wall in walls:
            instant = resolve(wall, zone).timestamp()
            if sign * (instant - last) > 0:  # skipped times collapse onto one instant
                last = instant
                yield instant + spec.seconds
        return
    # Real time: instants of wall times less than DST_SPAN apart can be out of order (the
    # two passes of a repeated hour), so hold them in a heap until no later wall time can
    # come before them.
    pending: list[float] = []
    for wall in walls:
        for instant in _existing(wall, zone):
            heapq.heappush(pending, sign * instant)
        here = wall.replace(tzinfo=zone).timestamp()
        horizon = sign * here - (0.0 if _quiet(zone, here) else DST_SPAN)
        while pending and pending[0] <= horizon:
            instant = sign * heapq.heappop(pending)
            if sign * (instant - last) > 0:
                last = instant
                yield instant + spec.seconds
    while pending:
        instant = sign * heapq.heappop(pending)
        if sign * (instant - last) > 0:
            last = instant
            yield instant + spec.seconds
