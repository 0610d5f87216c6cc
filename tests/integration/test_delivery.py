"""A result the server has acknowledged survives the server's death (issue 17): a real
server process is killed with SIGKILL right after it answers an output upload, then right
after it acknowledges the result, and after a restart both are there, whole.  The node is
played over HTTPS by the test (the server's side is what is tested)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import httpx
import pytest

from agent import wire
from agent.identity import NodeKey
from tests.integration.harness import Server, wait_for

pytestmark = pytest.mark.integration

ROUNDS = 2


class FakeNode:
    """A registered node that speaks the agent routes itself."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.key = NodeKey.generate()
        activation = server.activation()
        with self._client() as client:
            registered = client.post(
                wire.ROUTE_REGISTER,
                json={
                    "activation_id": activation["activation_id"],
                    "activation_code": activation["activation_code"],
                    "public_key": self.key.public_key_b64,
                    "hostname": "played-by-a-test",
                },
            )
        assert registered.status_code == 201, registered.text
        assert registered.json()[wire.KEY_MAX_REQUEST_BYTES] == wire.MAX_REQUEST_BYTES
        self.node_id: str = registered.json()["node_id"]
        self.token = ""

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, verify=self.server.tls(), timeout=30)

    def sign_in(self) -> None:
        with self._client() as client:
            nonce = client.post(wire.ROUTE_CHALLENGE, json={"node_id": self.node_id})
            stamp = int(time.time())
            payload = wire.token_signing_payload(self.node_id, nonce.json()["nonce"], stamp)
            issued = client.post(
                wire.ROUTE_TOKEN,
                json={
                    "node_id": self.node_id,
                    "nonce": nonce.json()["nonce"],
                    "timestamp": stamp,
                    "signature": self.key.sign_b64(payload),
                },
            )
        assert issued.status_code == 200, issued.text
        self.token = issued.json()["token"]

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        with self._client() as client:
            return client.request(
                method, path, headers={"authorization": f"Bearer {self.token}"}, **kw
            )

    def poll(self, acks: list[str], wait: float) -> list[dict[str, Any]]:
        answer = self.call("POST", wire.ROUTE_POLL, json={"acks": acks, "wait_seconds": wait})
        assert answer.status_code == 200, answer.text
        assert answer.json()[wire.KEY_MAX_REQUEST_BYTES] == wire.MAX_REQUEST_BYTES
        got: list[dict[str, Any]] = answer.json()["messages"]
        return got


def send_command(server: Server, node: FakeNode) -> str:
    with server.api() as api:
        sent = api.post(
            "/v1/commands",
            json={"targets": [node.node_id], "parameters": {"commands": ["echo"]}},
        )
    assert sent.status_code == 201, sent.text
    command_id: str = sent.json()["command_id"]

    def delivered() -> bool:
        got = node.poll([], 1)
        node.poll([m["id"] for m in got], 0)
        return any(m["body"].get("command_id") == command_id for m in got)

    wait_for(delivered, 30, f"command {command_id} delivered")
    return command_id


def result(command_id: str, output: bytes, digest: str) -> list[dict[str, Any]]:
    step = {
        "name": "run",
        "action": "aws:runShellScript",
        "status": wire.ST_SUCCESS,
        "response_code": 0,
        "stdout": output[: wire.STDOUT_RECORD_CHARS].decode(),
        "stderr": "",
        "stdout_bytes": len(output),
        "stderr_bytes": 0,
    }
    final = {
        "command_id": command_id,
        "status": wire.ST_SUCCESS,
        "status_details": wire.ST_SUCCESS,
        "response_code": 0,
        "ended_at": time.time(),
        "steps": [step],
    }
    uploaded = {
        "command_id": command_id,
        "step_index": 0,
        "stream": "stdout",
        "size": len(output),
        "sha256": digest,
    }
    return [
        dict(wire.make_message(wire.MSG_OUTPUT_UPLOADED, uploaded)),
        dict(wire.make_message(wire.MSG_INVOCATION_UPDATE, final)),
    ]


def command_status(server: Server, command_id: str) -> str:
    with server.api() as api:
        status: str = api.get(f"/v1/commands/{command_id}").json()["status"]
    return status


def restart_after_kill9(server: Server) -> None:
    assert server.proc is not None
    server.proc.kill9()  # no shutdown, no flush: only what was durable survives
    server.start()


def test_an_acknowledged_result_survives_a_sigkill_of_the_server(server: Server) -> None:
    node = FakeNode(server)
    node.sign_in()
    node.poll([], 0)  # online: commands go out at once
    for round_ in range(ROUNDS):
        command_id = send_command(server, node)
        output = (f"round {round_} " * 20_000).encode() + os.urandom(8).hex().encode()
        digest = hashlib.sha256(output).hexdigest()
        put = node.call("PUT", f"{wire.ROUTE_OUTPUT}/{command_id}/0/stdout", content=output)
        assert put.status_code == 200, put.text
        assert put.json() == {"size": len(output), "sha256": digest}
        restart_after_kill9(server)  # right after the upload's answer

        messages = result(command_id, output, digest)
        answer = node.call("POST", wire.ROUTE_MESSAGES, json={"messages": messages})
        assert answer.status_code == 200, answer.text
        statuses = [r["status"] for r in answer.json()["results"]]
        assert statuses == [wire.RESULT_ACCEPTED] * 2
        restart_after_kill9(server)  # right after the acknowledgement

        with server.api() as api:
            shown = api.get(f"/v1/commands/{command_id}/invocations/{node.node_id}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["status"] == wire.ST_SUCCESS, shown.json()
            assert shown.json()["steps"][0]["stdout_bytes"] == len(output)
            full = api.get(f"/v1/commands/{command_id}/invocations/{node.node_id}/output")
        assert full.status_code == 200
        assert hashlib.sha256(full.content).hexdigest() == digest
        # The restarted dispatcher moves the command on.
        wait_for(lambda c=command_id: command_status(server, c) == "Success", 30, "Success")
        # The agent, not knowing, sends it all again: stored once, answered duplicate.
        again = node.call("POST", wire.ROUTE_MESSAGES, json={"messages": messages})
        assert [r["status"] for r in again.json()["results"]] == [wire.RESULT_DUPLICATE] * 2
        with server.db() as db:
            rows = db.execute(
                "SELECT count(*) FROM processed_messages WHERE node_id = ? AND id IN (?, ?)",
                (node.node_id, messages[0]["id"], messages[1]["id"]),
            ).fetchone()
        assert rows == (2,), json.dumps(rows)
