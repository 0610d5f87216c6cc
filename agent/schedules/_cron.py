"""AWS ``cron(...)`` fields: checked here, translated for the cron library.

The fields, as AWS Systems Manager takes them (six, or seven with a leading seconds field)::

    [seconds] minutes hours day-of-month month day-of-week year
    0-59      0-59    0-23  1-31 L LW nW 1-12   1-7 (1 = SUN)  1970-2199
                                         JAN-DEC SUN-SAT L nL n#k

with ``,`` lists, ``a-b`` ranges, ``*``, ``a/n`` and ``*/n`` steps, and ``?`` in exactly one
of the two day fields.  Every error is one line that starts with the expression.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from agent.errors import ScheduleError
from agent.schedules._model import (
    ASSOCIATION_MIN_SECONDS,
    MIN_GAP_SECONDS,
    CronSpec,
    Purpose,
)

SECONDS = "seconds"
MINUTES = "minutes"
HOURS = "hours"
DOM = "day-of-month"
MONTH = "month"
DOW = "day-of-week"
YEAR = "year"

RANGES = {
    SECONDS: (0, 59),
    MINUTES: (0, 59),
    HOURS: (0, 23),
    DOM: (1, 31),
    MONTH: (1, 12),
    DOW: (1, 7),
    YEAR: (1970, 2199),
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MONTH_NAMES = {name: i + 1 for i, name in enumerate(_MONTHS)}
DAY_NAMES = {name: i + 1 for i, name in enumerate(_DAYS)}
SIX = "minutes hours day-of-month month day-of-week year"


@dataclass
class _Fields:
    expression: str
    note: str = ""

    def error(self, what: str) -> ScheduleError:
        return ScheduleError(f"{self.expression}: {what}{self.note}")

    def value(self, field: str, text: str) -> int:
        names = MONTH_NAMES if field == MONTH else DAY_NAMES if field == DOW else {}
        if text.upper() in names:
            return names[text.upper()]
        if not (text.isascii() and text.isdigit()):
            shown = text or "(nothing)"
            raise self.error(f"{field} {shown!r} is not a number{_names_hint(field)}")
        number = int(text)
        low, high = RANGES[field]
        if not low <= number <= high:
            raise self.error(f"{field} {number} is out of range {low}-{high}")
        return number

    def step(self, field: str, text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise self.error(f"{field} step {text!r} must be a whole number of 1 or more")
        return int(text)

    def term(self, field: str, term: str) -> set[int]:
        """One list item of a plain field: ``*``, ``a``, ``a-b``, ``*/n``, ``a/n``, ``a-b/n``."""
        low, high = RANGES[field]
        if term == "?":
            raise self.error(f"{field} can't be ? (only day-of-month or day-of-week can)")
        base, slash, step_text = term.partition("/")
        step = self.step(field, step_text) if slash else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = self.value(field, first), self.value(field, last)
            if start > end:
                raise self.error(f"{field} range {base} runs backwards")
        else:
            start = self.value(field, base)
            end = high if slash else start
        return set(range(start, end + 1, step))

    def plain(self, field: str, text: str) -> set[int]:
        if text == "":
            raise self.error(f"{field} is empty")
        values: set[int] = set()
        for term in text.split(","):
            values |= self.term(field, term)
        return values


def _names_hint(field: str) -> str:
    if field == MONTH:
        return " (1-12 or JAN-DEC)"
    if field == DOW:
        return " (1-7 or SUN-SAT, 1 = SUN)"
    return ""


def _listed(values: set[int], shift: int = 0) -> str:
    return ",".join(str(v + shift) for v in sorted(values))


def _fixed_or_star(fields: _Fields, field: str, text: str) -> tuple[str, set[int]]:
    """A minute or hour field: ``*`` and ``*/n`` pass as written (the library then treats
    the job as a frequent one across DST changes, as Vixie cron does), others as a list."""
    values = fields.plain(field, text)
    if text == "*" or (text.startswith("*/") and "," not in text):
        return text, values
    return _listed(values), values


def _day_of_month(fields: _Fields, text: str) -> tuple[str, int | None]:
    """Return the library's day-of-month field and n of ``nW`` (filtered by the iterator)."""
    if text in ("?", "*"):
        return "*", None
    if text.upper().endswith("W") and text.upper() != "LW":
        day = text[:-1]
        if "," in text or "-" in day or "/" in day:
            raise fields.error(f"{DOM} {text}: W takes one day, as in 15W or LW")
        n = fields.value(DOM, day)
        # The weekday nearest to day n is at most 2 days away, in the same month.
        return f"{max(1, n - 2)}-{min(31, n + 2)}", n
    parts: list[str] = []
    plain: set[int] = set()
    for term in text.split(","):
        upper = term.upper()
        if upper in ("L", "LW"):
            parts.append(upper)
        elif upper.endswith("W"):
            raise fields.error(f"{DOM} {text}: W takes one day, as in 15W or LW")
        else:
            plain |= fields.term(DOM, term)
    if plain:
        parts.insert(0, _listed(plain))
    return ",".join(parts), None


def _day_of_week(fields: _Fields, text: str) -> str:
    """AWS 1-7 (1 = SUN) to the library's 0-6 (0 = SUN); ``L`` alone is Saturday."""
    if text in ("?", "*"):
        return "*"
    parts: list[str] = []
    plain: set[int] = set()
    for term in text.split(","):
        upper = term.upper()
        if upper == "L":
            plain.add(7)
        elif "#" in term:
            day, _, nth = term.partition("#")
            if not (nth.isascii() and nth.isdigit()) or not 1 <= int(nth) <= 5:
                raise fields.error(f"{DOW} {term}: the week after # must be 1-5")
            parts.append(f"{fields.value(DOW, day) - 1}#{int(nth)}")
        elif upper.endswith("L"):
            parts.append(f"{fields.value(DOW, term[:-1]) - 1}L")
        else:
            plain |= fields.term(DOW, term)
    if plain:
        parts.insert(0, _listed(plain, shift=-1))
    return ",".join(parts)


def _shortest_gap(minutes: set[int], hours: set[int]) -> int:
    """The shortest time between two fire times, in seconds (seconds are one value).

    Days are taken as possibly consecutive: 23:58 and 00:00 count as 2 minutes apart.
    """
    ordered = sorted(minutes)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    if any((h + 1) % 24 in hours for h in hours):
        gaps.append(60 - ordered[-1] + ordered[0])
    return min(gaps, default=24 * 60) * 60


def parse_cron(expression: str, body: str, purpose: Purpose) -> CronSpec:
    fields = _Fields(expression)
    parts = body.split()
    if len(parts) not in (6, 7):
        raise fields.error(
            f"has {len(parts)} fields; AWS cron takes 6 ({SIX}) or 7 with a leading seconds field"
        )
    seconds_text = "0"
    if len(parts) == 7:
        seconds_text = parts.pop(0)
        fields.note = f" (7 fields are seconds {SIX})"
    minute_text, hour_text, dom_text, month_text, dow_text, year_text = parts
    seconds = fields.plain(SECONDS, seconds_text)
    if len(seconds) != 1:
        raise fields.error(f"seconds {seconds_text} fires more than once a minute")
    (second,) = seconds
    if purpose == "association" and second != 0:
        raise fields.error("an association's seconds field can only be 0")

    minute_field, minutes = _fixed_or_star(fields, MINUTES, minute_text)
    hour_field, hours = _fixed_or_star(fields, HOURS, hour_text)
    if dom_text == "?" and dow_text == "?":
        raise fields.error("? can be in only one of day-of-month and day-of-week")
    if dom_text != "?" and dow_text != "?":
        raise fields.error(
            "one of day-of-month and day-of-week must be ? (AWS does not combine them)"
        )
    dom_field, nearest = _day_of_month(fields, dom_text)
    months = fields.plain(MONTH, month_text)
    month_field = "*" if month_text == "*" else _listed(months)
    dow_field = _day_of_week(fields, dow_text)
    years = fields.plain(YEAR, year_text)

    gap = _shortest_gap(minutes, hours)
    if gap < MIN_GAP_SECONDS:
        raise fields.error(f"fires {gap // 60} minute(s) apart; the shortest interval is 5 minutes")
    if purpose == "association":
        if month_text != "*":
            raise fields.error("an association's month field must be * (AWS State Manager)")
        if gap < ASSOCIATION_MIN_SECONDS:
            raise fields.error(
                f"fires {gap // 60} minutes apart; an association runs at most every 30 minutes"
            )
    return CronSpec(
        library_expr=" ".join([minute_field, hour_field, dom_field, month_field, dow_field]),
        seconds=second,
        years=None if year_text == "*" else frozenset(years),
        nearest_weekday=nearest,
        wall_clock=not minute_field.startswith("*") and not hour_field.startswith("*"),
    )
