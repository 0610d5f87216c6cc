"""Every invocation reaches a final status, end to end: a real server, real agents, real
scripts.  The issue's row: a node deregistered while its ``sleep 30`` runs left the
invocation and the command InProgress for ever; an offline first target held the whole ramp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def start_agents(make_agent: Callable[..., Agent], server: Server, n: int) -> list[Agent]:
    activation = server.activation(registration_limit=n)
    started = []
    for i in range(n):
        agent = make_agent(f"n{i}")
        with (agent.state_dir / "agent.toml").open("a") as fh:
            fh.write("poll_wait_seconds = 5\nkill_grace_seconds = 1\n")
        assert agent.register(activation).returncode == 0
        agent.start()
        started.append(agent)
    for agent in started:
        wait_for(lambda a=agent: server.node(a.node_id)["status"] == "Online", 30, "Online")
    return started


def send(server: Server, node_ids: list[str], script: str, **fields: Any) -> str:
    with server.api() as api:
        response = api.post(
            "/v1/commands",
            json={"targets": node_ids, "parameters": {"commands": [script]}, **fields},
        )
    assert response.status_code in (200, 201), response.text
    command_id: str = response.json()["command_id"]
    return command_id


def show(server: Server, command_id: str) -> dict[str, Any]:
    with server.api() as api:
        response = api.get(f"/v1/commands/{command_id}")
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def statuses(server: Server, command_id: str) -> dict[str, tuple[str, str]]:
    return {
        i["node_id"]: (i["status"], i["status_details"])
        for i in show(server, command_id)["invocations"]
    }


def test_deregistering_a_node_mid_command_ends_its_invocation_and_the_command(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    (agent,) = start_agents(make_agent, server, 1)
    started = tmp_path / "started"
    command_id = send(server, [agent.node_id], f"touch {started}; sleep 30")
    wait_for(started.exists, 30, "the script started")
    wait_for(
        lambda: statuses(server, command_id)[agent.node_id][0] == "InProgress",
        30,
        "the agent said it started",
    )
    with server.api() as api:
        assert api.post(f"/v1/nodes/{agent.node_id}/deregister").status_code == 200
    # Within seconds, well before the script would have ended.
    ended = wait_for(lambda: show(server, command_id)["completed_at"], 15, "the command ended")
    assert ended
    assert statuses(server, command_id) == {agent.node_id: ("Cancelled", "node deregistered")}
    assert show(server, command_id)["status"] == "Failed"


def test_an_offline_first_target_does_not_hold_back_the_others(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    first, second = start_agents(make_agent, server, 2)
    first.stop()
    wait_for(
        lambda: server.node(first.node_id)["status"] == "ConnectionLost",
        90,
        "the server sees the first node gone",
    )
    command_id = send(server, [first.node_id, second.node_id], "echo ran", max_concurrency="2")
    wait_for(
        lambda: statuses(server, command_id)[second.node_id][0] == "Success",
        30,
        "the second node ran it while the first is offline",
    )
    assert statuses(server, command_id)[first.node_id][0] == "Delayed"
    first.start()  # back: it gets the command it missed, and the command ends
    wait_for(lambda: show(server, command_id)["completed_at"], 60, "the command ended")
    assert show(server, command_id)["status"] == "Success"
