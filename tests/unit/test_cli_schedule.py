"""`corral schedule next`: fire times of an expression in a zone and in UTC, no server."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner, Result

from control_plane.cli.main import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["schedule", "next", *args])


def test_sundays_at_two_across_the_spring_change_in_berlin() -> None:
    result = run(
        "cron(0 2 ? * SUN *)", "--tz", "Europe/Berlin", "--after", "2027-03-27T12:00:00",
        "--count", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()[2:]]
    assert lines == [
        ["2027-03-28T03:00:00+02:00", "2027-03-28T01:00:00Z"],  # 02:00 is skipped that day
        ["2027-04-04T02:00:00+02:00", "2027-04-04T00:00:00Z"],
        ["2027-04-11T02:00:00+02:00", "2027-04-11T00:00:00Z"],
    ]


@pytest.mark.parametrize("flag", [["--json"], ["-o", "json"], ["--output", "json"]])
def test_json_output(flag: list[str]) -> None:
    result = run(
        "cron(30 23 ? * TUE#3 *)", "--tz", "America/New_York", "--after",
        "2027-01-01T00:00:00", "--count", "2", "--schedule-offset", "2", *flag,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["expression"] == "cron(30 23 ? * TUE#3 *)"
    assert data["zone"] == "America/New_York"
    assert data["after"] == "2027-01-01T00:00:00-05:00"
    assert data["schedule_offset"] == 2
    assert [f["local"] for f in data["fires"]] == [
        "2027-01-21T23:30:00-05:00",
        "2027-02-18T23:30:00-05:00",
    ]
    assert [f["utc"] for f in data["fires"]] == ["2027-01-22T04:30:00Z", "2027-02-19T04:30:00Z"]


def test_default_is_after_now_in_utc() -> None:
    before = time.time()
    result = run("rate(1 hour)", "--count", "1", "--json")
    assert result.exit_code == 0, result.output
    (fire,) = json.loads(result.stdout)["fires"]
    assert before + 3600 <= fire["epoch"] <= time.time() + 3600
    assert fire["local"].endswith("+00:00")


def test_at_fires_once_and_then_says_so() -> None:
    ok = run("at(2027-06-01T09:00:00)", "--tz", "Asia/Kolkata", "--after", "2027-01-01T00:00:00")
    assert ok.exit_code == 0, ok.output
    assert "2027-06-01T09:00:00+05:30" in ok.stdout
    assert "2027-06-01T03:30:00Z" in ok.stdout
    past = run("at(2027-06-01T09:00:00)", "--after", "2027-07-01T00:00:00")
    assert past.exit_code == 0
    assert "does not fire after 2027-07-01T00:00:00+00:00 (UTC)" in past.stdout
    assert json.loads(run("at(2027-06-01T09:00:00)", "--after", "2028-01-01T00:00:00",
                          "--json").stdout)["fires"] == []  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cron(1 2 3 ? * SUN * *)"], "has 8 fields"),
        (["cron(0 2 ? * ? *)"], "? can be in only one of day-of-month and day-of-week"),
        (["cron(0 2 ? * 8 *)"], "cron(0 2 ? * 8 *): day-of-week 8 is out of range 1-7"),
        (["rate(0 minutes)"], "rate(0 minutes): the value must be 1 or more"),
        (["rate(1 hours)"], "write rate(1 hour)"),
        (["rate(5 minutes)", "--purpose", "association"], "from 30 minutes to 31 days"),
        (["rate(1 day)", "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["rate(1 day)", "--schedule-offset", "2"], "a schedule offset applies to cron() only"),
    ],
)
def test_bad_expressions_fail_with_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["rate(1 day)", "--after", "next tuesday"],
        ["rate(1 day)", "--count", "0"],
        ["rate(1 day)", "--schedule-offset", "7"],
        ["rate(1 day)", "--purpose", "daily"],
    ],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
