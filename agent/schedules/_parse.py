"""``parse(expression, purpose)``: the one way in from text to a :class:`Schedule`."""

from __future__ import annotations

import datetime as dt
import functools
import re

from agent.errors import ScheduleError
from agent.schedules._cron import parse_cron
from agent.schedules._model import (
    ASSOCIATION_MAX_SECONDS,
    ASSOCIATION_MIN_SECONDS,
    MAX_OFFSET_DAYS,
    MIN_GAP_SECONDS,
    PURPOSES,
    Purpose,
    Schedule,
)

_RATE = re.compile(r"rate\((?P<value>\S*) (?P<unit>\S*)\)")
_AT = re.compile(r"at\((?P<when>[^)]*)\)")
_AT_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def parse(expression: str, purpose: Purpose) -> Schedule:
    """Check ``expression`` against AWS's rules for ``purpose`` ("association" or "window").

    Raises :class:`~agent.errors.ScheduleError` with a one-line message naming what was
    wrong.  Results are cached: a Schedule is immutable.
    """
    return _parse(expression, purpose)


@functools.lru_cache(maxsize=4096)
def _parse(expression: str, purpose: Purpose) -> Schedule:
    if purpose not in PURPOSES:
        raise ScheduleError(f"schedule purpose {purpose!r} is not association or window")
    text = expression.strip()
    if not text:
        raise ScheduleError("the schedule expression is empty")
    if text.startswith("cron(") and text.endswith(")"):
        schedule = Schedule(text, "cron", purpose, cron=parse_cron(text, text[5:-1], purpose))
        _check_fires(schedule)
        return schedule
    if text.startswith("rate(") and text.endswith(")"):
        return Schedule(text, "rate", purpose, interval=_rate(text, purpose))
    if text.startswith("at(") and text.endswith(")"):
        if purpose == "association":
            raise ScheduleError(f"{text}: at() is for maintenance windows; use cron() or rate()")
        return Schedule(text, "at", purpose, at=_at(text))
    raise ScheduleError(
        f"{_shown(text)} is not a schedule expression: use cron(...), rate(...) or at(...)"
    )


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _rate(text: str, purpose: Purpose) -> float:
    match = _RATE.fullmatch(text)
    if match is None:
        raise ScheduleError(f"{text}: a rate is rate(N minutes|hours|days), as in rate(30 minutes)")
    value, unit = match["value"], match["unit"]
    if not (value.isascii() and value.isdigit()):
        raise ScheduleError(f"{text}: {value!r} is not a whole number")
    number = int(value)
    if number < 1:
        raise ScheduleError(f"{text}: the value must be 1 or more")
    singular = unit.removesuffix("s")
    if singular not in _UNITS:
        raise ScheduleError(f"{text}: the unit {unit!r} is not minutes, hours or days")
    if number == 1 and unit != singular:
        raise ScheduleError(f"{text}: write rate(1 {singular}) (singular for 1)")
    if number != 1 and unit == singular:
        raise ScheduleError(f"{text}: write rate({number} {singular}s) (plural for more than 1)")
    seconds = number * _UNITS[singular]
    if seconds < MIN_GAP_SECONDS:
        raise ScheduleError(f"{text}: the shortest rate is every 5 minutes")
    if purpose == "association" and not (
        ASSOCIATION_MIN_SECONDS <= seconds <= ASSOCIATION_MAX_SECONDS
    ):
        raise ScheduleError(f"{text}: an association's rate must be from 30 minutes to 31 days")
    return float(seconds)


def _at(text: str) -> dt.datetime:
    when = _AT.fullmatch(text)
    if when is None or not _AT_FORMAT.fullmatch(when["when"]):
        raise ScheduleError(f"{text}: write at(yyyy-mm-ddThh:mm:ss), as in at(2027-03-28T02:00:00)")
    try:
        return dt.datetime.fromisoformat(when["when"])
    except ValueError as exc:
        raise ScheduleError(f"{text}: {when['when']} is not a valid date and time") from exc


def _check_fires(schedule: Schedule) -> None:
    """Refuse a cron expression that never fires (``cron(0 0 30 2 ? *)``: February 30th)."""
    from agent.schedules._fire import next_fire

    if next_fire(schedule, dt.datetime(1970, 1, 1, tzinfo=dt.UTC).timestamp(), "UTC") is None:
        raise ScheduleError(f"{schedule.expression}: never fires")


def check_offset(schedule: Schedule, offset_days: int) -> None:
    """A schedule offset (AWS ``--schedule-offset``) is 1-6 days and for cron() only; 0 is none."""
    if offset_days == 0:
        return
    if isinstance(offset_days, bool) or not 1 <= offset_days <= MAX_OFFSET_DAYS:
        raise ScheduleError(
            f"schedule offset {offset_days} is out of range 1-{MAX_OFFSET_DAYS} days"
        )
    if schedule.kind != "cron":
        raise ScheduleError(f"{schedule.expression}: a schedule offset applies to cron() only")
