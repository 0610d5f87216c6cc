"""Schedule expressions as AWS Systems Manager takes them, for associations and windows.

Public API (times are epoch seconds, UTC; a zone is an IANA name)::

    parse(expression, purpose)       -> Schedule        purpose: "association" | "window"
    check_zone(name)                 -> zoneinfo.ZoneInfo
    check_offset(schedule, days)     -> None             1-6 days, cron() only (0: none)
    next_fire(s, after, zone, *, anchor=None, offset_days=0)           -> float | None
    fire_times(s, after, zone, count, *, anchor=None, offset_days=0)   -> list[float]
    last_fire(s, after, upto, zone, *, anchor=None, offset_days=0)     -> float | None

Every bad input raises :class:`agent.errors.ScheduleError` with one line that names what
was wrong, e.g. ``cron(0 2 ? * 8 *): day-of-week 8 is out of range 1-7``.

The rules, from AWS's "Reference: Cron and rate expressions for Systems Manager" (read for
this module in December 2026):

* ``cron(minutes hours day-of-month month day-of-week year)``, six fields, plus an
  optional leading seconds field (seven).  Eight fields, or five (Unix cron), are refused;
  so is a seven-field expression whose first field is not one seconds value 0-59.  (Issue
  11 says "7 fields" is malformed: it means a seventh field that is not AWS's optional
  seconds field, e.g. a Unix cron with an extra field.)  ``?`` in exactly one of the two day
  fields; ``L``, ``LW``, ``nW`` in day-of-month; ``L`` (Saturday), ``nL`` (last weekday n of
  the month) and ``n#k`` in day-of-week; names JAN-DEC and SUN-SAT; day-of-week 1-7 with
  1 = SUN; year 1970-2199.  Nothing may fire more often than every 5 minutes (so the
  seconds field is one value).
* ``rate(N minutes|hours|days)``, singular only for N = 1 (``rate(1 hour)``,
  ``rate(5 hours)``), at least 5 minutes.
* ``at(yyyy-mm-ddThh:mm:ss)``: once, maintenance windows only; the time is local in the
  window's zone (AWS: in the schedule's time zone, UTC by default).
* Associations, further: rate intervals from 30 minutes to 31 days; the seconds field only
  0; the month field only ``*`` (the current page: "State Manager doesn't currently support
  specifying months in cron expressions for associations"); and no cron expression firing
  more often than every 30 minutes (the fastest cron AWS lists for associations is every
  1/2 hour; its older list of "every 1/2, 1, 2, 4, 8 or 12 hours, every day or every week"
  is gone from the current page, whose own association example is ``THU#2``, so we do not
  enforce it).  Maintenance windows take any valid expression.
* A schedule offset (``--schedule-offset``, 1-6 days) applies to cron() only and moves each
  fire time that many days later on the wall clock.

Cron library: **cronsim** (2.8+).  We compared it with croniter (7.x) on PyPI.  cronsim
is small (one 570-line module, typed, no dependencies), maintained for Healthchecks, works
with zoneinfo, iterates backwards (``last_fire``), supports ``L``, ``LW``, ``nL`` and
``n#k``, and documents Debian cron's DST rule, which is what AWS's "runs once" asks for: a
fixed-time job whose time is skipped runs at the first instant after the gap, one whose
time repeats runs once.  croniter covers more syntax (a year field in its own seven-field
layout, ``W``) but its layouts are its own rather than AWS's, its DST handling is its own
rather than Debian's, and it has changed maintainers.  What cronsim lacks (the year field,
``nW``, seconds, AWS's 1-7 day-of-week) is done here in a thin layer.  cronsim matches
wall-clock times only: its own real-time stepping assumes whole-hour DST changes (it missed
02:30 on Lord Howe Island's 30-minute change, found by the property test), so the zone and
Debian's rule are applied in ``_iterate.py``.  cronsim is imported only when fire times are
computed or a cron expression is parsed, never at agent start.

DST, exactly: an expression whose minute and hour fields are both fixed (no leading
``*``, as ``cron(30 2 ? * SUN *)``) follows the wall clock: a skipped time fires at the
first instant after the gap, a repeated one at its first occurrence.  One with ``*`` or
``*/n`` in the minute or hour field (``cron(0/30 * ...)`` is fixed, ``cron(0 */2 ...)`` is
not) runs on real time: it fires at each matching local time that exists, twice in a
repeated hour, not in a skipped one (Vixie and Debian cron do the same).
"""

from __future__ import annotations

from agent.schedules._fire import fire_times, last_fire, next_fire
from agent.schedules._model import Kind, Purpose, Schedule
from agent.schedules._parse import check_offset, parse
from agent.schedules._zones import check_zone

__all__ = [
    "Kind",
    "Purpose",
    "Schedule",
    "check_offset",
    "check_zone",
    "fire_times",
    "last_fire",
    "next_fire",
    "parse",
]
