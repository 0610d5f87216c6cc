"""Every invocation reaches a final status, through the API as an operator and an agent see it
(the in-process server; the test moves the server's clock and waits for conditions):
deregistering a node ends its invocations, and a result that comes after the server ended one
for want of a report is kept, shown with a note and audited, its status unchanged."""

from __future__ import annotations

from typing import Any

from agent import wire
from control_plane.services.commands.dispatcher import NO_REPORT_GRACE_SECONDS
from control_plane.services.commands.state import DETAIL_NO_REPORT, DETAIL_NODE_DEREGISTERED
from control_plane.services.ratelimit import RateLimits
from tests.unit.conftest import Api, Node, RunApi
from tests.unit.test_execution_support import eventually
from tests.unit.test_server_api_messages import poll

TIMEOUT = 30


async def send_command(api: Api, nodes: list[Node], **fields: Any) -> str:
    response = await api.client.post(
        "/v1/commands",
        json={
            "targets": [n.node_id for n in nodes],
            "parameters": {"commands": ["echo hi"]},
            "timeout_seconds": TIMEOUT,
            **fields,
        },
        headers=api.admin,
    )
    assert response.status_code in (200, 201), response.text
    command_id: str = response.json()["command_id"]
    return command_id


async def command(api: Api, command_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/commands/{command_id}", headers=api.admin)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def invocation(api: Api, command_id: str, node: Node) -> dict[str, Any]:
    shown = await command(api, command_id)
    found: dict[str, Any] = next(i for i in shown["invocations"] if i["node_id"] == node.node_id)
    return found


def unlimited(api: Api) -> None:
    """These tests poll for conditions while the clock stands still: no rate limits."""
    api.cp.rate_limits = RateLimits(operator_rate=0, node_rate=0, auth_base_delay=0)


def update(command_id: str, status: str, **body: Any) -> dict[str, Any]:
    return dict(
        wire.make_message(
            wire.MSG_INVOCATION_UPDATE,
            {"command_id": command_id, "status": status, "status_details": status, **body},
        )
    )


async def first_to_get(api: Api, nodes: list[Node], command_id: str) -> Node:
    """The node the command was sent to first (targets registered in the same instant are
    in no particular order)."""
    for _ in range(100):
        for node in nodes:
            got = await poll(api, node, [], 0.1)
            if any(m["body"].get("command_id") == command_id for m in got):
                return node
    raise AssertionError(f"command {command_id} reached none of its nodes")


async def start(api: Api, node: Node, command_id: str) -> None:
    """Play the node's agent: take the command, say it started."""

    async def delivered() -> bool:
        got = await poll(api, node, [], 0.5)
        return any(m["body"].get("command_id") == command_id for m in got)

    await eventually(delivered, "the command reached the node")
    stored = await api.send(node, [update(command_id, wire.ST_IN_PROGRESS)])
    assert stored.status_code == 200, stored.text


def test_deregistering_a_node_ends_its_invocations_and_the_command(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        unlimited(api)
        nodes = [await api.new_node(), await api.new_node()]
        command_id = await send_command(api, nodes, max_concurrency="1")
        running = await first_to_get(api, nodes, command_id)  # the other waits its turn
        never = nodes[1] if running is nodes[0] else nodes[0]
        await start(api, running, command_id)
        for node in (running, never):
            answer = await api.client.post(
                f"/v1/nodes/{node.node_id}/deregister", headers=api.admin
            )
            assert answer.status_code == 200, answer.text

        async def ended() -> bool:
            return (await command(api, command_id))["completed_at"] is not None

        await eventually(ended, "the command ended")
        shown = await command(api, command_id)
        statuses = {i["node_id"]: (i["status"], i["status_details"]) for i in shown["invocations"]}
        assert statuses == {
            running.node_id: (wire.ST_CANCELLED, DETAIL_NODE_DEREGISTERED),
            never.node_id: (wire.ST_UNDELIVERABLE, DETAIL_NODE_DEREGISTERED),
        }
        assert shown["status"] == wire.ST_FAILED and shown["error_count"] == 0
        # The deregistration itself is audited as before.
        audit = await api.client.get(
            "/v1/audit", params={"action": "nodes:Deregister"}, headers=api.admin
        )
        assert {e["resource"] for e in audit.json()["entries"]} == {
            f"node/{running.node_id}",
            f"node/{never.node_id}",
        }

    run_api(scenario)


def test_a_late_result_is_kept_shown_and_audited_but_the_status_stays(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        unlimited(api)
        node = await api.new_node()
        command_id = await send_command(api, [node])
        await start(api, node, command_id)
        api.clock.advance(TIMEOUT + NO_REPORT_GRACE_SECONDS + 1)

        async def silent() -> bool:
            return (await invocation(api, command_id, node))["status"] == wire.ST_TIMED_OUT

        await eventually(silent, "the silent invocation timed out")
        shown = await invocation(api, command_id, node)
        assert shown["status_details"] == DETAIL_NO_REPORT
        assert shown["late_result_at"] is None and shown["note"] is None
        step = {
            "name": "run",
            "action": "aws:runShellScript",
            "status": wire.ST_SUCCESS,
            "response_code": 0,
            "stdout": "LATE-OUTPUT\n",
            "stderr": "",
            "stdout_bytes": 12,
            "stderr_bytes": 0,
        }
        late = update(command_id, wire.ST_SUCCESS, response_code=0, steps=[step])
        for message in (late, update(command_id, wire.ST_SUCCESS, response_code=0, steps=[])):
            stored = await api.send(node, [message])
            assert stored.status_code == 200, stored.text
        shown = await invocation(api, command_id, node)
        assert (shown["status"], shown["status_details"]) == (wire.ST_TIMED_OUT, DETAIL_NO_REPORT)
        assert shown["response_code"] == 0
        assert shown["steps"][0]["stdout"] == "LATE-OUTPUT\n"  # the first late result, kept
        assert shown["late_result_at"] is not None and "arrived after" in shown["note"]
        whole = await command(api, command_id)
        assert whole["status"] == wire.ST_TIMED_OUT  # decided before; it does not change
        audit = await api.client.get(
            "/v1/audit", params={"action": "commands:LateResult"}, headers=api.admin
        )
        entries = audit.json()["entries"]
        assert len(entries) == 1  # the repeat is not a second late arrival
        assert entries[0]["resource"] == f"command/{command_id}"
        assert entries[0]["identity_type"] == "node"
        assert entries[0]["identity_id"] == node.node_id

    run_api(scenario)
