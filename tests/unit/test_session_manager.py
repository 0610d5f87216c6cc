"""The node's SessionManager (agent/sessions/manager.py), its dial (agent/sessions/dial.py),
its settings and its place in the daemon: start_session messages that are late, repeated,
malformed or beyond the node's limits; refused upgrades read as the relay's close codes."""

from __future__ import annotations

import asyncio
import http
import time
from pathlib import Path
from typing import Any, cast

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from agent import wire
from agent.config import AgentConfig, load_config
from agent.daemon import Daemon
from agent.errors import ConfigError
from agent.execution.launcher import Launcher
from agent.execution.settings import WorkerSettings
from agent.identity import NodeKey
from agent.outbox import Outbox
from agent.sessions.dial import session_url, websocket_dial
from agent.sessions.endpoint import ConnectionGone, Endpoint, SessionLost
from agent.sessions.manager import DISABLED, SessionManager
from agent.state import Registration
from agent.wire import Message
from tests.unit.test_session_support import (
    DEADLINE,
    Operator,
    Relay,
    agent_side,
    new_session_id,
    start_body,
    wait_until,
)

SHELL = wire.SESSION_TYPE_SHELL


def test_a_late_or_malformed_start_session_is_ignored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            late = start_body(SHELL, expires_at=time.time() - 1)
            assert manager.start(late) is None
            assert manager.start(start_body(SHELL, expires_at="soon")) is None
            assert manager.start(start_body(SHELL, session_id="s-../../x")) is None
            assert manager.start(start_body(SHELL, session_id=None)) is None
            assert manager.sessions == {} and relay.accepted == {}

    asyncio.run(scenario())


def test_a_second_start_session_for_a_running_session_is_ignored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(SHELL)
            first = manager.start(body)
            assert first is not None and manager.start(dict(body)) is None
            op = Operator(relay, body["session_id"])
            await op.send(b"echo one-shell\n")
            await op.until_output(b"one-shell\r\n")
            assert relay.accepted == {body["session_id"]: 1}
            assert manager.sessions == {body["session_id"]: first}
            await op.finish("done")
            await wait_until(lambda: not manager.sessions, "the session to be over")
            await op.aclose()

    asyncio.run(scenario())


def test_sessions_disabled_tell_the_operator_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path, sessions_enabled=False) as (relay, manager):
            body = start_body(SHELL)
            manager.start(body)
            op = Operator(relay, body["session_id"])
            assert await op.until_closed() == {"reason": DISABLED}
            assert not op.output
            await op.aclose()

    asyncio.run(scenario())


def test_one_session_past_max_sessions_is_refused_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path, max_sessions=1) as (relay, manager):
            first, second = start_body(SHELL), start_body(SHELL)
            manager.start(first)
            manager.start(second)
            op2 = Operator(relay, second["session_id"])
            assert await op2.until_closed() == {
                "reason": "this node runs 1 sessions already (agent.toml max_sessions)"
            }
            op1 = Operator(relay, first["session_id"])
            await op1.send(b"echo still-here\n")
            await op1.until_output(b"still-here\r\n")
            await op1.send(b"exit\n")
            await op1.until_closed()
            await wait_until(lambda: not manager.sessions, "the sessions to be over")
            third = start_body(SHELL)  # room again
            manager.start(third)
            op3 = Operator(relay, third["session_id"])
            await op3.send(b"echo third\n")
            await op3.until_output(b"third\r\n")
            await op3.finish("done")
            for op in (op1, op2, op3):
                await op.aclose()

    asyncio.run(scenario())


def test_an_unknown_session_type_is_refused_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body("Telnet")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            assert await op.until_closed() == {"reason": "unknown session type 'Telnet'"}
            manager.terminate({"session_id": new_session_id(), "reason": "x"})  # none: no-op
            await op.aclose()

    asyncio.run(scenario())


def test_session_settings_are_read_and_checked(tmp_path: Path) -> None:
    assert (AgentConfig(tmp_path).sessions_enabled, AgentConfig(tmp_path).max_sessions) == (
        True,
        20,
    )
    (tmp_path / "agent.toml").write_text("sessions_enabled = false\nmax_sessions = 3\n")
    config = load_config(tmp_path)
    assert (config.sessions_enabled, config.max_sessions) == (False, 3)
    for bad in (
        "max_sessions = 0",
        "max_sessions = 2.5",
        "max_sessions = true",
        'sessions_enabled = "no"',
    ):
        (tmp_path / "agent.toml").write_text(bad + "\n")
        with pytest.raises(ConfigError, match=r"max_sessions|sessions_enabled"):
            load_config(tmp_path)


# The dial ---------------------------------------------------------------------------------


def test_the_stream_url_is_the_servers_as_wss() -> None:
    sid = new_session_id()
    assert session_url("https://corral.example:8443/", sid) == (
        f"wss://corral.example:8443/v1/agent/sessions/{sid}/stream"
    )


@pytest.mark.parametrize(
    ("status", "code", "invalidated"),
    [
        (401, None, True),
        (403, wire.CLOSE_SESSION_FORBIDDEN, False),
        (404, wire.CLOSE_SESSION_UNKNOWN, False),
        (410, wire.CLOSE_SESSION_UNKNOWN, False),
        (503, None, False),
    ],
)
def test_a_refused_upgrade_is_read_as_the_relays_close_code(
    status: int, code: int | None, invalidated: bool
) -> None:
    async def scenario() -> None:
        tokens: list[str] = []
        seen: list[str | None] = []

        def refuse(conn: ServerConnection, request: Request) -> Response:
            seen.append(request.headers.get("Authorization"))
            return conn.respond(http.HTTPStatus(status), "no\n")

        async def token() -> str:
            tokens.append("t")
            return "tok-1"

        async def handler(conn: ServerConnection) -> None:
            raise AssertionError("no upgrade expected")

        async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            dropped: list[bool] = []
            dial = websocket_dial(
                f"ws://127.0.0.1:{port}/x", token=token, invalidate=lambda: dropped.append(True)
            )
            with pytest.raises(ConnectionGone) as caught:
                await dial()
            assert caught.value.code == code
            assert f"HTTP {status}" in str(caught.value)
            assert dropped == ([True] if invalidated else [])
            assert seen == ["Bearer tok-1"] and tokens == ["t"]
            if code is not None:  # final: the endpoint gives up at once
                endpoint = Endpoint(new_session_id(), dial, grace=DEADLINE)
                with pytest.raises(SessionLost, match=f"HTTP {status}"):
                    await endpoint.run()

    asyncio.run(scenario())


def test_the_agent_sends_its_token_when_it_dials(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with agent_side(tmp_path) as (relay, manager):
            body = start_body(wire.SESSION_TYPE_NON_INTERACTIVE, "true")
            manager.start(body)
            op = Operator(relay, body["session_id"])
            await op.until_closed()
            assert relay.headers == ["Bearer node-token"]
            await op.aclose()

    asyncio.run(scenario())


# The daemon -------------------------------------------------------------------------------


def make_daemon(tmp_path: Path, relay: Relay) -> Daemon:
    cfg = AgentConfig(state_dir=tmp_path)
    NodeKey.generate().save(cfg.key_file)
    reg = Registration(
        node_id="n-0123456789abcdef0123",
        url="https://127.0.0.1:1",
        registered_at=1.0,
        credential_expires_at=2e9,
        credential_issued_at=1.0,
        ca_hash="sha256:00",
    )
    launcher = Launcher(WorkerSettings(platform="Linux"))
    daemon = Daemon(
        cfg, reg, launcher, outbox=Outbox(cfg.outbox_file), transport=cast(Any, object())
    )
    daemon.sessions = SessionManager(cfg, relay.dial_for, grace=DEADLINE)
    return daemon


def test_the_daemon_hands_session_messages_to_its_manager(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Relay() as relay:
            daemon = make_daemon(tmp_path, relay)
            runner = asyncio.create_task(daemon.sessions.run())
            body = start_body(SHELL)
            start = {"id": "m-1", "type": wire.MSG_START_SESSION, "body": body}
            await daemon.handle(cast(Message, start))  # returns at once: the session is a task
            op = Operator(relay, body["session_id"])
            await op.send(b"echo via-daemon\n")
            await op.until_output(b"via-daemon\r\n")
            terminate = {
                "id": "m-2",
                "type": wire.MSG_TERMINATE_SESSION,
                "body": {"session_id": body["session_id"], "reason": "terminated by bob"},
            }
            await daemon.handle(cast(Message, terminate))
            assert await op.until_closed() == {"reason": "terminated by bob"}
            await wait_until(lambda: not daemon.sessions.sessions, "the session to be over")
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await op.aclose()
            daemon.outbox.close()

    asyncio.run(scenario())
