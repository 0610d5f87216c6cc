"""The daemon keeps running: a server message it cannot handle (any exception, not only an
AgentError) is logged, reported as that message's failure and acknowledged; the poll loop
goes on to the next message; the heartbeat says how deep the outbox is and how many messages
are dead; and ``corral-agent outbox retry-dead`` reaches a running daemon's sender."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.config import AgentConfig
from agent.daemon import Daemon
from agent.execution.executor import message_id
from agent.execution.launcher import Launcher
from agent.execution.settings import WorkerSettings
from agent.identity import NodeKey
from agent.outbox import Outbox
from agent.state import Registration
from agent.transport.base import SendAnswer
from agent.wire import Message
from tests.unit.test_execution_support import eventually

NODE = "mi-0123456789abcdef0"


class Server:
    """A transport that hands out queued server messages and records everything; a poll
    with nothing queued waits, as the server's long-poll does, until something is queued
    (``deliver``) or its ``wait`` passes."""

    def __init__(self) -> None:
        self.max_request_bytes: int | None = None
        self.to_deliver: list[list[Any]] = []
        self.acks: list[list[str]] = []
        self.sent: list[Message] = []
        self.polled = asyncio.Event()
        self.queued = asyncio.Event()

    def deliver(self, batch: list[Any]) -> None:
        self.to_deliver.append(batch)
        self.queued.set()

    async def poll(self, acks: list[str], wait: float) -> list[Any]:
        self.acks.append(list(acks))
        self.polled.set()
        if not self.to_deliver:
            self.queued.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.queued.wait()
        return self.to_deliver.pop(0) if self.to_deliver else []

    async def send(self, messages: list[Message]) -> SendAnswer:
        self.sent.extend(messages)
        return SendAnswer(acked=[m["id"] for m in messages])

    async def upload_output(self, *args: Any) -> tuple[int, str]:
        raise AssertionError("not used")

    async def aclose(self) -> None:
        pass


def make_daemon(tmp_path: Path, server: Server, **config: Any) -> Daemon:
    cfg = AgentConfig(state_dir=tmp_path, backoff_base_seconds=0.01, **config)
    NodeKey.generate().save(cfg.key_file)
    reg = Registration(
        node_id=NODE,
        url="https://127.0.0.1:1",
        registered_at=1.0,
        credential_expires_at=2e9,
        credential_issued_at=1.0,
        ca_hash="sha256:00",
    )
    launcher = Launcher(WorkerSettings(platform="Linux"))
    return Daemon(cfg, reg, launcher, outbox=Outbox(cfg.outbox_file), transport=server)


def ping(msg_id: str, body: Any = None) -> dict[str, Any]:
    return {"id": msg_id, "type": wire.MSG_PING, "body": {} if body is None else body}


def run_command(command_id: str) -> dict[str, Any]:
    body = {
        "command_id": command_id,
        "document_name": "d",
        "document_version": "1",
        "document": {"schemaVersion": "2.2", "mainSteps": []},
        "parameters": {},
        "execution_timeout_seconds": 60,
    }
    return {"id": f"m-{command_id}", "type": wire.MSG_RUN_COMMAND, "body": body}


until = eventually


def test_a_run_command_that_raises_is_reported_failed_and_acknowledged(tmp_path: Path) -> None:
    """The journal cannot be written (its directory is a file): an OSError, not an
    AgentError.  The daemon reports the invocation Failed, with the reason, and acks it."""

    async def scenario() -> None:
        server = Server()
        daemon = make_daemon(tmp_path, server)
        daemon.config.commands_dir.write_text("not a directory")
        try:
            acked = await daemon.handle_safely(run_command("cmd-1"))
            queued = await daemon.outbox.peek(10)
        finally:
            daemon.outbox.close()
        assert acked == "m-cmd-1"
        [final] = queued
        assert final["id"] == message_id(NODE, "cmd-1", "final")
        assert final["type"] == wire.MSG_INVOCATION_UPDATE
        assert final["body"]["status"] == wire.ST_FAILED
        assert "FileExistsError" in final["body"]["steps"][0]["stderr"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        ping("m-body", body=["not", "an", "object"]),
        # Its cancel.json cannot be written (a directory is in the way): an OSError.
        {"id": "m-cancel", "type": wire.MSG_CANCEL_COMMAND, "body": {"command_id": "cmd-c"}},
    ],
)
def test_a_bad_message_of_another_type_is_acknowledged_and_reported(
    tmp_path: Path, message: dict[str, Any]
) -> None:
    async def scenario() -> None:
        daemon = make_daemon(tmp_path, Server())
        (daemon.config.commands_dir / "cmd-c" / "cancel.json").mkdir(parents=True)
        try:
            acked = await daemon.handle_safely(message)
            queued = await daemon.outbox.peek(10)
        finally:
            daemon.outbox.close()
        assert acked == message["id"]
        assert [m["type"] for m in queued] == [wire.MSG_NODE_EVENT]
        assert queued[0]["body"]["code"] == wire.EVENT_MESSAGE_FAILED
        assert message["id"] in queued[0]["body"]["message"]

    asyncio.run(scenario())


def test_the_poll_loop_carries_on_after_a_bad_message(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = Server()
        server.to_deliver = [
            ["garbage", {"type": "ping"}, ping("m-bad", body="x"), ping("m-good")],
        ]
        daemon = make_daemon(tmp_path, server)
        task = asyncio.create_task(daemon.poll_loop())
        try:
            await until(lambda: len(server.acks) >= 2, "the next poll")
            assert not task.done()
            assert server.acks[1] == ["m-bad", "m-good"]  # no id, nothing to acknowledge
            types = sorted(m["type"] for m in await daemon.outbox.peek(10))
            assert types == [wire.MSG_NODE_EVENT, wire.MSG_PONG]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            daemon.outbox.close()

    asyncio.run(scenario())


def test_the_heartbeat_says_the_outbox_depth_and_dead_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import facts

    monkeypatch.setattr(facts, "collect", lambda: {"hostname": "h"})

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, Server(), heartbeat_interval_seconds=3600.0)
        await daemon.outbox.put(wire.make_message(wire.MSG_PONG, {"ping_id": "a"}))
        dead = wire.make_message(wire.MSG_PONG, {"ping_id": "b"})
        await daemon.outbox.put(dead)
        await daemon.outbox.bury([dead["id"]], "rejected")
        task = asyncio.create_task(daemon.heartbeat_loop())
        try:
            await until(lambda: daemon.outbox.depth() == 2, "the heartbeat")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        beats = [m for m in await daemon.outbox.peek(10) if m["type"] == wire.MSG_HEARTBEAT]
        daemon.outbox.close()
        body = beats[0]["body"]
        rss = body.pop("rss_bytes")  # the agent's own figures, shown by the server's /metrics
        assert isinstance(rss, int) and rss > 2**20
        assert body == {"hostname": "h", "outbox_depth": 1, "outbox_dead": 1, "workers": 0}

    asyncio.run(scenario())


def test_retry_dead_from_another_process_reaches_the_running_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI writes the file through its own connection: the idle sender finds the rows
    without anything put through its own outbox object."""
    from agent import daemon as daemon_module

    monkeypatch.setattr(daemon_module, "OUTBOX_RESCAN_SECONDS", 0.05)

    async def scenario() -> None:
        server = Server()
        daemon = make_daemon(tmp_path, server)
        live = wire.make_message(wire.MSG_PONG, {"ping_id": "a"})
        dead = wire.make_message(wire.MSG_PONG, {"ping_id": "b"})
        await daemon.outbox.put(dead)
        await daemon.outbox.bury([dead["id"]], "rejected: the cause is fixed now")
        await daemon.outbox.put(live)
        task = asyncio.create_task(daemon.send_loop())
        try:
            # Once its one live message is sent, the sender is idle, waiting.
            await until(lambda: daemon.outbox.counts() == (0, 1), "the live message sent")
            other = Outbox(daemon.config.outbox_file)  # as `corral-agent outbox retry-dead`
            try:
                assert await asyncio.to_thread(other.retry_dead) == 1
            finally:
                other.close()
            await until(lambda: daemon.outbox.counts() == (0, 0), "the resend")
            assert [m["id"] for m in server.sent] == [live["id"], dead["id"]]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            daemon.outbox.close()

    asyncio.run(scenario())


class FullDisk(Outbox):
    """An outbox on a disk that is full for its first ``failures`` writes or reads."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def _fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")

    def _peek(self, limit: int) -> list[Message]:
        self._fail()
        return super()._peek(limit)

    def _put(self, message: Message) -> None:
        self._fail()
        super()._put(message)


def test_a_full_disk_is_waited_out_by_the_sender_and_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent import facts

    monkeypatch.setattr(facts, "collect", lambda: {"hostname": "h"})

    async def scenario() -> None:
        server = Server()
        daemon = make_daemon(tmp_path, server, heartbeat_interval_seconds=0.05)
        daemon.outbox.close()
        box = FullDisk(tmp_path / "outbox.db", failures=4)
        daemon.outbox = daemon.sender.outbox = box
        tasks = [
            asyncio.create_task(daemon.heartbeat_loop()),
            asyncio.create_task(daemon.send_loop()),
        ]
        try:
            await until(lambda: any(m["type"] == "heartbeat" for m in server.sent), "a beat")
            assert box.failures == 0
            assert not any(task.done() for task in tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            box.close()

    asyncio.run(scenario())
