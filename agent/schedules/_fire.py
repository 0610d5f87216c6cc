"""Fire times: ``next_fire``, ``fire_times`` and ``last_fire`` (epoch seconds, UTC).

* ``rate()``: ``anchor + k * interval`` for k >= 1 (a fixed number of seconds: DST does not
  stretch a rate).  Without an anchor the anchor is ``after``.
* ``at()``: once, at that local time in the zone.
* ``cron()``: in the zone's wall-clock time; ``offset_days`` moves every fire time N days
  later on the wall clock (AWS ``--schedule-offset``).  With an ``anchor`` (the time the
  association or window was created or changed), a cron time at or before the anchor does
  not fire even when its offset lands after it: as AWS says, a period whose cron day has
  passed runs from the next period on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator

from agent.schedules._iterate import walk
from agent.schedules._model import Schedule
from agent.schedules._parse import check_offset
from agent.schedules._zones import UTC, check_zone, resolve

# A DST change moves wall-clock time by at most a few hours (2 in the tz database's
# history for a single change): enough slack to cover one.
_DST_SLACK = 3 * 3600.0


def next_fire(
    s: Schedule,
    after: float,
    zone: str,
    *,
    anchor: float | None = None,
    offset_days: int = 0,
) -> float | None:
    """The first fire time strictly after ``after``, or None when there is none."""
    for fire in _forward(s, after, zone, anchor, offset_days):
        return fire
    return None


def fire_times(
    s: Schedule,
    after: float,
    zone: str,
    count: int,
    *,
    anchor: float | None = None,
    offset_days: int = 0,
) -> list[float]:
    """Up to ``count`` fire times after ``after``, in order."""
    fires: list[float] = []
    if count <= 0:
        return fires
    for fire in _forward(s, after, zone, anchor, offset_days):
        fires.append(fire)
        if len(fires) == count:
            break
    return fires


def last_fire(
    s: Schedule,
    after: float,
    upto: float,
    zone: str,
    *,
    anchor: float | None = None,
    offset_days: int = 0,
) -> float | None:
    """The latest fire time in ``(after, upto]``, or None: a missed run runs once."""
    tz = check_zone(zone)
    check_offset(s, offset_days)
    if upto <= after:
        return None
    if s.kind == "rate":
        assert s.interval is not None
        base = after if anchor is None else anchor
        k = math.floor((upto - base) / s.interval)
        while k >= 1 and base + k * s.interval > upto:
            k -= 1
        fire = base + k * s.interval
        return fire if k >= 1 and fire > after else None
    if s.kind == "at":
        assert s.at is not None
        fire = resolve(s.at, tz).timestamp()
        return fire if after < fire <= upto else None
    assert s.cron is not None
    # Backwards to a fire time at or before upto, then forwards to the latest: one or two
    # steps, and a check on the backward walk where a DST change reorders wall times.
    latest = after
    start = upto - s.cron.seconds + 1
    if offset_days:
        start -= offset_days * 86400 - _DST_SLACK
    for base in walk(s.cron, start, tz, reverse=True):
        if anchor is not None and base <= anchor:
            break
        fire = _shifted(base, offset_days, tz)
        if fire <= upto:
            latest = max(fire, after)
            break
    found: float | None = None
    for fire in _forward(s, latest, zone, anchor, offset_days):
        if fire > upto:
            break
        found = fire
    if found is None and latest > after:
        found = latest
    return found


def _forward(
    s: Schedule, after: float, zone: str, anchor: float | None, offset_days: int
) -> Iterator[float]:
    tz = check_zone(zone)
    check_offset(s, offset_days)
    if s.kind == "rate":
        assert s.interval is not None
        base = after if anchor is None else anchor
        k = max(1, math.floor((after - base) / s.interval))
        while base + k * s.interval <= after:
            k += 1
        while True:
            yield base + k * s.interval
            k += 1
    if s.kind == "at":
        assert s.at is not None
        fire = resolve(s.at, tz).timestamp()
        if fire > after:
            yield fire
        return
    assert s.cron is not None
    start = after - s.cron.seconds
    if offset_days:
        start -= offset_days * 86400 + _DST_SLACK
    if anchor is not None:  # cron times at or before the anchor do not fire
        start = max(start, anchor - s.cron.seconds)
    last = after
    for base in walk(s.cron, start, tz, reverse=False):
        if anchor is not None and base <= anchor:
            continue
        fire = _shifted(base, offset_days, tz)
        if fire > last:  # DST can hand back a time already passed, or the same one twice
            last = fire
            yield fire


def _shifted(fire: float, offset_days: int, zone: dt.tzinfo) -> float:
    if not offset_days:
        return fire
    wall = dt.datetime.fromtimestamp(fire, UTC).astimezone(zone).replace(tzinfo=None)
    return resolve(wall + dt.timedelta(days=offset_days), zone).timestamp()
