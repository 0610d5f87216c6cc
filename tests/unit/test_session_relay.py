"""Session Manager's server side with real websockets: the in-process app served by uvicorn
on a loopback port, the two ends played by the data-channel Endpoint (the agent's with a node
token, the client's with an operator token), the server's clock advanced by the test.

Covers the relay both ways, the recording and its export, resuming after a cut link, the
limits (idle, maximum duration, an end that never comes), who may attach, start, end and read,
bad input, and flow control towards a client that never reads."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent import wire
from agent.sessions import datachannel as dc
from agent.sessions import recording
from agent.sessions.endpoint import ConnectionGone, Endpoint
from control_plane.api.app import create_app
from tests.unit.conftest import Api, Node, RunApi, assert_error
from tests.unit.test_authz_api import token as new_token

# A websocket the server closed is sometimes collected after its test (ResourceWarning from
# asyncio's transport __del__, reported in whichever test runs then); not a leak of the
# product's: every connection the tests open is closed in `serving`.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


async def make_token(api: Api, name: str, **body: Any) -> str:
    return (await new_token(api, name, **body))["authorization"].split()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(api: Api) -> AsyncIterator[str]:
    """The app on a loopback port (plain ws: TLS is the integration tests')."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(api.cp),
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning",
        ws_max_size=wire.MAX_FRAME_BYTES,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        for conn in _opened:  # every client websocket of the test, closed before the loop
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        _opened.clear()
        server.should_exit = True
        await task
        gc.collect()  # what the loop let go of is collected here, under this module's filter


_opened: list[ClientConnection] = []


class Ends:
    def __init__(self, base: str, session_id: str, node: Node, token: str) -> None:
        self.conns: dict[str, ClientConnection] = {}
        self.agent = Endpoint(
            session_id,
            self._dial(
                "agent", base + wire.ROUTE_AGENT_SESSION.format(session_id=session_id), node.token
            ),
            grace=5.0,
            describe_close=_gone,
        )
        self.client = Endpoint(
            session_id,
            self._dial(
                "client", base + wire.ROUTE_SESSION_STREAM.format(session_id=session_id), token
            ),
            grace=5.0,
            describe_close=_gone,
        )
        self.tasks = [asyncio.create_task(e.run()) for e in (self.agent, self.client)]

    def _dial(self, side: str, url: str, token: str) -> Callable[[], Awaitable[Any]]:
        async def dial() -> ClientConnection:
            conn = await dial_raw(url, token)
            self.conns[side] = conn
            return conn

        return dial

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def dial_raw(url: str, token: str) -> ClientConnection:
    try:
        conn = await connect(
            url,
            additional_headers={"authorization": f"Bearer {token}"},
            max_size=None,
            compression=None,
        )
        _opened.append(conn)
        return conn
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = {403: wire.CLOSE_SESSION_FORBIDDEN, 404: wire.CLOSE_SESSION_UNKNOWN}.get(status)
        raise ConnectionGone(code, exc.response.body.decode(errors="replace")) from None


def _gone(exc: Exception) -> ConnectionGone:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return ConnectionGone(exc.rcvd.code, exc.rcvd.reason)
    return ConnectionGone(None, str(exc))


async def start(api: Api, node: Node, headers: dict[str, str] | None = None, **body: Any) -> str:
    api.cp.presence.seen(node.node_id, api.clock())  # it just polled: Online
    response = await api.client.post(
        "/v1/sessions", json={"node_id": node.node_id, "run_as": "nobody", **body},
        headers=headers or api.admin,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "Connecting"
    session_id: str = response.json()["session_id"]
    return session_id


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def frames_until(end: Endpoint, kind: int) -> list[dc.Frame]:
    got: list[dc.Frame] = []
    async with asyncio.timeout(10):
        while True:
            frame = await end.receive()
            assert frame is not None, f"ended before a frame of type {kind}"
            got.append(frame)
            if frame.type == kind:
                return got


async def record(api: Api, session_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/sessions/{session_id}", headers=api.admin)
    assert response.status_code == 200, response.text
    shown: dict[str, Any] = response.json()
    return shown


def test_the_relay_passes_both_ways_records_and_ends_with_the_exit_status(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        session_id = await start(api, node)
        token = api.admin["authorization"].split()[1]
        async with serving(api) as base:
            ends = Ends(base, session_id, node, token)
            await ends.client.send(dc.RESIZE, b'{"cols": 100, "rows": 30}')
            await ends.client.send(dc.DATA, b"echo hi\r")
            got = await frames_until(ends.agent, dc.DATA)
            assert got[-1].payload == b"echo hi\r" and got[0].type == dc.RESIZE
            assert (await record(api, session_id))["status"] == "Connected"
            await ends.agent.send(dc.DATA, b"hi \xe2\x82")  # a character cut in two
            await ends.agent.send(dc.DATA, b"\xac\r\n")
            await ends.agent.send_json(dc.EXIT, {"status": 3})
            await ends.agent.end("exited", body={"status": 3})
            got = await frames_until(ends.client, dc.CLOSED)
            assert [f.type for f in got] == [dc.DATA, dc.DATA, dc.EXIT, dc.CLOSED]
            await ends.stop()
        shown = await record(api, session_id)
        assert shown["status"] == "Terminated" and shown["exit_status"] == 3
        assert shown["status_reason"].startswith("the node ended the session")
        raw = await api.client.get(f"/v1/sessions/{session_id}/recording", headers=api.admin)
        assert raw.status_code == 200
        import hashlib

        assert hashlib.sha256(raw.content).hexdigest() == shown["recording"]["sha256"]
        assert recording.output_bytes(raw.content) == "hi €\r\n".encode()
        events = list(recording.events(raw.content))
        assert [(chr(e.kind), e.data) for e in events if e.kind != recording.OUTPUT] == [
            ("r", b"100x30"),
            ("i", b"echo hi\r"),
        ]
        cast = await api.client.get(
            f"/v1/sessions/{session_id}/recording",
            params={"format": "asciicast"},
            headers=api.admin,
        )
        lines = [json.loads(line) for line in cast.text.splitlines()]
        assert lines[0]["version"] == 2 and lines[0]["width"] == 80
        assert "".join(e[2] for e in lines[1:] if e[1] == "o") == "hi €\r\n"
        entries = await api.client.get(
            "/v1/audit", params={"action": "sessions:End"}, headers=api.admin
        )
        (entry,) = entries.json()["entries"]
        assert entry["request"]["recording_sha256"] == shown["recording"]["sha256"]
        assert (
            entry["request"]["run_as"] == "nobody" and entry["resource"] == f"node/{node.node_id}"
        )

    run_api(scenario)


def test_a_cut_link_resumes_without_losing_or_repeating_a_byte(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        session_id = await start(api, node)
        async with serving(api) as base:
            ends = Ends(base, session_id, node, api.admin["authorization"].split()[1])
            sent = [f"line {i}\n".encode() for i in range(3000)]
            received = bytearray()

            async def read() -> None:
                while len(received) < sum(map(len, sent)):
                    frame = await ends.client.receive()
                    assert frame is not None
                    if frame.type == dc.DATA:
                        received.extend(frame.payload)

            reader = asyncio.create_task(read())
            for i, chunk in enumerate(sent):
                await ends.agent.send(dc.DATA, chunk)
                if i in (700, 1900):  # the client's network goes, then the agent's
                    side = "client" if i == 700 else "agent"
                    await until(lambda s=side: s in ends.conns)  # type: ignore[misc]
                    transport = ends.conns.pop(side).transport
                    transport.abort()
            await asyncio.wait_for(reader, 20)
            assert bytes(received) == b"".join(sent)
            await ends.stop()
        shown = await record(api, session_id)
        assert shown["status"] in ("Connected", "Disconnected", "Terminated")

    run_api(scenario)


@pytest.mark.parametrize(
    ("prefs", "advance", "reason"),
    [
        ({"idle_timeout": 60.0}, 61, "the session was idle for 1 minute"),
        ({"max_duration": 120.0, "idle_timeout": None}, 121, "maximum duration (2 minutes)"),
    ],
)
def test_idle_and_too_long_sessions_end(
    run_api: RunApi, prefs: dict[str, Any], advance: float, reason: str
) -> None:
    async def scenario(api: Api) -> None:
        service = api.cp.sessions
        service.prefs = dataclasses.replace(service.prefs, **prefs)
        node = await api.new_node()
        session_id = await start(api, node)
        async with serving(api) as base:
            ends = Ends(base, session_id, node, api.admin["authorization"].split()[1])
            await until(lambda: service.live[session_id].both_attached())
            api.clock.advance(advance - 2)
            await service.sweep()
            assert session_id in service.live
            api.clock.advance(2)
            await service.sweep()
            got = await frames_until(ends.client, dc.TERMINATE)
            assert reason in json.loads(got[-1].payload)["reason"]
            await asyncio.wait_for(ends.tasks[1], 5)  # ended: it does not dial again
            assert ends.client.ended is not None and reason in ends.client.ended
            await ends.stop()
        shown = await record(api, session_id)
        assert shown["status"] == "Terminated" and reason in shown["status_reason"]

    run_api(scenario)


def test_a_node_that_never_opens_its_end_fails_the_session(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        session_id = await start(api, node)
        api.clock.advance(31)
        await api.cp.sessions.sweep()
        shown = await record(api, session_id)
        assert shown["status"] == "Failed"
        assert shown["status_reason"] == "the node did not open its side within 30 s"
        # The node is told to forget it (it may still be on its way).
        batch = await api.cp.channel.next_batch(node.node_id)
        types = [m["type"] for m in batch]
        assert types == [wire.MSG_START_SESSION, wire.MSG_TERMINATE_SESSION]

    run_api(scenario)


def test_only_the_owner_attaches_and_only_allowed_tokens_start_end_and_read(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        web = await api.new_node()
        db = await api.new_node()
        for node, team in ((web, "web"), (db, "db")):
            tagged = await api.client.post(
                f"/v1/nodes/{node.node_id}/tags", json={"tags": {"team": team}}, headers=api.admin
            )
            assert tagged.status_code == 200
        web_only = {
            "Version": "2026-01-01",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sessions:*"],
                    "Resource": ["node/*", "document/*"],
                    "Condition": {"StringEquals": {"node:tag/team": "web"}},
                },
                {"Effect": "Allow", "Action": "sessions:Start", "Resource": "document/*"},
            ],
        }
        team = await make_token(api, "web-team", policy=web_only)
        team_h = {"authorization": f"Bearer {team}"}
        refused = await api.client.post(
            "/v1/sessions", json={"node_id": db.node_id, "run_as": "nobody"}, headers=team_h
        )
        assert_error(refused, 403, "forbidden")
        other = await make_token(api, "other-admin", role="admin")
        session_id = await start(api, db)
        async with serving(api) as base:
            url = base + wire.ROUTE_SESSION_STREAM.format(session_id=session_id)
            with pytest.raises(ConnectionGone) as caught:
                await dial_raw(url, other)
            assert caught.value.code == wire.CLOSE_SESSION_FORBIDDEN
            assert "belongs to another token" in caught.value.reason
            with pytest.raises(ConnectionGone) as caught:
                await dial_raw(url.replace(session_id, "s-" + "0" * 20), other)
            assert caught.value.code == wire.CLOSE_SESSION_UNKNOWN
            agent_url = base + wire.ROUTE_AGENT_SESSION.format(session_id=session_id)
            with pytest.raises(ConnectionGone) as caught:
                await dial_raw(agent_url, web.token)  # another node's token
            assert caught.value.code == wire.CLOSE_SESSION_FORBIDDEN
        for path in ("", "/recording"):
            seen = await api.client.get(f"/v1/sessions/{session_id}{path}", headers=team_h)
            assert_error(seen, 403, "forbidden")
        listed = await api.client.get("/v1/sessions", headers=team_h)
        assert listed.json()["sessions"] == []
        ended = await api.client.post(f"/v1/sessions/{session_id}/terminate", headers=team_h)
        assert_error(ended, 403, "forbidden")
        mine = await start(api, web, headers=team_h)
        assert [s["session_id"] for s in (await api.client.get(
            "/v1/sessions", headers=team_h)).json()["sessions"]] == [mine]  # fmt: skip
        ended = await api.client.post(f"/v1/sessions/{mine}/terminate", headers=team_h)
        assert ended.json()["status"] == "Terminated"
        assert ended.json()["status_reason"].startswith("terminated by web-team")

    run_api(scenario)


def test_root_needs_a_policy_that_says_so(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        operator = await make_token(api, "op", role="operator")
        op_h = {"authorization": f"Bearer {operator}"}
        refused = await api.client.post(
            "/v1/sessions", json={"node_id": node.node_id, "run_as": "root"}, headers=op_h
        )
        assert_error(refused, 403, "forbidden")
        assert "sessions:Start" in refused.json()["error"]["message"]
        await start(api, node, headers=op_h)  # as nobody: fine
        await start(api, node, run_as="root")  # the admin role allows it

    run_api(scenario)


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"document": "Corral-Nope"}, 404, "not_found", "no session document 'Corral-Nope'"),
        (
            {"document": "Corral-StartPortForwarding", "parameters": {"portNumber": "70000"}},
            400, "invalid_request", "parameters.portNumber: 70000 is outside 1-65535",
        ),
        (
            {"document": "Corral-StartPortForwardingToRemoteHost",
             "parameters": {"host": "db;rm -rf /", "portNumber": "5432"}},
            400, "invalid_request", "parameters.host",
        ),
        (
            {"document": "Corral-StartInteractiveCommand"},
            400, "invalid_request", "parameters.command: required parameter missing",
        ),
        ({"run_as": "bad user"}, 400, "invalid_request", "run_as: 'bad user' is not a user name"),
        ({"cols": 0}, 400, "invalid_request", "cols"),
        ({"node_id": "mi-00000000000000000"}, 404, "not_found", "node mi-00000000000000000"),
    ],
)  # fmt: skip
def test_bad_starts_are_refused_with_one_line_and_leave_nothing(
    run_api: RunApi, body: dict[str, Any], status: int, code: str, says: str
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await api.client.post(
            "/v1/sessions", json={"node_id": node.node_id, **body}, headers=api.admin
        )
        assert response.status_code == status, response.text
        message = response.json()["error"]["message"]
        assert says in message and "\n" not in message
        assert api.cp.sessions.live == {}
        assert await api.cp.channel.next_batch(node.node_id) == []

    run_api(scenario)


def test_no_session_to_an_offline_or_deregistered_node(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        gone = await api.new_node()
        away = await api.new_node()
        deregistered = await api.client.post(
            f"/v1/nodes/{gone.node_id}/deregister", headers=api.admin
        )
        assert deregistered.status_code == 200
        refused = await api.client.post(
            "/v1/sessions", json={"node_id": gone.node_id}, headers=api.admin
        )
        assert_error(refused, 409, "node_unavailable")
        api.clock.advance(wire.CONNECTION_LOST_AFTER_SECONDS + 1)
        refused = await api.client.post(
            "/v1/sessions", json={"node_id": away.node_id}, headers=api.admin
        )
        assert_error(refused, 409, "node_unavailable")
        assert "ConnectionLost: a session needs a connected node" in refused.text
        assert api.cp.sessions.live == {}

    run_api(scenario)


def test_bad_frames_close_that_end_and_a_client_that_never_reads_stalls_the_node(
    run_api: RunApi,
) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        session_id = await start(api, node)
        token = api.admin["authorization"].split()[1]
        async with serving(api) as base:
            url = base + wire.ROUTE_SESSION_STREAM.format(session_id=session_id)
            big = dc.MAX_PAYLOAD + 1
            oversized = dc.HEADER.pack(dc.DATA, 0, 0, 1, 0, big) + b"x" * big
            bad_frames = (
                b"\x00" * 5,
                "text",
                dc.Frame(dc.DATA, b"x", seq=1).encode() + b"y",
                oversized,
            )
            for bad in bad_frames:
                raw = await dial_raw(url, token)
                await raw.send(bad)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(raw.recv(), 5)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == wire.CLOSE_BAD_FRAME
            # A client that attaches and never reads: the node's end stops at its window.
            raw = await connect(
                url,
                additional_headers={"authorization": f"Bearer {token}"},
                max_queue=1,
                compression=None,
                max_size=None,
            )
            _opened.append(raw)
            await raw.send(dc.Frame(dc.HELLO, b'{"last_received": 0}').encode())
            agent = Endpoint(
                session_id,
                lambda: dial_raw(
                    base + wire.ROUTE_AGENT_SESSION.format(session_id=session_id), node.token
                ),
                window=256 * 1024,
                describe_close=_gone,
            )
            runner = asyncio.create_task(agent.run())
            chunk = b"x" * dc.MAX_PAYLOAD
            writer = asyncio.create_task(_send_forever(agent, chunk))
            await until(lambda: agent.out.room() < len(chunk))
            sent_before = agent.out.unacked_bytes
            await asyncio.sleep(0.3)  # give it every chance to overrun the window
            assert agent.out.unacked_bytes == sent_before <= agent.out.window
            assert not writer.done()
            for task in (writer, runner):
                task.cancel()
            await asyncio.gather(writer, runner, return_exceptions=True)
            await raw.close()

    run_api(scenario)


async def _send_forever(end: Endpoint, chunk: bytes) -> None:
    while True:
        await end.send(dc.DATA, chunk)


def test_sessions_a_previous_server_left_open_end_at_start(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        session_id = await start(api, node)
        api.cp.sessions.live.clear()  # as a new server process finds it: no relay for it
        await api.cp.sessions.end_orphans()
        shown = await record(api, session_id)
        assert (shown["status"], shown["status_reason"]) == ("Terminated", "the server restarted")

    run_api(scenario)
