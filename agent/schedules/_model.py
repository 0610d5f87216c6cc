"""What a parsed schedule is: one frozen value per expression, safe to share and cache."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

Purpose = Literal["association", "window"]
Kind = Literal["cron", "rate", "at"]

PURPOSES: tuple[Purpose, ...] = ("association", "window")

# AWS: nothing faster than every 5 minutes; associations: rate() from 30 minutes to 31 days
# and (our reading of the association cron list, whose fastest entry is every 1/2 hour) no
# cron that fires more often than every 30 minutes.
MIN_GAP_SECONDS = 5 * 60
ASSOCIATION_MIN_SECONDS = 30 * 60
ASSOCIATION_MAX_SECONDS = 31 * 86400

# AWS: --schedule-offset is 1-6 days (0 here means no offset).
MAX_OFFSET_DAYS = 6


@dataclass(frozen=True)
class CronSpec:
    """An AWS cron expression, checked and translated for the cron library.

    ``library_expr`` is a five-field Vixie expression (minute hour day-of-month month
    day-of-week, day-of-week 0-6 with 0 = Sunday) that matches a superset of the AWS
    expression's minutes; ``years`` and ``nearest_weekday`` are what it cannot say and the
    iterator filters on.  ``seconds`` is added to every fire time.
    """

    library_expr: str
    seconds: int
    years: frozenset[int] | None  # None: every year
    nearest_weekday: int | None  # n of "nW" in day-of-month, else None
    wall_clock: bool  # minute and hour fields both fixed: DST handled as Vixie/Debian cron


@dataclass(frozen=True)
class Schedule:
    """A parsed ``cron(...)``, ``rate(...)`` or ``at(...)`` expression.

    Exactly one of ``cron``, ``interval`` (seconds) and ``at`` (a local wall-clock time,
    naive: the zone is given when fire times are asked for) is set, as ``kind`` says.
    """

    expression: str
    kind: Kind
    purpose: Purpose
    cron: CronSpec | None = None
    interval: float | None = None
    at: dt.datetime | None = None
