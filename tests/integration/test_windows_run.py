"""A maintenance window end to end: a real server (its scheduler loop, its lease, the real
clock) starts a window a few seconds after it is created, sends its RUN_COMMAND task to a
real agent, and records the execution SUCCESS once the agent's result is in, with the pseudo
parameters replaced in what the node ran."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.integration.test_run_command import Corral, agents, corral
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

__all__ = ["corral"]


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def as_json(corral: Corral, *args: str) -> Any:
    code, out, err = corral(*args, "--output", "json")
    assert code == 0, err
    return json.loads(out)


def test_a_window_runs_its_task_on_a_real_agent(
    server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1, role="web")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    made = as_json(
        corral, "mw", "create", "--name", "right-now",
        "--schedule", f"at({soon.strftime('%Y-%m-%dT%H:%M:%S')})",
        "--duration", "1", "--cutoff", "0",
    )  # fmt: skip
    wid = made["window_id"]
    target = as_json(corral, "mw", "register-targets", wid, "--targets", "tag:role=web")
    as_json(
        corral, "mw", "register-task", wid, "--document", "AWS-RunShellScript",
        "--param", "commands=echo window {{WINDOW_ID}} run {{WINDOW_EXECUTION_ID}}",
        "--targets", f"window-target:{target['window_target_id']}",
    )  # fmt: skip

    def finished() -> dict[str, Any] | None:
        runs = as_json(corral, "mw", "executions", wid)
        return runs[0] if runs and runs[0]["status"] not in ("PENDING", "IN_PROGRESS") else None

    run = wait_for(finished, 90, "the window's execution to end")
    assert run["status"] == "SUCCESS", run
    detail = as_json(corral, "mw", "execution-tasks", wid, run["window_execution_id"])
    (te,) = detail["tasks"]
    (command_id,) = te["command_ids"]
    shown = as_json(corral, "commands", "show", command_id)
    (invocation,) = shown["invocations"]
    assert invocation["node_id"] == agent.node_id
    stdout = invocation["steps"][0]["stdout"]
    assert stdout.strip() == f"window {wid} run {run['window_execution_id']}"
    # at(): once; the window has no next start.
    assert as_json(corral, "mw", "show", wid)["next_execution_time"] is None
