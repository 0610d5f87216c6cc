"""State Manager end to end: a real server and real agents.  An association created with
the CLI applies at once on the nodes its tag targets (a file appears on each), its result
becomes each node's status and Association compliance, the agents hold the association in
their state dir (`corral-agent status` lists it), a node that gains the tag gets it within a
reconcile, and `corral associations run-now` runs it again."""

from __future__ import annotations

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


def cli_json(corral: Corral, *args: str) -> Any:
    code, out, err = corral(*args, "--output", "json")
    assert code == 0, err
    return json.loads(out)


def test_an_association_applies_reports_and_follows_its_targets(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    web = agents(make_agent, server, 2, role="web")
    script = f"touch {tmp_path}/applied-$CORRAL_NODE_ID && echo applied"
    made = cli_json(
        corral, "associations", "create", "--name", "touch-marker", "--document",
        "AWS-RunShellScript", "--targets", "tag:role=web", "--param", f"commands={script}",
        "--schedule", "rate(1 day)", "--compliance-severity", "HIGH",
    )  # fmt: skip
    association_id = made["association_id"]

    def overview() -> dict[str, Any]:
        shown: dict[str, Any] = cli_json(corral, "associations", "show", association_id)
        return shown

    wait_for(lambda: overview()["overview"]["status_counts"] == {"Success": 2}, 60, "applied")
    for agent in web:
        assert (tmp_path / f"applied-{agent.node_id}").exists()
        items = cli_json(corral, "compliance", "list", "--node", agent.node_id)
        mine = [i for i in items if i.get("id", i.get("Id")) == association_id]
        assert mine and mine[0].get("status", mine[0].get("Status")) == "COMPLIANT", items
        # The node keeps the association to enforce it while the server is out of reach.
        wait_for(lambda a=agent: "touch-marker" in json.dumps(a.status()), 30, "held on the node")

    runs = cli_json(corral, "associations", "executions", association_id)
    assert [r["trigger"] for r in runs] == ["create"]
    targets = cli_json(
        corral, "associations", "execution-targets", association_id, runs[0]["execution_id"]
    )
    assert sorted(t["node_id"] for t in targets) == sorted(a.node_id for a in web)
    assert all(t["status"] == "Success" for t in targets)

    # A node that gains the tag gets the association (the tag change wakes the scheduler).
    late = make_agent("late")
    with (late.state_dir / "agent.toml").open("a") as fh:
        fh.write("poll_wait_seconds = 5\nkill_grace_seconds = 1\n")
    assert late.register(server.activation()).returncode == 0
    late.start()
    code, _out, err = corral("nodes", "tag", late.node_id, "role=web")
    assert code == 0, err
    wait_for(lambda: (tmp_path / f"applied-{late.node_id}").exists(), 60, "applied to the new node")

    again = cli_json(corral, "associations", "run-now", association_id)
    assert again["trigger"] == "run-now" and again["target_count"] == 3
    wait_for(
        lambda: (
            cli_json(corral, "associations", "executions", association_id)[0]["status"] == "Success"
        ),
        60,
        "run-now done",
    )
