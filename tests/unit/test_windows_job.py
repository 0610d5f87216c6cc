"""Maintenance windows run by their scheduled job, against a real database and a real Run
Command (CommandService, dispatcher, node reports through the API), with the test's clock:
``tick(now)`` is called at the times chosen, nothing sleeps to wait for a schedule.

What it holds: tasks run in priority order (equal priorities together) with their pseudo
parameters replaced; no task starts after the cutoff and a CANCEL_TASK task is cancelled there
(TIMED_OUT); a start while the previous run goes on is SKIPPED_OVERLAPPING; a start missed
while the server was down runs once if the window is still before its cutoff; a per-node task
({{TARGET_ID}}) keeps to its MaxConcurrency; a start is recorded once however many ticks see it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from agent import wire
from control_plane.store.schema import commands as commands_table
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_execution_support import eventually

SUNDAY_2AM = "cron(0 2 ? * SUN *)"
HOUR = 3600.0


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


async def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()
    return found


async def window(api: Api, **fields: Any) -> dict[str, Any]:
    api.cp.windows.changed = lambda: None  # the test ticks; the loop stays out of the way
    body = {"name": "patch-sunday", "schedule": SUNDAY_2AM, "duration": 3, "cutoff": 1, **fields}
    return await ok(await api.client.post("/v1/windows", json=body, headers=api.admin), 201)


async def targets(api: Api, window_id: str, *specs: str) -> str:
    found = await ok(
        await api.client.post(
            f"/v1/windows/{window_id}/targets", json={"targets": list(specs)}, headers=api.admin
        ),
        201,
    )
    return str(found["window_target_id"])


async def task(api: Api, window_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "document": "AWS-RunShellScript",
        "parameters": {"commands": ["echo {{WINDOW_EXECUTION_ID}} {{TASK_EXECUTION_ID}}"]},
        **fields,
    }
    return await ok(
        await api.client.post(f"/v1/windows/{window_id}/tasks", json=body, headers=api.admin), 201
    )


async def executions(api: Api, window_id: str) -> list[dict[str, Any]]:
    found = await ok(await api.client.get(f"/v1/windows/{window_id}/executions", headers=api.admin))
    return list(found["executions"])


async def execution(api: Api, window_id: str, execution_id: str) -> dict[str, Any]:
    return await ok(
        await api.client.get(
            f"/v1/windows/{window_id}/executions/{execution_id}", headers=api.admin
        )
    )


async def tick(api: Api) -> None:
    await api.cp.window_job.tick(api.clock())


async def report(api: Api, node: Node, command_id: str, status: str = wire.ST_SUCCESS) -> None:
    body = {"command_id": command_id, "status": status, "status_details": status, "steps": []}
    stored = await api.send(node, [dict(wire.make_message(wire.MSG_INVOCATION_UPDATE, body))])
    assert stored.status_code == 200, stored.text
    if status in wire.TERMINAL_STATUSES:  # the dispatcher (running) ends the command

        async def ended() -> bool:
            async with api.cp.db.read() as conn:
                done = await conn.scalar(
                    sa.select(commands_table.c.completed_at).where(
                        commands_table.c.id == command_id
                    )
                )
            return done is not None

        await eventually(ended, f"command {command_id} ended")


async def command(api: Api, command_id: str) -> dict[str, Any]:
    return await ok(await api.client.get(f"/v1/commands/{command_id}", headers=api.admin))


async def window_commands(api: Api, window_id: str) -> list[str]:
    async with api.cp.db.read() as conn:
        rows = await conn.execute(
            sa.select(commands_table.c.id).where(
                commands_table.c.requested_by == f"window:{window_id}"
            )
        )
        return [r.id for r in rows]


async def start(api: Api, created: dict[str, Any], late: float = 0.0) -> dict[str, Any]:
    """Move the clock to the window's next start (+ ``late``) and tick; the new execution."""
    api.clock.now = epoch(created["next_execution_time"]) + late
    await tick(api)
    runs = await executions(api, created["window_id"])
    return await execution(api, created["window_id"], runs[0]["window_execution_id"])


def by_priority(found: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for t in found["tasks"]:
        out.setdefault(t["priority"], []).append(t)
    return out


def test_tasks_run_in_priority_order_with_pseudo_parameters(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"role": "web"})
        created = await window(api)
        wid = created["window_id"]
        target = await targets(api, wid, "tag:role=web")
        await task(api, wid, priority=2, targets=[f"window-target:{target}"])
        await task(api, wid, priority=1)
        await task(api, wid, priority=1, parameters={"commands": ["echo {{WINDOW_ID}}"]})
        assert await executions(api, wid) == []
        run = await start(api, created)
        assert run["status"] == "IN_PROGRESS"
        tasks = by_priority(run)
        # The two priority-1 tasks run together; priority 2 waits for both.
        assert [t["status"] for t in tasks[1]] == ["IN_PROGRESS", "IN_PROGRESS"]
        assert tasks[2][0]["status"] == "PENDING" and tasks[2][0]["command_ids"] == []
        for t in tasks[1]:
            (command_id,) = t["command_ids"]
            assert command_id == t["task_execution_id"]  # derived: a resend finds it
            sent = await command(api, command_id)
            assert sent["requested_by"] == f"window:{wid}"
            text = sent["parameters"]["commands"][0]
            assert "{{" not in text
            assert run["window_execution_id"] in text or wid in text
            await report(api, node, command_id)
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        later = by_priority(run)[2][0]
        assert [t["status"] for t in by_priority(run)[1]] == ["SUCCESS", "SUCCESS"]
        assert later["status"] == "IN_PROGRESS"
        sent = await command(api, later["task_execution_id"])
        assert sent["parameters"]["commands"] == [
            f"echo {run['window_execution_id']} {later['task_execution_id']}"
        ]
        await report(api, node, later["task_execution_id"])
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        assert (run["status"], run["end_time"] is not None) == ("SUCCESS", True)
        assert len(await window_commands(api, wid)) == 3
        # The next start is a week later.
        shown = await ok(await api.client.get(f"/v1/windows/{wid}", headers=api.admin))
        assert epoch(shown["next_execution_time"]) - epoch(created["next_execution_time"]) in (
            7 * 24 * HOUR,
        )

    run_api(scenario)


def test_nothing_starts_after_the_cutoff_and_cancel_task_times_out(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        created = await window(api, allow_unassociated_targets=True, duration=2)
        wid = created["window_id"]
        await task(
            api,
            wid,
            priority=1,
            targets=[node.node_id],
            cutoff_behavior="CANCEL_TASK",
            timeout_seconds=4 * 3600,
        )
        await task(api, wid, priority=2, targets=[node.node_id])
        run = await start(api, created)
        first = by_priority(run)[1][0]
        await report(api, node, first["task_execution_id"], wire.ST_IN_PROGRESS)
        api.clock.now = epoch(run["cutoff_time"]) + 1  # still running at the cutoff
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        tasks = by_priority(run)
        assert tasks[1][0]["status"] == "CANCELLING"
        assert tasks[2][0]["status"] == "CANCELLED"
        assert "cutoff" in tasks[2][0]["status_details"]
        assert tasks[2][0]["command_ids"] == []  # never sent
        # The node acknowledges the cancel; the task ends TIMED_OUT, as SSM's CANCEL_TASK.
        await report(api, node, first["task_execution_id"], wire.ST_CANCELLED)
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        assert by_priority(run)[1][0]["status"] == "TIMED_OUT"
        assert run["status"] == "TIMED_OUT"
        assert len(await window_commands(api, wid)) == 1

    run_api(scenario)


def test_a_continue_task_runs_past_the_window_and_the_next_start_is_skipped(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        created = await window(api, allow_unassociated_targets=True, schedule="rate(1 day)")
        wid = created["window_id"]
        await task(api, wid, targets=[node.node_id], timeout_seconds=172_800)
        run = await start(api, created)
        (te,) = run["tasks"]
        await report(api, node, te["task_execution_id"], wire.ST_IN_PROGRESS)
        api.clock.now = epoch(run["window_end_time"]) + 60
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        assert run["status"] == "IN_PROGRESS"  # CONTINUE_TASK: it runs to completion
        assert "still running" in run["status_details"]
        api.clock.now = epoch(created["next_execution_time"]) + 24 * HOUR
        await tick(api)
        runs = await executions(api, wid)
        assert [r["status"] for r in runs] == ["SKIPPED_OVERLAPPING", "IN_PROGRESS"]
        await report(api, node, te["task_execution_id"], wire.ST_FAILED)
        await tick(api)
        runs = await executions(api, wid)
        assert [r["status"] for r in runs] == ["SKIPPED_OVERLAPPING", "FAILED"]

    run_api(scenario)


def test_a_missed_start_runs_once_if_still_before_the_cutoff(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await api.new_node(tags={"role": "web"})
        created = await window(api)
        wid = created["window_id"]
        await targets(api, wid, "tag:role=web")
        await task(api, wid)
        first = epoch(created["next_execution_time"])
        # Down over two starts: at the third, 90 minutes late (cutoff at +2 h), one run.
        api.clock.now = first + 14 * 24 * HOUR + 90 * 60
        await tick(api)
        await tick(api)
        runs = await executions(api, wid)
        assert len(runs) == 1
        assert epoch(runs[0]["scheduled_time"]) == first + 14 * 24 * HOUR
        assert runs[0]["status"] == "IN_PROGRESS"
        # Down past the next start's cutoff: recorded, not run.
        api.clock.now = first + 21 * 24 * HOUR + 2 * HOUR + 60
        await tick(api)
        runs = await executions(api, wid)
        assert runs[0]["status"] == "TIMED_OUT" and "missed" in runs[0]["status_details"]
        assert runs[0]["window_execution_id"] != runs[1]["window_execution_id"]
        assert len(await window_commands(api, wid)) == 1

    run_api(scenario)


def test_a_per_node_task_keeps_to_its_concurrency(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        nodes = [await api.new_node(tags={"role": "db"}) for _ in range(3)]
        created = await window(api)
        wid = created["window_id"]
        await targets(api, wid, "tag:role=db")
        await task(api, wid, parameters={"commands": ["echo {{TARGET_ID}}"]}, max_concurrency="1")
        run = await start(api, created)
        (te,) = run["tasks"]
        assert te["per_target"] is True and len(te["command_ids"]) == 3
        sent = await window_commands(api, wid)
        assert len(sent) == 1  # MaxConcurrency 1: one node at a time
        done: set[str] = set()
        for _ in nodes:
            (command_id,) = [c for c in sent if c not in done]
            shown = await command(api, command_id)
            (inv,) = shown["invocations"]
            assert shown["parameters"]["commands"] == [f"echo {inv['node_id']}"]
            owner = next(n for n in nodes if n.node_id == inv["node_id"])
            await report(api, owner, command_id)
            done.add(command_id)
            await tick(api)
            sent = await window_commands(api, wid)
        assert len(sent) == 3
        run = await execution(api, wid, run["window_execution_id"])
        assert run["status"] == "SUCCESS"

    run_api(scenario)


def test_a_task_whose_targets_match_nothing_fails_and_the_rest_go_on(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        created = await window(api, allow_unassociated_targets=True)
        wid = created["window_id"]
        await task(api, wid, priority=1, targets=["tag:role=nothing"])
        await task(api, wid, priority=2, targets=[node.node_id])
        run = await start(api, created)
        tasks = by_priority(run)
        assert tasks[1][0]["status"] == "FAILED"
        assert "match no registered node" in tasks[1][0]["status_details"]
        assert tasks[2][0]["status"] == "IN_PROGRESS"
        await report(api, node, tasks[2][0]["task_execution_id"])
        await tick(api)
        run = await execution(api, wid, run["window_execution_id"])
        assert run["status"] == "FAILED"

    run_api(scenario)


def test_disabled_windows_do_not_start_and_enabling_looks_ahead(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        created = await window(api)
        wid = created["window_id"]
        disabled = await ok(await api.client.post(f"/v1/windows/{wid}/disable", headers=api.admin))
        assert disabled["next_execution_time"] is None
        api.clock.now = epoch(created["next_execution_time"]) + 60
        await tick(api)
        assert await executions(api, wid) == []
        enabled = await ok(await api.client.post(f"/v1/windows/{wid}/enable", headers=api.admin))
        # The start missed while disabled does not run: the next one is a week on.
        assert epoch(enabled["next_execution_time"]) > api.clock.now

    run_api(scenario)


def test_a_task_whose_group_was_deleted_fails_with_the_reason(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await api.new_node(tags={"role": "web"})
        made = await api.client.post(
            "/v1/groups", json={"name": "web", "targets": ["tag:role=web"]}, headers=api.admin
        )
        assert made.status_code == 201, made.text
        created = await window(api)
        wid = created["window_id"]
        await targets(api, wid, "group:web")
        await task(api, wid)
        await ok(await api.client.delete("/v1/groups/web", headers=api.admin))
        run = await start(api, created)  # the tick does not fail: the task does
        (te,) = run["tasks"]
        assert te["status"] == "FAILED" and "web" in te["status_details"]
        await tick(api)
        assert (await execution(api, wid, run["window_execution_id"]))["status"] == "FAILED"

    run_api(scenario)
