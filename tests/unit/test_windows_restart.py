"""A server stopped at any point of a window's start loses nothing and doubles nothing: two
servers (two ControlPlanes on one data dir, one after the other, the first "killed" at a
chosen point) and a database that holds the claim.

- stopped after the claim and the task's IN_PROGRESS are committed but before its command was
  sent: the next server sends it, with the id derived from the task execution;
- stopped after the command was sent but before anything recorded it: the next server finds
  the command and does not send it again;
- two ticks at the same time (two schedulers for a moment) record the start once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from control_plane.services.commands.service import CommandService
from tests.unit.conftest import Api, RunApi
from tests.unit.test_windows_job import (
    epoch,
    execution,
    executions,
    report,
    targets,
    task,
    tick,
    window,
    window_commands,
)


class Killed(BaseException):
    """The server process dies here (nothing after it runs, nothing catches it)."""


def test_stopped_between_claim_and_send_the_next_server_sends_once(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids: dict[str, Any] = {}

    async def first(api: Api) -> None:
        node = await api.new_node(tags={"role": "web"})
        created = await window(api)
        ids["window"] = created["window_id"]
        ids["node"] = node
        await targets(api, created["window_id"], "tag:role=web")
        await task(api, created["window_id"])

        async def dies(*_args: Any, **_kw: Any) -> Any:
            raise Killed

        monkeypatch.setattr(CommandService, "send", dies)
        api.clock.now = epoch(created["next_execution_time"])
        with pytest.raises(Killed):
            await tick(api)
        monkeypatch.undo()
        assert await window_commands(api, created["window_id"]) == []

    async def second(api: Api) -> None:
        wid = ids["window"]
        (run,) = await executions(api, wid)  # the claim was committed with its execution
        await tick(api)
        await tick(api)
        assert len(await executions(api, wid)) == 1
        shown = await execution(api, wid, run["window_execution_id"])
        (te,) = shown["tasks"]
        assert await window_commands(api, wid) == [te["task_execution_id"]]
        node = ids["node"]
        node.token = await api.node_token(node.node_id, node.key)
        await report(api, node, te["task_execution_id"])
        await tick(api)
        assert (await execution(api, wid, run["window_execution_id"]))["status"] == "SUCCESS"

    run_api(first)
    run_api(second)


def test_stopped_after_send_before_recording_nothing_is_sent_twice(
    run_api: RunApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids: dict[str, str] = {}

    async def first(api: Api) -> None:
        await api.new_node(tags={"role": "web"})
        created = await window(api)
        ids["window"] = created["window_id"]
        await targets(api, created["window_id"], "tag:role=web")
        await task(api, created["window_id"])
        real = CommandService.send

        async def sends_then_dies(self: CommandService, **kw: Any) -> Any:
            await real(self, **kw)
            raise Killed

        monkeypatch.setattr(CommandService, "send", sends_then_dies)
        api.clock.now = epoch(created["next_execution_time"])
        with pytest.raises(Killed):
            await tick(api)
        monkeypatch.undo()
        assert len(await window_commands(api, created["window_id"])) == 1

    async def second(api: Api) -> None:
        wid = ids["window"]
        await tick(api)
        await tick(api)
        assert len(await executions(api, wid)) == 1
        assert len(await window_commands(api, wid)) == 1

    run_api(first)
    run_api(second)


def test_two_ticks_at_once_record_a_start_once(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        await api.new_node(tags={"role": "web"})
        created = await window(api)
        wid = created["window_id"]
        await targets(api, wid, "tag:role=web")
        await task(api, wid)
        api.clock.now = epoch(created["next_execution_time"])
        await asyncio.gather(tick(api), tick(api), tick(api))
        assert len(await executions(api, wid)) == 1
        assert len(await window_commands(api, wid)) == 1

    run_api(scenario)
