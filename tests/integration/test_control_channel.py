"""The websocket control channel end to end (issue 10): a real server, real agents, a TCP
proxy between them to cut and freeze connections, and a raw websocket client for the bad
input an agent would never send."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent import wire
from agent.identity import NodeKey
from tests.integration.harness import Agent, Server, wait_for
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_run_agent import finished, send
from tests.unit.test_execution_support import eventually, kill_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def node_token(server: Server, agent: Agent) -> str:
    """A fresh access token for a registered agent's node, bought with its key."""
    key = NodeKey.load(agent.state_dir / "node.key")
    with httpx.Client(base_url=server.url, verify=server.tls(), timeout=10) as client:
        nonce = client.post(wire.ROUTE_CHALLENGE, json={"node_id": agent.node_id}).json()["nonce"]
        stamp = int(time.time())
        signature = key.sign_b64(wire.token_signing_payload(agent.node_id, nonce, stamp))
        answer = client.post(
            wire.ROUTE_TOKEN,
            json={"node_id": agent.node_id, "nonce": nonce, "timestamp": stamp,
                  "signature": signature},
        )  # fmt: skip
    token: str = answer.json()["token"]
    return token


def ws_url(server: Server) -> str:
    return server.url.replace("https://", "wss://") + wire.ROUTE_CONNECT


def open_channel(server: Server, token: str | None, **kw: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return connect(
        ws_url(server), ssl=server.tls(), additional_headers=headers, open_timeout=10, **kw
    )


async def refused(server: Server, token: str | None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as caught:
        async with open_channel(server, token):
            pass
    response = caught.value.response
    return response.status_code, json.loads(bytes(response.body or b"{}"))["error"]


def registered(make_agent: Callable[..., Agent], server: Server, name: str = "a") -> Agent:
    agent = make_agent(name)
    assert agent.register().returncode == 0
    return agent


def started(
    make_agent: Callable[..., Agent], name: str, url: str | None = None, **toml: Any
) -> Agent:
    agent = make_agent(name)
    settings = {"poll_wait_seconds": 5, "kill_grace_seconds": 1, **toml}
    agent.configure(**settings)
    kw = {"url": url} if url else {}
    assert agent.register(**kw).returncode == 0
    agent.start()
    return agent


def audit_denials(server: Server) -> list[dict[str, Any]]:
    with server.api() as api:
        entries: list[dict[str, Any]] = api.get(
            "/v1/audit", params={"outcome": "denied", "action": "agent:Authenticate"}
        ).json()["entries"]
    return entries


def test_an_upgrade_without_a_valid_credential_is_refused_and_audited(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = registered(make_agent, server)

    async def scenario() -> None:
        status, error = await refused(server, None)
        assert (status, error["code"]) == (401, "unauthorized")
        status, error = await refused(server, "nt.forged.token")
        assert status == 401
        token = node_token(server, agent)
        async with open_channel(server, token) as conn:
            hello = json.loads(await conn.recv())
            assert hello["type"] == wire.FRAME_HELLO and hello["node_id"] == agent.node_id
        with server.api() as api:
            assert api.post(f"/v1/nodes/{agent.node_id}/deregister").status_code == 200
        status, error = await refused(server, token)
        assert (status, error["code"]) == (401, wire.ERR_NODE_DEREGISTERED)

    asyncio.run(scenario())
    reasons = [e["error"] for e in audit_denials(server)]
    assert any("malformed" in r for r in reasons), reasons
    assert any("deregistered" in r for r in reasons), reasons


def test_bad_frames_close_one_channel_and_no_other(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    bystander = started(make_agent, "bystander")
    wait_for(lambda: server.node(bystander.node_id)["status"] == "Online", 30, "Online")
    victim = registered(make_agent, server, "victim")
    token = node_token(server, victim)

    async def close_code(frame: str | bytes) -> tuple[int | None, str]:
        async with open_channel(server, token, max_size=None) as conn:
            await conn.recv()  # hello
            await conn.send(frame)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await conn.recv()
            return conn.close_code, conn.close_reason or ""

    async def scenario() -> None:
        assert (await close_code(b"\x00binary"))[0] == wire.CLOSE_BAD_FRAME
        assert (await close_code("{not json"))[0] == wire.CLOSE_BAD_FRAME
        code, reason = await close_code(json.dumps({"type": "nope"}))
        assert code == wire.CLOSE_BAD_FRAME and "unknown type" in reason
        big = json.dumps({"type": "ack", "ids": ["x" * 1000] * (wire.MAX_FRAME_BYTES // 900)})
        assert (await close_code(big))[0] == 1009  # message too big

    asyncio.run(scenario())
    command_id = send(server, bystander, "echo unaffected")
    inv = wait_for(lambda: finished(server, command_id), 30, "the bystander's command")
    assert inv["steps"][0]["stdout"] == "unaffected\n"


def test_a_node_keeps_only_its_newest_channel(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = registered(make_agent, server)
    token = node_token(server, agent)

    async def scenario() -> None:
        conns = []
        for _ in range(30):
            conn = await open_channel(server, token)
            await conn.recv()  # hello
            conns.append(conn)
        for old in conns[:-1]:
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await old.recv()
            assert old.close_code == wire.CLOSE_REPLACED
        newest = conns[-1]
        with server.api() as api:
            assert api.post(f"/v1/nodes/{agent.node_id}/ping", json={"timeout_seconds": 0.2})
        frame = json.loads(await newest.recv())
        assert frame["type"] == wire.FRAME_DELIVER
        assert [m["type"] for m in frame["messages"]] == [wire.MSG_PING]
        await newest.close()

    asyncio.run(scenario())


def test_a_cut_connection_loses_no_result_and_runs_nothing_twice(
    server: Server, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    proxy = TcpProxy(server.port)
    try:
        agent = started(make_agent, "a", url=proxy.url)
        wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")
        go, running, counter = tmp_path / "go", tmp_path / "running", tmp_path / "counter"
        command_id = send(
            server, agent, f"echo ran >> {counter}", f"touch {running}",
            f"while [ ! -e {go} ]; do sleep 0.05; done", "echo finished",
        )  # fmt: skip
        wait_for(running.exists, 30, "the script to start")
        assert proxy.cut() >= 1  # every connection reset, mid-command
        go.touch()
        inv = wait_for(lambda: finished(server, command_id), 60, "the result after reconnecting")
        assert inv["status"] == "Success" and inv["steps"][0]["stdout"] == "finished\n"
        assert counter.read_text() == "ran\n"
        assert proxy.accepted >= 2  # it reconnected
        # A message queued while the connection was cut is delivered on the next one.
        proxy.cut()
        command_id = send(server, agent, f"echo again >> {counter}")
        wait_for(lambda: finished(server, command_id), 60, "the second command")
        assert counter.read_text() == "ran\nagain\n"
    finally:
        proxy.close()


@pytest.mark.server_config("channel_ping_seconds = 1")  # a half-open channel found in ~2 s
def test_a_half_open_channel_is_found_and_the_node_marked_lost(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    proxy = TcpProxy(server.port)
    try:
        agent = started(make_agent, "a", url=proxy.url)
        wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "Online")
        proxy.freeze()  # bytes stop, nothing closes: only pings can tell
        wait_for(
            lambda: server.node(agent.node_id)["status"] == "ConnectionLost",
            60,
            "the node marked ConnectionLost",
        )
        proxy.thaw()
        wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 90, "back Online")
        command_id = send(server, agent, "echo back")
        wait_for(lambda: finished(server, command_id), 60, "a command after the freeze")
    finally:
        proxy.close()


@pytest.mark.parametrize("transport", ["https", "websocket"])
def test_each_transport_can_be_forced(
    server: Server, make_agent: Callable[..., Agent], transport: str
) -> None:
    agent = make_agent("a")
    agent.state_dir.mkdir(parents=True, exist_ok=True)
    (agent.state_dir / "agent.toml").write_text(
        f'transport = "{transport}"\npoll_wait_seconds = 5\n'
    )
    assert agent.register().returncode == 0
    agent.start()
    command_id = send(server, agent, f"echo via-{transport}")
    inv = wait_for(lambda: finished(server, command_id), 60, "the command")
    assert inv["steps"][0]["stdout"] == f"via-{transport}\n"
    assert agent.proc is not None
    opened = "control channel open" in agent.proc.stderr
    assert opened == (transport == "websocket")


def test_the_tls_context_is_pinned(server: Server) -> None:
    """A client that does not trust the server's CA cannot open a channel."""

    async def scenario() -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(ws_url(server), ssl=ssl.create_default_context(), open_timeout=10):
                pass

    asyncio.run(scenario())


@pytest.mark.server_config("channel_max_opening = 1")
def test_channels_opening_at_once_are_bounded(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    """A reconnect storm is admitted a few at a time: past the bound an upgrade gets 503 with
    a Retry-After at once; a slot frees when its channel is open or gone."""
    agent = registered(make_agent, server)
    token = node_token(server, agent)

    async def scenario() -> None:
        signing_in = await connect(
            ws_url(server),
            ssl=server.tls(),
            additional_headers={wire.HEADER_NODE_ID: agent.node_id},
            open_timeout=10,
        )
        assert json.loads(await signing_in.recv())["type"] == wire.FRAME_CHALLENGE
        with pytest.raises(InvalidStatus) as caught:
            async with open_channel(server, token):
                pass
        response = caught.value.response
        assert response.status_code == 503
        assert json.loads(bytes(response.body or b"{}"))["error"]["code"] == wire.ERR_SERVER_BUSY
        assert 1 <= int(response.headers["retry-after"]) <= 10
        await signing_in.close()  # gone before signing in: its slot is free again

        async def opens() -> bool:
            try:
                async with open_channel(server, token) as conn:
                    return bool(json.loads(await conn.recv())["type"] == wire.FRAME_HELLO)
            except InvalidStatus:
                return False

        await eventually(opens, "the slot released", 10)
        # and an open channel holds no slot: a second one (it replaces the first) opens too
        async with open_channel(server, token) as first:
            assert json.loads(await first.recv())["type"] == wire.FRAME_HELLO
            async with open_channel(server, token) as second:
                assert json.loads(await second.recv())["type"] == wire.FRAME_HELLO

    asyncio.run(scenario())
