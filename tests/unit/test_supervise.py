"""Supervised background loops: a loop that raises is logged, counted and started again; it
never ends the server's task group; /readyz names a loop that keeps failing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from agent import wire
from control_plane.services.ratelimit import RateLimits
from control_plane.services.supervise import Passed, Supervisor
from tests.unit.conftest import Api, FakeClock, RunApi
from tests.unit.test_execution_support import eventually
from tests.unit.test_server_api_messages import poll


def quick(clock: Callable[[], float]) -> Supervisor:
    return Supervisor(clock, backoff_base=0.001, backoff_cap=0.01, failing_after=3, window=60)


def test_a_loop_that_raises_is_started_again_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(1000.0)
    supervisor = quick(clock)
    runs: list[int] = []

    async def flaky(passed: Passed) -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
        passed()
        await asyncio.Event().wait()  # healthy: runs until cancelled

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(supervisor.run("flaky", flaky))

            async def healthy() -> bool:
                loop = supervisor.loops.get("flaky")
                return loop is not None and loop.last_pass_at is not None

            await eventually(healthy, "the loop ran again after its failures")
            task.cancel()  # cancellation ends it (the task group does not see an error)

    with caplog.at_level(logging.ERROR, logger="corral.supervise"):
        asyncio.run(main())
    health = supervisor.loops["flaky"]
    assert len(runs) == 3 and health.failures == 2
    assert "database is locked" in (health.last_error or "")
    assert sum("starting it again" in r.getMessage() for r in caplog.records) == 2
    assert supervisor.failing() == []  # two failures: under the threshold


def test_a_loop_that_keeps_failing_is_reported_until_its_failures_age_out() -> None:
    clock = FakeClock(1000.0)
    supervisor = quick(clock)

    async def broken(_passed: Passed) -> None:
        raise RuntimeError("a bug")

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(supervisor.run("broken", broken))

            async def failing() -> bool:
                return bool(supervisor.failing())

            await eventually(failing, "the loop is reported failing")
            task.cancel()

    asyncio.run(main())
    [report] = supervisor.failing()
    assert report["loop"] == "broken" and report["recent_failures"] >= 3
    assert "times in the last" in report["why"]
    clock.advance(61)
    assert supervisor.failing() == []


def test_a_loop_that_stops_completing_passes_is_reported() -> None:
    clock = FakeClock(1000.0)
    supervisor = quick(clock)

    async def stuck(passed: Passed) -> None:
        passed()
        await asyncio.Event().wait()  # e.g. a query that never returns

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(supervisor.run("stuck", stuck, stale_after=30))

            async def started() -> bool:
                return supervisor.loops.get("stuck") is not None and (
                    supervisor.loops["stuck"].last_pass_at is not None
                )

            await eventually(started, "the loop made its first pass")
            assert supervisor.failing() == []
            clock.advance(31)
            [report] = supervisor.failing()
            assert report["loop"] == "stuck" and "no pass completed" in report["why"]
            task.cancel()

    asyncio.run(main())


def test_a_failing_dispatcher_keeps_the_server_up_and_readyz_names_it(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        api.cp.rate_limits = RateLimits(operator_rate=0, node_rate=0, auth_base_delay=0)
        supervisor = api.cp.supervisor
        supervisor.backoff_base, supervisor.backoff_cap = 0.01, 0.05
        dispatcher = api.cp.dispatcher
        real_round = dispatcher.round

        async def broken_round() -> None:
            raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

        dispatcher.round = broken_round  # type: ignore[method-assign]
        node = await api.new_node()
        sent = await api.client.post(
            "/v1/commands",
            json={"targets": [node.node_id], "parameters": {"commands": ["true"]}},
            headers=api.admin,
        )
        assert sent.status_code in (200, 201), sent.text
        command_id = sent.json()["command_id"]

        async def not_ready() -> bool:
            return (await api.client.get("/readyz")).status_code == 503

        await eventually(not_ready, "readyz reports the failing loop")
        answer = (await api.client.get("/readyz")).json()
        assert answer["error"]["code"] == "not_ready"
        assert "dispatcher" in answer["error"]["message"]
        assert [loop["loop"] for loop in answer["loops"]] == ["dispatcher"]
        assert "database is locked" not in str(answer)  # public: names and counts only
        assert (await api.client.get("/healthz")).status_code == 200  # the server is up

        dispatcher.round = real_round  # type: ignore[method-assign]
        supervisor.window = 0.5  # let the failures age out quickly

        async def delivered() -> bool:
            got = await poll(api, node, [], 0.2)
            return any(m["body"].get("command_id") == command_id for m in got)

        await eventually(delivered, "the restarted dispatcher sent the command")

        async def ready() -> bool:
            return (await api.client.get("/readyz")).status_code == 200

        await eventually(ready, "readyz is ready again")
        shown = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
        assert shown.json()["status"] == wire.ST_IN_PROGRESS

    run_api(scenario)
