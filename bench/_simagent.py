"""Simulated agents: real HTTPS long-polls (or the websocket control channel, ``--transport
websocket``), many per process, speaking the agent wire protocol.

Registration (``register_nodes``, run by the orchestrating process): activations of up to 1000
registrations each, then ``POST /v1/agent/register`` with a freshly generated Ed25519 key per
node.  The private key is handed to a worker process, which buys a node access token with it
(``/v1/agent/challenge`` + ``/v1/agent/token``, signing ``agent.wire.token_signing_payload``)
and runs the agent loop: poll -> if a ping arrives, POST a pong message -> ack the ping in the
next poll.  A ``run_command`` is "run" without any process: the agent POSTs an
``invocation_update`` InProgress (``started_at``), then one Success with the result of
``echo hi`` (response code 0, stdout ``hi``; one step per step of the document, named as the
real agent names them), then acks the message in its next poll.  A command id already run is
not run again (delivery is at-least-once); ``cancel_command`` is only acked.

A worker is ``python bench/_simworker.py worker --url ... --ca-file ...``.  It reads one JSON
command per line on stdin and answers each with one JSON line on stdout:

    {"cmd": "add", "nodes": [[node_id, key_b64], ...]}
        -> {"connected": N, "failed": [node_id, ...], "seconds": S} once every new agent has
           answered one immediate poll (it holds a valid token and a working connection)
    {"cmd": "stats"}  -> {"agents", "connected", "polls", "pongs", "commands", "updates",
                          "errors", "last_error", "cpu"}
    {"cmd": "stop"} (or end of input) -> the agents stop; the worker exits

Agents share connections: one ``httpx.AsyncClient`` per ``--agents-per-client`` agents (20 by
default), with a connection pool just large enough for all their held polls.  Not more agents
per client: httpcore's pool walks every connection of the pool (and, for each idle one, every
connection again) on each request and each response, so with 100 agents per client the worker
spends its CPU in ``_assign_requests_to_connections`` and connecting stalls near 1000 agents per
process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from agent import wire
from agent.backoff import Backoff

ACTIVATION_LIMIT = 1000
TOKEN_REFRESH_MARGIN = 60.0
SIM_STDOUT = "hi\n"  # what every simulated command prints: the benchmark runs `echo hi`


# Registration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimNode:
    node_id: str
    key_b64: str  # raw 32-byte Ed25519 private key, base64


def _raw_private(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


async def register_nodes(
    url: str,
    ca_file: str,
    admin_token: str,
    count: int,
    concurrency: int = 16,
    first_index: int = 0,
) -> list[SimNode]:
    """Register ``count`` nodes through as many activations as their limit requires."""
    tls = ssl.create_default_context(cafile=ca_file)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, verify=tls, timeout=60, limits=limits) as client:
        slots: list[tuple[str, str]] = []
        remaining = count
        while remaining > 0:
            limit = min(remaining, ACTIVATION_LIMIT)
            response = await client.post(
                "/v1/activations",
                json={"registration_limit": limit, "expires_in_seconds": 3600, "tags": {}},
                headers={"authorization": f"Bearer {admin_token}"},
            )
            if response.status_code != 201:
                raise RuntimeError(f"activation failed: {response.status_code} {response.text}")
            act = response.json()
            slots += [(act["activation_id"], act["activation_code"])] * limit
            remaining -= limit

        gate = asyncio.Semaphore(concurrency)

        async def one(index: int, activation_id: str, code: str) -> SimNode:
            key = ed25519.Ed25519PrivateKey.generate()
            body = {
                "activation_id": activation_id,
                "activation_code": code,
                "public_key": base64.b64encode(_raw_public(key)).decode(),
                "name": f"sim-{index:05d}",
                "hostname": f"sim-{index:05d}.bench",
            }
            async with gate:
                response = await client.post(wire.ROUTE_REGISTER, json=body)
            if response.status_code != 201:
                raise RuntimeError(f"register failed: {response.status_code} {response.text}")
            return SimNode(response.json()["node_id"], base64.b64encode(_raw_private(key)).decode())

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(first_index + i, a, c)) for i, (a, c) in enumerate(slots)]
        return [t.result() for t in tasks]


# The simulated agent -------------------------------------------------------------------------
@dataclass
class Stats:
    agents: int = 0
    connected: int = 0
    live: int = 0  # channels open now (websocket agents)
    polls: int = 0
    pongs: int = 0
    commands: int = 0  # run_command messages run (not counting repeated deliveries)
    updates: int = 0  # invocation_update messages stored by the server
    errors: int = 0
    last_error: str = ""
    error_kinds: dict[str, int] = field(default_factory=dict)

    def error(self, what: str, exc: BaseException | str) -> None:
        self.errors += 1
        kind = exc if isinstance(exc, str) else type(exc).__name__
        key = f"{what}: {kind}"
        self.error_kinds[key] = self.error_kinds.get(key, 0) + 1
        self.last_error = f"{key} {exc}"[:300]


class Rejected(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:200]}")
        self.status = status


class SimAgent:
    def __init__(self, node: SimNode, client: httpx.AsyncClient, stats: Stats) -> None:
        self.node_id = node.node_id
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(node.key_b64))
        self._client = client
        self._stats = stats
        self._token = ""
        self._expires = 0.0
        self._commands_run: set[str] = set()

    async def _post(self, path: str, body: dict[str, Any], auth: bool = True) -> Any:
        for attempt in (1, 2):
            headers = {}
            if auth:
                if not self._token or self._expires - time.time() < TOKEN_REFRESH_MARGIN:
                    await self._fetch_token()
                headers["authorization"] = f"Bearer {self._token}"
            response = await self._client.post(path, json=body, headers=headers)
            if response.status_code == 401 and auth and attempt == 1:
                self._token = ""
                continue
            if not response.is_success:
                raise Rejected(response.status_code, response.text)
            return response.json()
        raise AssertionError("unreachable")

    async def _fetch_token(self) -> None:
        challenge = await self._post(wire.ROUTE_CHALLENGE, {"node_id": self.node_id}, auth=False)
        nonce = str(challenge["nonce"])
        stamp = int(time.time())
        signature = self._key.sign(wire.token_signing_payload(self.node_id, nonce, stamp))
        answer = await self._post(
            wire.ROUTE_TOKEN,
            {
                "node_id": self.node_id,
                "nonce": nonce,
                "timestamp": stamp,
                "signature": base64.b64encode(signature).decode(),
            },
            auth=False,
        )
        self._token, self._expires = str(answer["token"]), float(answer["expires_at"])

    async def connect(self) -> None:
        """Buy a token and answer one immediate poll: proof of a working, authorized link."""
        await self._post(wire.ROUTE_POLL, {"acks": [], "wait_seconds": 0})

    async def run(self, wait: float) -> None:
        acks: list[str] = []
        backoff = 1.0
        while True:
            try:
                answer = await self._post(wire.ROUTE_POLL, {"acks": acks, "wait_seconds": wait})
            except (httpx.HTTPError, Rejected) as exc:
                self._stats.error("poll", exc)
                await asyncio.sleep(random.uniform(0, backoff))  # full jitter
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 1.0
            self._stats.polls += 1
            acks = []
            for message in answer.get("messages", []):
                if message.get("type") == wire.MSG_PING:
                    await self._pong(message["id"])
                elif message.get("type") == wire.MSG_RUN_COMMAND:
                    await self._run_command(message.get("body") or {})
                acks.append(message["id"])

    async def _send(self, what: str, message: wire.Message) -> bool:
        """POST one agent -> server message; three tries."""
        for _ in range(3):
            try:
                await self._post(wire.ROUTE_MESSAGES, {"messages": [message]})
                return True
            except (httpx.HTTPError, Rejected) as exc:
                self._stats.error(what, exc)
                await asyncio.sleep(0.5)
        return False

    async def _pong(self, ping_id: str) -> None:
        if await self._send("pong", wire.make_message(wire.MSG_PONG, {"ping_id": ping_id})):
            self._stats.pongs += 1

    async def _run_command(self, body: dict[str, Any]) -> None:
        """InProgress, then Success with ``echo hi``'s result; no process is started."""
        command_id = str(body.get("command_id", ""))
        if not command_id or command_id in self._commands_run:
            return
        self._commands_run.add(command_id)
        self._stats.commands += 1
        started = time.time()
        update: dict[str, Any] = {
            "command_id": command_id,
            "status": wire.ST_IN_PROGRESS,
            "started_at": started,
        }
        if await self._send("update", wire.make_message(wire.MSG_INVOCATION_UPDATE, update)):
            self._stats.updates += 1
        ended = time.time()
        steps = [
            wire.StepResult(
                name=name,
                action=action,
                status=wire.ST_SUCCESS,
                response_code=0,
                started_at=started,
                ended_at=ended,
                stdout=SIM_STDOUT,
                stderr="",
                stdout_bytes=len(SIM_STDOUT),
                stderr_bytes=0,
            )
            for name, action in _steps_of(body.get("document"))
        ]
        update = {
            "command_id": command_id,
            "status": wire.ST_SUCCESS,
            "response_code": 0,
            "started_at": started,
            "ended_at": ended,
            "steps": steps,
        }
        if await self._send("update", wire.make_message(wire.MSG_INVOCATION_UPDATE, update)):
            self._stats.updates += 1


class SimChannelAgent(SimAgent):
    """The same agent over the websocket control channel (``/v1/agent/connect``): messages
    arrive in ``deliver`` frames; updates leave in ``messages`` frames (their ``acked``
    answers are only counted); delivered ids are acknowledged in an ``ack`` frame."""

    def __init__(
        self, node: SimNode, client: httpx.AsyncClient, stats: Stats, ws_url: str, tls: Any
    ) -> None:
        super().__init__(node, client, stats)
        self._ws_url = ws_url
        self._tls = tls
        # Reconnections of this process's agents share its one CPU, which real agents do not:
        # without a bound, thousands of handshakes at once after a server restart starve each
        # other in this process until every one times out (a collapse of the simulation, not
        # of the server).  As many at once as the initial ramp.
        self.gate: asyncio.Semaphore | None = None
        self._conn: Any = None
        self._req = 0

    async def _open(self) -> None:
        """Connect and sign in on the channel, as the real agent does: challenge, auth,
        authorized, hello (no HTTPS request)."""
        from websockets.asyncio.client import connect

        conn = await connect(
            self._ws_url,
            ssl=self._tls,
            additional_headers={wire.HEADER_NODE_ID: self.node_id},
            open_timeout=30,
            max_size=wire.MAX_FRAME_BYTES,
            compression=None,
            ping_interval=None,  # the server pings; a sim agent only answers
        )
        try:
            await self._sign_in(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._stats.live += 1

    async def _sign_in(self, conn: Any) -> None:
        challenge = json.loads(await conn.recv())
        if challenge.get("type") != wire.FRAME_CHALLENGE:
            raise Rejected(0, f"no challenge: {challenge}")
        nonce = str(challenge["nonce"])
        stamp = int(time.time())
        signature = self._key.sign(wire.token_signing_payload(self.node_id, nonce, stamp))
        auth = {
            "type": wire.FRAME_AUTH,
            "nonce": nonce,
            "timestamp": stamp,
            "signature": base64.b64encode(signature).decode(),
        }
        await conn.send(json.dumps(auth))
        authorized = json.loads(await conn.recv())
        if authorized.get("type") != wire.FRAME_AUTHORIZED:
            raise Rejected(0, f"not authorized: {authorized}")
        self._token, self._expires = str(authorized["token"]), float(authorized["expires_at"])
        hello = json.loads(await conn.recv())
        if hello.get("type") != wire.FRAME_HELLO:
            raise Rejected(0, f"no hello: {hello}")

    async def connect(self) -> None:
        await self._open()

    async def run(self, wait: float) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        backoff = Backoff(1.0, 60.0)  # the agent's defaults (agent.toml backoff_*)
        while True:
            try:
                if self._conn is None:
                    if self.gate is None:
                        await self._open()
                    else:
                        async with self.gate:
                            await self._open()
                async for raw in self._conn:
                    frame = json.loads(raw)
                    if frame.get("type") != wire.FRAME_DELIVER:
                        if frame.get("type") == wire.FRAME_ACKED:
                            self._stats.updates += len(frame.get("ids", []))
                        continue
                    self._stats.polls += 1
                    ids = []
                    for message in frame.get("messages", []):
                        if message.get("type") == wire.MSG_PING:
                            pong = wire.make_message(wire.MSG_PONG, {"ping_id": message["id"]})
                            await self._frame_messages([pong])
                            self._stats.pongs += 1
                        elif message.get("type") == wire.MSG_RUN_COMMAND:
                            await self._run_command(message.get("body") or {})
                        ids.append(message["id"])
                    await self._conn.send(json.dumps({"type": wire.FRAME_ACK, "ids": ids}))
                backoff.reset()
                self._lost()  # the server closed it: reconnect
            except (ConnectionClosed, InvalidStatus, OSError, TimeoutError, Rejected) as exc:
                self._stats.error("channel", exc)
                self._lost()
            # Full jitter, as the agent's backoff: a restarted server is not stampeded.
            await backoff.sleep()

    def _lost(self) -> None:
        if self._conn is not None:
            self._stats.live -= 1
            self._conn = None

    async def _frame_messages(self, messages: list[wire.Message]) -> None:
        self._req += 1
        frame = {"type": wire.FRAME_MESSAGES, "req": f"r{self._req}", "messages": messages}
        await self._conn.send(json.dumps(frame))

    async def _send(self, what: str, message: wire.Message) -> bool:
        """An update goes in a messages frame; the acked answer is counted when it comes."""
        await self._frame_messages([message])
        return False  # counted from the server's acked answer instead


def _steps_of(document: object) -> list[tuple[str, str]]:
    """(name, action) of each step, as the real agent reports them: a schema 2.x document's
    mainSteps, a 1.2 document's runtimeConfig plugins (named by their action)."""
    if isinstance(document, dict):
        main = document.get("mainSteps")
        if isinstance(main, list) and main:
            return [
                (str(s.get("name", i)), str(s.get("action", "")))
                for i, s in enumerate(main)
                if isinstance(s, dict)
            ]
        plugins = document.get("runtimeConfig")
        if isinstance(plugins, dict) and plugins:
            return [(str(action), str(action)) for action in plugins]
    return [("0", "aws:runShellScript")]
