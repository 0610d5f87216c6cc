"""The agent's delivery against a real server: results that JSON escapes to six bytes a
character, queued during an outage, arrive whole in bounded batches and nothing is dead; a
script sees its node id and command id; ``corral-agent outbox`` works beside the daemon."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import BIN, Agent, Server, wait_for
from tests.integration.test_run_agent import finished, invocation, send, started_agent
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

STDOUT_CHARS = 24_000  # a whole record: 144,000 bytes once escaped
STDERR_CHARS = 8_000


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def outbox(agent: Agent, *args: str) -> Any:
    result = subprocess.run(
        [
            str(BIN / "corral-agent"),
            "outbox",
            *args,
            "--state-dir",
            str(agent.state_dir),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("transport", ["websocket", "https"])
def test_escaped_results_queued_in_an_outage_all_arrive(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path, transport: str
) -> None:
    """Eight results of ~190 KB each on the wire (control characters: six bytes each) are
    more than one request of 1 MiB: they go in several batches, none is buried; on the
    control channel (messages frames, acked frames) and on the long-poll (POST)."""
    agent = started_agent(make_agent, transport=transport)
    go = tmp_path / "go"
    ids = [
        send(
            server,
            agent,
            f"while [ ! -e {go} ]; do sleep 0.05; done",
            f"head -c {STDOUT_CHARS} /dev/zero | tr '\\0' '\\1'",
            f"head -c {STDERR_CHARS} /dev/zero | tr '\\0' '\\1' >&2",
        )
        for _ in range(8)
    ]
    for command_id in ids:
        wait_for(lambda c=command_id: invocation(server, c)["status"] == "InProgress", 30, "start")
    server.stop()
    go.touch()
    commands = agent.state_dir / "commands"
    wait_for(lambda: all((commands / c / "result.json").exists() for c in ids), 30, "the results")
    server.start()
    for command_id in ids:
        inv = wait_for(lambda c=command_id: finished(server, c), 60, "every result")
        step = inv["steps"][0]
        assert inv["status"] == "Success"
        assert step["stdout"] == "\x01" * STDOUT_CHARS
        assert step["stderr"] == "\x01" * STDERR_CHARS
    wait_for(lambda: agent.status()["outbox_depth"] == 0, 30, "the outbox to drain")
    assert agent.status()["dead"] == 0
    assert outbox(agent, "list-dead") == []


def test_a_script_sees_its_node_id_and_command_id(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = started_agent(make_agent)
    command_id = send(
        server,
        agent,
        'echo "$AWS_SSM_INSTANCE_ID $CORRAL_NODE_ID $CORRAL_COMMAND_ID"',
        'echo "region=${AWS_SSM_REGION_NAME-unset}"',
    )
    inv = wait_for(lambda: finished(server, command_id), 30, "the invocation to end")
    assert inv["status"] == "Success"
    assert inv["steps"][0]["stdout"] == (
        f"{agent.node_id} {agent.node_id} {command_id}\nregion=unset\n"
    )


def test_retry_dead_beside_a_running_agent(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    """A dead message goes back with ``retry-dead`` while the daemon runs, and the daemon
    sends it: the server shows the node event it carried."""
    import asyncio

    from agent import wire
    from agent.outbox import Outbox

    agent = started_agent(make_agent)
    wait_for(lambda: agent.status()["last_contact"] is not None, 30, "the first contact")
    assert agent.stop() == 0  # the dead row is made while no sender runs

    async def bury() -> str:
        box = Outbox(agent.state_dir / "outbox.db")
        try:
            body = {
                "code": "retry_test",
                "severity": "info",
                "message": "sent again by retry-dead",
                "time": time.time(),
            }
            message = wire.make_message(wire.MSG_NODE_EVENT, body)
            await box.put(message)
            await box.bury([message["id"]], "rejected: a test")
            return message["id"]
        finally:
            box.close()

    msg_id = asyncio.run(bury())
    agent.start()
    wait_for(lambda: agent.status()["outbox_depth"] == 0, 30, "the agent to send the rest")
    assert agent.status()["dead"] == 1
    assert [row["id"] for row in outbox(agent, "list-dead")] == [msg_id]
    assert outbox(agent, "retry-dead") == {"moved": 1}

    def shown() -> bool:
        with server.api() as api:
            response = api.get(f"/v1/nodes/{agent.node_id}/events")
        return response.status_code == 200 and "sent again by retry-dead" in response.text

    wait_for(shown, 30, "the event to reach the server")
    assert agent.status()["dead"] == 0
