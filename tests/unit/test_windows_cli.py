"""`corral mw` and `corral calendars` against the real control plane, in process: create,
register targets and a task, list, show, executions and their tasks after a run, enable,
disable, delete, JSON output, and a refusal as one line with nothing stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.unit.conftest import Node
from tests.unit.test_calendars import FREEZE
from tests.unit.test_cli_parameters import Live, live
from tests.unit.test_windows_job import epoch

__all__ = ["live"]


def new_node(live: Live) -> str:
    future = asyncio.run_coroutine_threadsafe(
        live.api.new_node(tags={"role": "web"}), live.bridge._loop
    )
    node: Node = future.result(timeout=60)
    return node.node_id


def tick(live: Live) -> None:
    job = live.api.cp.window_job
    future = asyncio.run_coroutine_threadsafe(job.tick(live.api.clock()), live.bridge._loop)
    future.result(timeout=60)


def test_a_window_from_create_to_its_execution_tasks(live: Live) -> None:
    live.api.cp.windows.changed = lambda: None  # the test ticks
    new_node(live)
    made = live.json(
        "mw", "create", "--name", "patch-sunday", "--schedule", "cron(0 2 ? * SUN *)",
        "--duration", "3", "--cutoff", "1", "--tz", "Europe/Berlin",
    )  # fmt: skip
    wid = made["window_id"]
    assert made["schedule_timezone"] == "Europe/Berlin" and made["enabled"] is True
    target = live.json("mw", "register-targets", wid, "--targets", "tag:role=web")
    registered = live.json(
        "mw", "register-task", wid, "--document", "AWS-RunShellScript", "--priority", "1",
        "--max-concurrency", "10%", "--max-errors", "1",
        "--param", "commands=echo {{WINDOW_EXECUTION_ID}}",
        "--targets", f"window-target:{target['window_target_id']}",
    )  # fmt: skip
    assert registered["parameters"] == {"commands": "echo {{WINDOW_EXECUTION_ID}}"}
    table = live.ok("mw", "list").stdout
    assert wid in table and "patch-sunday" in table
    shown = json.loads(live.ok("mw", "show", wid, "--json").stdout)  # as --output json
    assert [t["window_task_id"] for t in shown["tasks"]] == [registered["window_task_id"]]
    live.api.clock.now = epoch(made["next_execution_time"])
    tick(live)
    (run,) = live.json("mw", "executions", wid)
    assert run["status"] == "IN_PROGRESS"
    detail = live.json("mw", "execution-tasks", wid, run["window_execution_id"])
    (te,) = detail["tasks"]
    assert te["status"] == "IN_PROGRESS" and te["command_ids"] == [te["task_execution_id"]]
    text = live.ok("mw", "execution-tasks", wid, run["window_execution_id"]).stdout
    assert te["task_execution_id"] in text
    assert live.json("mw", "disable", wid)["enabled"] is False
    assert live.json("mw", "enable", wid)["next_execution_time"] is not None
    assert live.ok("mw", "delete", wid).stdout == f"deleted maintenance window {wid}\n"
    assert live.json("mw", "list") == []


def test_a_refused_window_is_one_line_and_nothing_is_stored(live: Live) -> None:
    result = live.run(
        "mw", "create", "--name", "patch", "--schedule", "cron(0 2 ? * SUN *)",
        "--duration", "2", "--cutoff", "2",
    )  # fmt: skip
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "cutoff + 1" in result.stderr
    assert live.json("mw", "list") == []


def test_calendars_create_show_state_and_delete(live: Live, tmp_path: Path) -> None:
    ics = tmp_path / "freeze.ics"
    ics.write_text(FREEZE)
    made = live.json("calendars", "create", "--name", "freeze", "--events", str(ics))
    assert made["type"] == "DEFAULT_OPEN" and made["source"] == "ics"
    weekly = live.json(
        "calendars", "create", "--name", "weekends", "--schedule", "cron(0 0 ? * SAT *)",
        "--duration", "48", "--type", "DEFAULT_CLOSED", "--tz", "Europe/Berlin",
    )  # fmt: skip
    assert weekly["type"] == "DEFAULT_CLOSED"
    state = live.ok("calendars", "state", "freeze", "--at", "2026-12-30T12:00:00Z").stdout
    assert state == "freeze: CLOSED (next change: 2027-01-02T00:00:00.000Z)\n"
    assert live.json("calendars", "show", "freeze")["name"] == "freeze"
    assert [c["name"] for c in live.json("calendars", "list")] == ["freeze", "weekends"]
    live.ok("calendars", "delete", "freeze")
    listed = json.loads(live.ok("calendars", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["weekends"]


def test_calendar_usage_errors_send_nothing(live: Live, tmp_path: Path) -> None:
    result = live.run("calendars", "create", "--name", "freeze", "--schedule", "rate(1 day)")
    assert result.exit_code == 2 and "--duration" in result.stderr
    result = live.run("calendars", "create", "--name", "freeze", "--events", "/no/such.ics")
    assert result.exit_code == 2 and "cannot read" in result.stderr
    assert live.json("calendars", "list") == []
