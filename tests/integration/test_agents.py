"""Real server, real agents: registration, presence, the outbox, restarts, deregistration."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable

import pytest

from tests.integration.harness import Agent, Server, wait_for

pytestmark = pytest.mark.integration


def online(server: Server, agent: Agent) -> bool:
    node = server.node(agent.node_id)
    return node["status"] == "Online" and node["platform"] != ""


def test_two_agents_register_and_appear_online(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    activation = server.activation(registration_limit=2, tags={"team": "web"}, name="webfarm")
    agents = [make_agent("one"), make_agent("two")]
    for agent in agents:
        result = agent.register(activation)
        assert result.returncode == 0, result.stderr
        assert agent.node_id.startswith("mi-") and len(agent.node_id) == 20
        agent.start()
    for agent in agents:
        wait_for(lambda a=agent: online(server, a), 30, f"{agent.name} Online")
    with server.api() as api:
        nodes = api.get("/v1/nodes").json()["nodes"]
        filtered = api.get("/v1/nodes", params={"filter": "tag:team=web"}).json()["nodes"]
        none = api.get("/v1/nodes", params={"filter": "tag:team=db"}).json()["nodes"]
    assert {n["node_id"] for n in nodes} == {a.node_id for a in agents}
    assert len(filtered) == 2 and none == []
    node = server.node(agents[0].node_id)
    assert node["tags"] == {"team": "web"}
    assert node["name"] == "webfarm"
    assert node["platform"] == "Linux" and node["agent_version"]
    assert node["registered_at"] and node["last_seen"]
    assert (agents[0].state_dir / "node.key").stat().st_mode & 0o777 == 0o600
    # Both nodes answer pings through the long-poll.
    with server.api() as api:
        for agent in agents:
            pong = api.post(f"/v1/nodes/{agent.node_id}/ping", json={"timeout_seconds": 20})
            assert pong.status_code == 200, pong.text
            assert pong.json()["rtt_ms"] > 0
    # The activation counted both registrations and refuses a third.
    third = make_agent("three").register(activation)
    assert third.returncode == 1
    assert "registration limit" in third.stderr and "Traceback" not in third.stderr


def test_outbox_survives_kill9_and_server_restart(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    server.stop()
    # The server is down: the agent's first heartbeat can only go to the outbox.
    agent.start()
    wait_for(lambda: agent.status()["outbox_depth"] >= 1, 20, "heartbeat queued")
    conn = sqlite3.connect(agent.state_dir / "outbox.db")
    queued = [r[0] for r in conn.execute("SELECT id FROM outbox")]
    conn.close()
    agent.kill9()
    assert agent.status()["outbox_depth"] == len(queued) >= 1
    server.start()
    agent.start()
    wait_for(lambda: agent.status()["outbox_depth"] == 0, 30, "outbox drained")

    def stored() -> bool:
        with server.db() as db:
            placeholders = ",".join("?" * len(queued))
            rows = db.execute(
                f"SELECT id FROM processed_messages WHERE id IN ({placeholders})", queued
            )
            return len(rows.fetchall()) == len(queued)

    wait_for(stored, 10, "queued messages stored by the server")
    assert online(server, agent)


def test_agent_rides_out_a_server_restart(server: Server, make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    agent.start()
    wait_for(lambda: online(server, agent), 30, "Online")
    assert server.stop() == 0
    assert agent.proc is not None
    wait_for(lambda: "retrying" in agent.proc.stderr, 20, "agent retrying")  # type: ignore[union-attr]
    server.start()
    with server.api() as api:

        def pong() -> bool:
            return (
                api.post(f"/v1/nodes/{agent.node_id}/ping", json={"timeout_seconds": 5}).status_code
                == 200
            )

        wait_for(pong, 40, "ping answered after the restart")
    assert agent.proc.alive()


def test_deregistration_stops_the_agent(server: Server, make_agent: Callable[..., Agent]) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    agent.start()
    wait_for(lambda: online(server, agent), 30, "Online")
    with server.api() as api:
        node = api.post(f"/v1/nodes/{agent.node_id}/deregister").json()
    assert node["status"] == "Deregistered"
    assert agent.proc is not None
    code = agent.proc.wait(timeout=20)
    assert code == 3
    assert "deregistered" in agent.proc.stderr
    # Its credentials are dead: a restarted agent fails the same way instead of retrying.
    agent.start()
    assert agent.proc.wait(timeout=20) == 3
    with server.api() as api:
        assert (
            api.post(f"/v1/nodes/{agent.node_id}/ping", json={"timeout_seconds": 1}).status_code
            == 400
        )


def test_activation_expiry_and_deletion_are_enforced(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    expired = server.activation()
    with server.db() as db:
        db.execute(
            "UPDATE activations SET expires_at = ? WHERE id = ?",
            (time.time() - 1, expired["activation_id"]),
        )
    result = make_agent("late").register(expired)
    assert result.returncode == 1 and "expired" in result.stderr

    deleted = server.activation()
    with server.api() as api:
        assert api.delete(f"/v1/activations/{deleted['activation_id']}").status_code == 200
    result = make_agent("gone").register(deleted)
    assert result.returncode == 1 and "does not exist" in result.stderr

    wrong = server.activation()
    result = make_agent("wrong").register(wrong, code="A" * 20)
    assert result.returncode == 1 and "code is wrong" in result.stderr
    assert not (make_agent("wrong").state_dir / "state.json").exists()


def test_registration_refuses_bad_ca_hash_url_and_twice(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    result = agent.register(ca_hash="sha256:" + "0" * 64)
    assert result.returncode == 1
    assert "CA hash mismatch" in result.stderr and "Traceback" not in result.stderr
    assert not (agent.state_dir / "state.json").exists()

    result = agent.register(url="http://127.0.0.1:1")
    assert result.returncode == 1 and "malformed URL" in result.stderr

    result = agent.register(url="https://127.0.0.1:1")
    assert result.returncode == 1 and "cannot reach" in result.stderr

    assert agent.register().returncode == 0
    first = agent.node_id
    again = agent.register()
    assert again.returncode == 1 and "already registered" in again.stderr
    forced = agent.register(force="1")
    assert forced.returncode == 0 and agent.node_id != first


def test_sigterm_stops_server_and_agent_cleanly(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    agent.start()
    wait_for(lambda: online(server, agent), 30, "Online")
    assert agent.proc is not None and server.proc is not None
    # A poll is held open right now; SIGTERM must not wait for it to time out.
    started = time.monotonic()
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=10) == 0
    server.proc.signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 25  # a bound on hanging, not a performance assertion
    assert "Traceback" not in server.proc.stderr + agent.proc.stderr


def test_run_keeps_retrying_while_the_server_is_unreachable(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent()
    assert agent.register().returncode == 0
    server.stop()
    agent.start()
    assert agent.proc is not None
    wait_for(lambda: agent.proc.stderr.count("retrying") >= 3, 30, "several retries")  # type: ignore[union-attr]
    assert agent.proc.alive()


def test_agent_honours_https_proxy_and_no_proxy(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    from tests.integration.connect_proxy import ConnectProxy

    proxy = ConnectProxy()
    try:
        via_proxy = make_agent("proxied")
        assert via_proxy.register().returncode == 0
        via_proxy.start(env={"HTTPS_PROXY": proxy.url, "NO_PROXY": ""})
        wait_for(lambda: online(server, via_proxy), 30, "Online through the proxy")
        assert f"127.0.0.1:{server.port}" in proxy.tunnels
        via_proxy.stop()

        before = len(proxy.tunnels)
        direct = make_agent("direct")
        assert direct.register().returncode == 0
        direct.start(env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"})
        wait_for(lambda: online(server, direct), 30, "Online directly")
        assert len(proxy.tunnels) == before
    finally:
        proxy.close()
