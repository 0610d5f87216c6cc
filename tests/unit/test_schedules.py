"""agent.schedules: AWS Systems Manager cron/rate/at expressions, their fire times in a zone
(DST included), schedule offsets, rate anchors, last_fire, and every bad input refused with
a one-line message naming what was wrong."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from agent.errors import AgentError, ScheduleError
from agent.schedules import (
    Purpose,
    check_offset,
    check_zone,
    fire_times,
    last_fire,
    next_fire,
    parse,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(text: str, zone: str = "UTC") -> float:
    """Epoch seconds of the local wall-clock time ``text`` in ``zone`` (first occurrence)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=check_zone(zone)).timestamp()


def local(epoch: float, zone: str) -> str:
    return dt.datetime.fromtimestamp(epoch, check_zone(zone)).isoformat()


def fires(
    expression: str,
    after: str,
    zone: str = "UTC",
    count: int = 3,
    purpose: Purpose = "window",
    **kw: int,
) -> list[str]:
    s = parse(expression, purpose)
    return [local(t, zone) for t in fire_times(s, at(after, zone), zone, count, **kw)]


# --- bad input: one line, naming what was wrong ----------------------------------------

BAD_ANY = [
    ("cron(1 2 3 ? * SUN * *)", "has 8 fields; AWS cron takes 6"),
    ("cron(0 2 * * 1)", "has 5 fields; AWS cron takes 6"),
    ("cron(0 2 ? * ? *)", "? can be in only one of day-of-month and day-of-week"),
    ("cron(0 2 * * * *)", "one of day-of-month and day-of-week must be ?"),
    ("cron(0 2 1 * MON *)", "one of day-of-month and day-of-week must be ?"),
    ("cron(0 2 ? * 8 *)", "day-of-week 8 is out of range 1-7"),
    ("cron(0 2 ? * 0 *)", "day-of-week 0 is out of range 1-7"),
    ("cron(60 2 ? * SUN *)", "minutes 60 is out of range 0-59"),
    ("cron(0 24 ? * SUN *)", "hours 24 is out of range 0-23"),
    ("cron(0 2 32 * ? *)", "day-of-month 32 is out of range 1-31"),
    ("cron(0 2 0 * ? *)", "day-of-month 0 is out of range 1-31"),
    ("cron(0 2 1 13 ? *)", "month 13 is out of range 1-12"),
    ("cron(0 2 1 * ? 1969)", "year 1969 is out of range 1970-2199"),
    ("cron(0 2 1 * ? 2200)", "year 2200 is out of range 1970-2199"),
    ("cron(0 2 1 FOO ? *)", "month 'FOO' is not a number (1-12 or JAN-DEC)"),
    ("cron(0 2 ? * SUNDAY *)", "day-of-week 'SUNDAY' is not a number"),
    ("cron(0 2 ? * 2#6 *)", "day-of-week 2#6: the week after # must be 1-5"),
    ("cron(0 2 ? * 2#0 *)", "day-of-week 2#0: the week after # must be 1-5"),
    ("cron(0 2 15W,20 * ? *)", "day-of-month 15W,20: W takes one day"),
    ("cron(0 2 10-5 * ? *)", "day-of-month range 10-5 runs backwards"),
    ("cron(0/0 2 ? * SUN *)", "minutes step '0' must be a whole number of 1 or more"),
    ("cron(0 ? 1 * ? *)", "hours can't be ?"),
    ("cron(* * * * ? *)", "fires 1 minute(s) apart; the shortest interval is 5 minutes"),
    ("cron(0/2 * * * ? *)", "fires 2 minute(s) apart; the shortest interval is 5 minutes"),
    ("cron(58,0 0,23 * * ? *)", "fires 2 minute(s) apart"),
    ("cron(*/10 0 2 ? * SUN *)", "seconds */10 fires more than once a minute"),
    ("cron(0 2 ? * SUN * *)", "hours can't be ?"),
    ("cron(0 0 30 2 ? *)", "never fires"),
    ("cron(0 0 29 2 ? 2100)", "never fires"),
    ("rate(0 minutes)", "the value must be 1 or more"),
    ("rate(1 hours)", "write rate(1 hour) (singular for 1)"),
    ("rate(5 hour)", "write rate(5 hours) (plural for more than 1)"),
    ("rate(1 minute)", "the shortest rate is every 5 minutes"),
    ("rate(4 minutes)", "the shortest rate is every 5 minutes"),
    ("rate(5 weeks)", "the unit 'weeks' is not minutes, hours or days"),
    ("rate(-5 minutes)", "'-5' is not a whole number"),
    ("rate(5minutes)", "a rate is rate(N minutes|hours|days)"),
    ("at(2027-02-30T00:00:00)", "2027-02-30T00:00:00 is not a valid date and time"),
    ("at(2027-02-03 00:00:00)", "write at(yyyy-mm-ddThh:mm:ss)"),
    ("at(2027-02-03T00:00)", "write at(yyyy-mm-ddThh:mm:ss)"),
    ("every 5 minutes", "'every 5 minutes' is not a schedule expression"),
    ("", "the schedule expression is empty"),
]


@pytest.mark.parametrize(("expression", "message"), BAD_ANY)
def test_bad_expressions_are_refused_with_one_line_naming_the_fault(
    expression: str, message: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(expression, "window")
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert expression in text
    with pytest.raises(ScheduleError):  # stricter rules may name another fault first
        parse(expression, "association")


BAD_FOR_ASSOCIATIONS = [
    ("rate(5 minutes)", "an association's rate must be from 30 minutes to 31 days"),
    ("rate(29 minutes)", "an association's rate must be from 30 minutes to 31 days"),
    ("rate(32 days)", "an association's rate must be from 30 minutes to 31 days"),
    ("cron(30 0 2 ? * SUN *)", "an association's seconds field can only be 0"),
    ("cron(0 2 1 JAN ? *)", "an association's month field must be *"),
    ("cron(0/15 * * * ? *)", "fires 15 minutes apart; an association runs at most every 30"),
    ("at(2027-01-01T00:00:00)", "at() is for maintenance windows"),
]


@pytest.mark.parametrize(("expression", "message"), BAD_FOR_ASSOCIATIONS)
def test_association_rules(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(expression, "association")
    parse(expression, "window")  # a maintenance window takes any valid expression


@pytest.mark.parametrize(
    "expression",
    [
        "rate(30 minutes)",
        "rate(1 hour)",
        "rate(5 hours)",
        "rate(31 days)",
        "cron(0/30 * * * ? *)",
        "cron(0 0/1 * * ? *)",
        "cron(0 0/12 * * ? *)",
        "cron(15 13 ? * * *)",
        "cron(15 13 ? * MON *)",
        "cron(0 0 ? * THU#2 *)",
        "cron(0 0 2 ? * SUN *)",
        "cron(0 */30 * * * ? *)",
    ],
)
def test_association_expressions_from_the_aws_reference_are_accepted(expression: str) -> None:
    assert parse(expression, "association").expression == expression


def test_a_schedule_error_is_an_agent_error() -> None:
    with pytest.raises(AgentError):
        parse("cron(0 2 ? * 8 *)", "window")


def test_unknown_purpose_is_refused() -> None:
    with pytest.raises(ScheduleError, match="schedule purpose 'daily' is not association or"):
        parse("rate(1 day)", "daily")  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", " UTC", "../etc/passwd", "Europe/"])
def test_unknown_zone_is_refused(zone: str) -> None:
    with pytest.raises(ScheduleError, match="time zone") as caught:
        check_zone(zone)
    assert "\n" not in str(caught.value)
    with pytest.raises(ScheduleError, match="time zone"):
        next_fire(parse("rate(1 day)", "window"), 0.0, zone)


@pytest.mark.parametrize(
    ("expression", "offset", "message"),
    [
        ("cron(0 2 ? * SUN *)", 7, "schedule offset 7 is out of range 1-6 days"),
        ("cron(0 2 ? * SUN *)", -1, "schedule offset -1 is out of range 1-6 days"),
        ("rate(1 day)", 2, "rate(1 day): a schedule offset applies to cron() only"),
        ("at(2027-01-01T00:00:00)", 1, "a schedule offset applies to cron() only"),
    ],
)
def test_bad_offsets_are_refused(expression: str, offset: int, message: str) -> None:
    s = parse(expression, "window")
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_offset(s, offset)
    with pytest.raises(ScheduleError):
        next_fire(s, 0.0, "UTC", offset_days=offset)


# --- cron fire times ---------------------------------------------------------------------


def test_names_and_aws_day_of_week_numbers_agree() -> None:
    by_name = fires("cron(0 2 ? * SUN *)", "2027-01-01T00:00:00")
    assert by_name == fires("cron(0 2 ? * 1 *)", "2027-01-01T00:00:00")
    assert by_name == fires("cron(0 2 ? * sun *)", "2027-01-01T00:00:00")
    assert by_name[0] == "2027-01-03T02:00:00+00:00"  # a Sunday
    assert fires("cron(0 18 ? * MON-FRI *)", "2027-01-01T00:00:00", count=3) == [
        "2027-01-01T18:00:00+00:00",  # Friday
        "2027-01-04T18:00:00+00:00",  # Monday
        "2027-01-05T18:00:00+00:00",
    ]


def test_every_30_minutes() -> None:
    assert fires("cron(0/30 * * * ? *)", "2027-01-01T10:10:00") == [
        "2027-01-01T10:30:00+00:00",
        "2027-01-01T11:00:00+00:00",
        "2027-01-01T11:30:00+00:00",
    ]


def test_last_day_and_last_friday_of_the_month() -> None:
    assert fires("cron(0 2 L * ? *)", "2027-01-01T00:00:00") == [
        "2027-01-31T02:00:00+00:00",
        "2027-02-28T02:00:00+00:00",
        "2027-03-31T02:00:00+00:00",
    ]
    assert fires("cron(15 10 ? * 6L *)", "2027-01-01T00:00:00") == [
        "2027-01-29T10:15:00+00:00",
        "2027-02-26T10:15:00+00:00",
        "2027-03-26T10:15:00+00:00",
    ]
    assert fires("cron(15 10 ? * FRIL *)", "2027-01-01T00:00:00", count=1) == [
        "2027-01-29T10:15:00+00:00"
    ]


def test_l_alone_in_day_of_week_is_saturday() -> None:
    assert fires("cron(0 9 ? * L *)", "2027-01-01T00:00:00", count=2) == [
        "2027-01-02T09:00:00+00:00",
        "2027-01-09T09:00:00+00:00",
    ]


def test_nth_weekday_of_the_month() -> None:
    assert fires("cron(0 2 ? * THU#3 *)", "2027-01-01T00:00:00") == [
        "2027-01-21T02:00:00+00:00",
        "2027-02-18T02:00:00+00:00",
        "2027-03-18T02:00:00+00:00",
    ]


def test_nearest_weekday() -> None:
    # 2027-05-15 is a Saturday (-> Friday 14th); 2027-08-15 a Sunday (-> Monday 16th).
    assert fires("cron(0 9 15W * ? *)", "2027-05-01T00:00:00", count=4) == [
        "2027-05-14T09:00:00+00:00",
        "2027-06-15T09:00:00+00:00",
        "2027-07-15T09:00:00+00:00",
        "2027-08-16T09:00:00+00:00",
    ]
    # 1W on Saturday 2028-04-01 is Monday the 3rd, not Friday in March.
    assert fires("cron(0 9 1W * ? *)", "2028-03-02T00:00:00", count=1) == [
        "2028-04-03T09:00:00+00:00"
    ]
    # 31W: only months with 31 days; Sunday 2027-10-31 -> Friday 29th.
    assert fires("cron(0 9 31W * ? *)", "2027-09-01T00:00:00", count=2) == [
        "2027-10-29T09:00:00+00:00",
        "2027-12-31T09:00:00+00:00",
    ]
    assert fires("cron(0 9 LW * ? *)", "2027-10-01T00:00:00", count=1) == [
        "2027-10-29T09:00:00+00:00"
    ]


def test_year_field_jumps_to_the_years_listed() -> None:
    assert fires("cron(0 9 1 JAN,JUL ? 2030,2032)", "2027-01-01T00:00:00", count=5) == [
        "2030-01-01T09:00:00+00:00",
        "2030-07-01T09:00:00+00:00",
        "2032-01-01T09:00:00+00:00",
        "2032-07-01T09:00:00+00:00",
    ]
    assert fires("cron(0 9 1 * ? 2020)", "2027-01-01T00:00:00") == []


def test_seconds_field() -> None:
    assert fires("cron(24 30 09 ? * * *)", "2027-01-01T09:30:24") == [
        "2027-01-02T09:30:24+00:00",
        "2027-01-03T09:30:24+00:00",
        "2027-01-04T09:30:24+00:00",
    ]
    s = parse("cron(24 30 09 ? * * *)", "window")
    assert next_fire(s, at("2027-01-01T09:30:23"), "UTC") == at("2027-01-01T09:30:24")


def test_next_fire_is_strictly_after() -> None:
    s = parse("cron(0 2 ? * SUN *)", "window")
    sunday = at("2027-01-03T02:00:00")
    assert next_fire(s, sunday - 0.5, "UTC") == sunday
    assert next_fire(s, sunday, "UTC") == sunday + 7 * 86400


def test_zone_is_the_wall_clock_of_the_schedule() -> None:
    assert fires("cron(0 2 ? * SUN *)", "2027-01-01T00:00:00", NEW_YORK, count=1) == [
        "2027-01-03T02:00:00-05:00"
    ]


# --- DST ---------------------------------------------------------------------------------


def test_spring_forward_a_skipped_time_runs_once_at_the_end_of_the_gap() -> None:
    # Berlin 2027-03-28: 02:00 CET -> 03:00 CEST.  02:30 does not exist.
    assert fires("cron(30 2 ? * SUN *)", "2027-03-20T12:00:00", BERLIN) == [
        "2027-03-21T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-04-04T02:30:00+02:00",
    ]
    # Every 5 minutes from 02:00 to 02:55 in the gap: one run at 03:00, then 03:00 itself
    # is not run twice.
    got = fires("cron(0/5 2-3 * * ? *)", "2027-03-28T01:50:00", BERLIN, count=3)
    assert got == [
        "2027-03-28T03:00:00+02:00",
        "2027-03-28T03:05:00+02:00",
        "2027-03-28T03:10:00+02:00",
    ]


def test_fall_back_a_repeated_time_runs_once() -> None:
    # Berlin 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice, runs once.
    assert fires("cron(30 2 ? * SUN *)", "2026-10-24T12:00:00", BERLIN, count=2) == [
        "2026-10-25T02:30:00+02:00",  # not 02:30+01:00 an hour later
        "2026-11-01T02:30:00+01:00",
    ]
    # 01:30 is before the change: plainly once.
    assert fires("cron(30 1 ? * SUN *)", "2026-10-24T12:00:00", BERLIN, count=2) == [
        "2026-10-25T01:30:00+02:00",
        "2026-11-01T01:30:00+01:00",
    ]


def test_fall_back_in_new_york() -> None:
    # New York 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 happens twice, runs once.
    assert fires("cron(30 1 * * ? *)", "2026-10-31T12:00:00", NEW_YORK, count=3) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]
    # Asked from inside the repeated hour (01:10 EST, after the 01:30 EDT run): not again.
    s = parse("cron(30 1 * * ? *)", "window")
    second_pass = at("2026-11-01T06:10:00")  # 01:10 EST
    assert local(next_fire(s, second_pass, NEW_YORK) or 0, NEW_YORK) == (
        "2026-11-02T01:30:00-05:00"
    )


def test_spring_forward_in_new_york() -> None:
    # 2027-03-14: 02:00 EST -> 03:00 EDT.
    assert fires("cron(30 2 * * ? *)", "2027-03-13T12:00:00", NEW_YORK, count=3) == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
        "2027-03-16T02:30:00-04:00",
    ]


def test_frequent_jobs_run_on_real_time_across_dst() -> None:
    # A minute or hour field led by * follows real time: the repeated hour runs twice.
    assert fires("cron(0 */1 * * ? *)", "2026-10-25T01:30:00", BERLIN, count=4) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]


# --- offsets -----------------------------------------------------------------------------


def test_third_tuesday_plus_two_days() -> None:
    # AWS's example: cron(30 23 ? * TUE#3 *) with --schedule-offset 2 runs Thursday 23:30.
    assert fires("cron(30 23 ? * TUE#3 *)", "2027-01-01T00:00:00", BERLIN, offset_days=2) == [
        "2027-01-21T23:30:00+01:00",
        "2027-02-18T23:30:00+01:00",
        "2027-03-18T23:30:00+01:00",
    ]


def test_offset_keeps_the_wall_clock_across_dst() -> None:
    # Monday 2027-03-22 02:00 CET + 6 days is Sunday 2027-03-28 02:00: skipped -> 03:00.
    assert fires("cron(0 2 ? * MON *)", "2027-03-27T00:00:00", BERLIN, offset_days=6) == [
        "2027-03-28T03:00:00+02:00",
        "2027-04-04T02:00:00+02:00",
        "2027-04-11T02:00:00+02:00",
    ]


def test_offset_period_passed_before_the_anchor_does_not_run() -> None:
    s = parse("cron(0 0 ? * THU#2 *)", "association")
    # Created on Friday 2027-01-15, after the second Thursday (the 14th): the run that the
    # offset would put on Sunday the 17th is skipped; the next period's runs.
    created = at("2027-01-15T12:00:00")
    assert next_fire(s, created, "UTC", offset_days=3) == at("2027-01-17T00:00:00")
    assert next_fire(s, created, "UTC", anchor=created, offset_days=3) == at("2027-02-14T00:00:00")


def test_last_fire_with_an_offset() -> None:
    s = parse("cron(30 23 ? * TUE#3 *)", "window")
    got = last_fire(s, at("2027-01-01T00:00:00"), at("2027-03-01T00:00:00"), "UTC", offset_days=2)
    assert got == at("2027-02-18T23:30:00")


# --- rate and at -------------------------------------------------------------------------


def test_rate_counts_from_its_anchor() -> None:
    s = parse("rate(30 minutes)", "association")
    anchor = at("2027-01-01T10:07:00")
    assert next_fire(s, anchor, "UTC", anchor=anchor) == anchor + 1800
    assert next_fire(s, anchor + 1800, "UTC", anchor=anchor) == anchor + 3600
    assert next_fire(s, anchor + 1799.5, "UTC", anchor=anchor) == anchor + 1800
    assert next_fire(s, anchor - 86400, "UTC", anchor=anchor) == anchor + 1800  # k >= 1
    assert fire_times(s, anchor + 5000, "UTC", 2, anchor=anchor) == [
        anchor + 5400,
        anchor + 7200,
    ]


def test_rate_without_anchor_counts_from_after() -> None:
    s = parse("rate(1 day)", "window")
    assert next_fire(s, 1000.0, BERLIN) == 1000.0 + 86400


def test_rate_is_a_fixed_interval_across_dst() -> None:
    s = parse("rate(1 day)", "window")
    anchor = at("2027-03-27T12:00:00", BERLIN)
    assert local(next_fire(s, anchor, BERLIN, anchor=anchor) or 0, BERLIN) == (
        "2027-03-28T13:00:00+02:00"
    )


def test_at_runs_once_in_local_time() -> None:
    s = parse("at(2027-03-28T02:00:00)", "window")
    assert next_fire(s, 0.0, NEW_YORK) == at("2027-03-28T02:00:00", NEW_YORK)
    assert next_fire(s, at("2027-03-28T02:00:00", NEW_YORK), NEW_YORK) is None
    assert fire_times(s, 0.0, NEW_YORK, 5) == [at("2027-03-28T02:00:00", NEW_YORK)]
    # In Berlin that day 02:00 is skipped: the first instant after the gap.
    assert local(next_fire(s, 0.0, BERLIN) or 0, BERLIN) == "2027-03-28T03:00:00+02:00"


# --- last_fire: a missed run runs once ---------------------------------------------------


def test_last_fire_picks_the_latest_missed_slot() -> None:
    s = parse("cron(0 2 ? * SUN *)", "window")
    down, up = at("2027-01-01T00:00:00"), at("2027-01-20T00:00:00")
    assert last_fire(s, down, up, "UTC") == at("2027-01-17T02:00:00")
    assert last_fire(s, down, at("2027-01-03T02:00:00"), "UTC") == at("2027-01-03T02:00:00")
    assert last_fire(s, at("2027-01-03T02:00:00"), at("2027-01-09T00:00:00"), "UTC") is None
    assert last_fire(s, up, down, "UTC") is None


def test_last_fire_of_rate_and_at() -> None:
    s = parse("rate(1 hour)", "association")
    anchor = at("2027-01-01T00:00:00")
    assert last_fire(s, anchor, anchor + 3 * 3600 + 5, "UTC", anchor=anchor) == (anchor + 3 * 3600)
    assert last_fire(s, anchor, anchor + 3599, "UTC", anchor=anchor) is None
    assert last_fire(s, anchor + 3600, anchor + 7199, "UTC", anchor=anchor) is None
    one = parse("at(2027-01-02T00:00:00)", "window")
    assert last_fire(one, anchor, anchor + 2 * 86400, "UTC") == anchor + 86400
    assert last_fire(one, anchor + 86400, anchor + 2 * 86400, "UTC") is None


def test_last_fire_inside_a_repeated_hour() -> None:
    # New York 2026-11-01 at 01:10 EST (after 01:45 EDT): the latest run is 01:45 EDT.
    s = parse("cron(45 1 * * ? *)", "window")
    got = last_fire(s, at("2026-10-31T00:00:00"), at("2026-11-01T06:10:00"), NEW_YORK)
    assert got is not None and local(got, NEW_YORK) == "2026-11-01T01:45:00-04:00"


def test_last_fire_across_years() -> None:
    s = parse("cron(0 9 1 JAN ? 2028,2030)", "window")
    assert last_fire(s, 0.0, at("2029-06-01T00:00:00"), "UTC") == at("2028-01-01T09:00:00")
    assert last_fire(s, 0.0, at("2027-06-01T00:00:00"), "UTC") is None


def test_cron_library_is_not_imported_with_the_package() -> None:
    code = "import sys, agent.schedules; print('cronsim' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_last_fire_in_the_second_pass_of_a_repeated_hour_at_midnight() -> None:
    # Santiago 2026-04-05 00:00 -03 -> 2026-04-04 23:00 -04: Saturday's 23:xx happens twice,
    # and a frequent job (hour field *) runs in both passes: the latest is 23:05 -04.
    zone = "America/Santiago"
    s = parse("cron(0,5 * ? * L *)", "window")
    second_pass = at("2026-04-05T03:00:00")  # 23:00 -04
    (fire,) = fire_times(s, second_pass, zone, 1)
    assert local(fire, zone) == "2026-04-04T23:05:00-04:00"
    assert last_fire(s, second_pass, fire, zone) == fire
    assert last_fire(s, second_pass - 3600, fire + 60, zone) == fire


def test_half_hour_dst_change_on_lord_howe_island() -> None:
    # 2026-10-04 02:00 +10:30 -> 02:30 +11:00: 02:30 exists, and an hourly job runs then.
    zone = "Australia/Lord_Howe"
    assert fires("cron(30 */1 ? * 1#1 *)", "2026-10-04T00:00:00", zone, count=4) == [
        "2026-10-04T00:30:00+10:30",
        "2026-10-04T01:30:00+10:30",
        "2026-10-04T02:30:00+11:00",
        "2026-10-04T03:30:00+11:00",
    ]
    # A fixed 02:15 is skipped: it runs at 02:30, the first instant after the gap.
    assert fires("cron(15 2 * * ? *)", "2026-10-03T12:00:00", zone, count=2) == [
        "2026-10-04T02:30:00+11:00",
        "2026-10-05T02:15:00+11:00",
    ]


def test_times_outside_the_years_aws_allows() -> None:
    s = parse("cron(0 2 ? * SUN *)", "window")
    assert next_fire(s, -1e10, "UTC") == at("1970-01-04T02:00:00")
    assert next_fire(s, 1e11, "UTC") is None
    assert last_fire(s, 0.0, 1e11, "UTC") == at("2199-12-29T02:00:00")
    assert last_fire(s, -1e12, -1e10, "UTC") is None


def test_cron_with_an_anchor_fires_only_after_it() -> None:
    s = parse("cron(0/5 * * * ? *)", "window")
    anchor = at("2027-06-01T10:02:00")
    assert next_fire(s, at("2027-01-01T00:00:00"), "UTC", anchor=anchor) == at(
        "2027-06-01T10:05:00"
    )
    assert last_fire(s, at("2027-01-01T00:00:00"), anchor, "UTC", anchor=anchor) is None
    assert last_fire(s, 0.0, anchor + 600, "UTC", anchor=anchor) == at("2027-06-01T10:10:00")
