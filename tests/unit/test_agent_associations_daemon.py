"""The daemon's side of offline enforcement: an ``associations`` message is stored before it is
acknowledged; with the server gone, the association runs at its slot in a real document worker
and its result waits in the outbox until the server is back; when the server then sends the
same run, it is not run again and its result is reported again."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from agent import wire
from agent.associations.scheduler import ORIGIN, run_message
from agent.associations.store import SET_FILE, SLOTS_FILE
from agent.config import AgentConfig
from agent.daemon import Daemon
from agent.errors import TransportError
from agent.execution.executor import message_id
from agent.execution.launcher import Launcher
from agent.execution.settings import WorkerSettings
from agent.identity import NodeKey
from agent.outbox import Outbox
from agent.state import Registration
from agent.transport.base import SendAnswer
from agent.wire import LocalAssociation, Message
from tests.unit.test_execution_support import eventually

NODE = "mi-0123456789abcdef0"
T0 = 1_800_000_000.0
GRACE = 60.0
ASSOC = "a-feedface"
SLOT = T0 + 1800
COMMAND = wire.association_command_id(ASSOC, SLOT)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Server:
    """A transport that can be cut off: while ``up`` is False every poll and send fails as an
    unreachable server does.  A poll with nothing queued waits, as the server's long-poll
    does, until something is queued or the link changes (``deliver``, ``up``), or its
    ``wait`` passes."""

    def __init__(self) -> None:
        self.max_request_bytes: int | None = None
        self._up = True
        self.to_deliver: list[list[Any]] = []
        self.acked: list[str] = []
        self.sent: list[Message] = []
        self.changed = asyncio.Event()

    @property
    def up(self) -> bool:
        return self._up

    @up.setter
    def up(self, value: bool) -> None:
        self._up = value
        self.changed.set()

    def deliver(self, batch: list[Any]) -> None:
        self.to_deliver.append(batch)
        self.changed.set()

    async def poll(self, acks: list[str], wait: float) -> list[Any]:
        if self.up:
            self.acked.extend(acks)
            if not self.to_deliver:
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.changed.wait()
        if not self.up:
            raise TransportError("cannot reach the server: connection refused")
        return self.to_deliver.pop(0) if self.to_deliver else []

    async def send(self, messages: list[Message]) -> SendAnswer:
        if not self.up:
            raise TransportError("cannot reach the server: connection refused")
        self.sent.extend(messages)
        return SendAnswer(acked=[m["id"] for m in messages])

    async def upload_output(self, *args: Any) -> tuple[int, str]:
        raise AssertionError("the output fits its record")

    async def aclose(self) -> None:
        pass

    def finals(self, command_id: str) -> list[Message]:
        return [
            m
            for m in self.sent
            if m["type"] == wire.MSG_INVOCATION_UPDATE
            and m["body"]["command_id"] == command_id
            and m["body"]["status"] in wire.TERMINAL_STATUSES
        ]


def association() -> LocalAssociation:
    return {
        "association_id": ASSOC,
        "name": "say-enforced",
        "version": 3,
        "document_name": "Say",
        "document_version": "1",
        "document": {
            "schemaVersion": "2.2",
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "say",
                    "inputs": {"runCommand": ["echo enforced {{ word }}"]},
                }
            ],
            "parameters": {"word": {"type": "String"}},
        },
        "parameters": {"word": "offline"},
        "schedule": "rate(30 minutes)",
        "timezone": "UTC",
        "schedule_offset": 0,
        "anchor": T0,
        "execution_timeout_seconds": 60,
        "offline": True,
    }


def make_daemon(root: Path, server: Server, clock: Clock) -> Daemon:
    cfg = AgentConfig(
        state_dir=root,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        association_offline_grace_seconds=GRACE,
    )
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
    outbox = Outbox(cfg.outbox_file)
    return Daemon(cfg, reg, launcher, outbox=outbox, transport=server, clock=clock)


until = eventually


def test_cut_off_at_its_slot_the_node_runs_the_association_and_reports_it_later(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        server = Server()
        clock = Clock(T0 - 10)
        daemon = make_daemon(tmp_path, server, clock)
        tasks = [
            asyncio.create_task(daemon.poll_loop()),
            asyncio.create_task(daemon.send_loop()),
            asyncio.create_task(daemon.executor.run()),
            asyncio.create_task(daemon.scheduler.run()),
        ]
        try:
            server.deliver(
                [
                    {
                        "id": "m-assoc-1",
                        "type": wire.MSG_ASSOCIATIONS,
                        "body": {"revision": "rev-7", "associations": [association()]},
                    }
                ]
            )
            await until(lambda: "m-assoc-1" in server.acked, "the associations acked")
            assert (tmp_path / SET_FILE).exists() and (tmp_path / SLOTS_FILE).exists()
            assert daemon.associations.revision == "rev-7" and daemon.connected()

            server.up = False  # the link goes down; time passes the slot and the grace
            clock.now = SLOT + GRACE
            daemon.scheduler.changed()
            cmd = daemon.executor.journal.command(COMMAND)
            await until(lambda: cmd.exists("result.json"), "the local run")
            assert not daemon.connected()
            final_id = message_id(NODE, COMMAND, "final")
            await until(lambda: cmd.exists("done"), "the result queued")
            assert await daemon.outbox.contains(final_id)  # kept while the server is away
            assert server.finals(COMMAND) == []

            server.up = True  # back: the outbox delivers the result
            await until(lambda: server.finals(COMMAND), "the result delivered")
            [final] = server.finals(COMMAND)
            assert final["id"] == final_id
            assert final["body"]["status"] == wire.ST_SUCCESS
            assert final["body"]["steps"][0]["stdout"] == "enforced offline\n"
            request = cmd.read("request.json")
            assert request is not None and request["origin"] == ORIGIN

            # The server's own run of that slot arrives: not run again, reported again.
            server_run = run_message(association(), SLOT)
            server_run["id"] = "m-server-run"
            server.deliver([server_run])
            await until(lambda: len(server.finals(COMMAND)) == 2, "the result reported again")
            again = server.finals(COMMAND)[1]
            assert again["id"] == message_id(NODE, COMMAND, "final/again/m-server-run")
            assert again["body"] == final["body"]
            worker = cmd.read("worker.json")
            assert worker is not None and worker["attempt"] == 1
            await until(lambda: "m-server-run" in server.acked, "the server's run acked")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            daemon.outbox.close()

    asyncio.run(scenario())


def test_a_duplicate_run_command_of_a_local_run_still_running_reports_nothing_yet(
    tmp_path: Path,
) -> None:
    """Journaled by the local scheduler, not finished: the server's copy adds nothing now (the
    end is reported anyway); a finished one is reported again, once per server message; a
    duplicate of a command the server itself sent is ignored as before."""

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, Server(), Clock(T0))
        try:
            await daemon.executor.accept(run_message(association(), SLOT), origin=ORIGIN)
            server_run = run_message(association(), SLOT)
            server_run["id"] = "m-server-1"
            assert await daemon.handle_safely(server_run) == "m-server-1"
            assert await daemon.outbox.peek(10) == []

            cmd = daemon.executor.journal.command(COMMAND)
            result = {
                "command_id": COMMAND,
                "status": wire.ST_FAILED,
                "status_details": wire.ST_FAILED,
                "response_code": 1,
                "started_at": T0,
                "ended_at": T0 + 1,
                "steps": [],
            }
            cmd.write("result.json", result)
            server_run["id"] = "m-server-2"
            await daemon.handle_safely(server_run)
            await daemon.handle_safely(server_run)  # the same message again: once
            queued = await daemon.outbox.peek(10)
            assert [m["id"] for m in queued] == [
                message_id(NODE, COMMAND, "final/again/m-server-2")
            ]
            assert queued[0]["body"]["status"] == wire.ST_FAILED

            plain = run_message(association(), SLOT + 1800)
            plain["id"] = "m-plain"
            await daemon.executor.accept(plain)
            daemon.executor.journal.command(plain["body"]["command_id"]).write(
                "result.json", {**result, "command_id": plain["body"]["command_id"]}
            )
            plain["id"] = "m-plain-again"
            await daemon.executor.accept(plain)
            assert len(await daemon.outbox.peek(10)) == 1
        finally:
            daemon.outbox.close()

    asyncio.run(scenario())


def test_a_bad_associations_message_is_acknowledged_reported_and_nothing_stored(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        daemon = make_daemon(tmp_path, Server(), Clock(T0))
        try:
            bad = {
                "id": "m-bad-assoc",
                "type": wire.MSG_ASSOCIATIONS,
                "body": {"revision": "r", "associations": [{"association_id": "x"}]},
            }
            assert await daemon.handle_safely(bad) == "m-bad-assoc"
            [event] = await daemon.outbox.peek(10)
            assert event["type"] == wire.MSG_NODE_EVENT
            assert event["body"]["code"] == wire.EVENT_MESSAGE_FAILED
            assert "associations[0].name" in event["body"]["message"]
            assert not (tmp_path / SET_FILE).exists()
        finally:
            daemon.outbox.close()

    asyncio.run(scenario())


def test_a_corrupt_associations_file_is_reported_when_the_daemon_runs(tmp_path: Path) -> None:
    (tmp_path / SET_FILE).write_text("\x00garbage")

    async def scenario() -> None:
        server = Server()
        daemon = make_daemon(tmp_path, server, Clock(T0))
        assert daemon.associations.summaries == {}
        daemon.stopping.set()  # run() queues what it found, flushes the outbox, stops
        await daemon.run()
        events = [m for m in server.sent if m["type"] == wire.MSG_NODE_EVENT]
        assert [e["body"]["file"] for e in events] == [SET_FILE]
        assert events[0]["body"]["code"] == wire.EVENT_STATE_FILE_CORRUPT
        [moved] = (tmp_path / "corrupt").iterdir()
        assert moved.name.startswith(SET_FILE) and moved.read_text() == "\x00garbage"

    asyncio.run(scenario())


def test_the_agent_keeps_the_servers_set_and_makes_the_servers_command_for_a_slot(
    run_api: Any, tmp_path: Path
) -> None:
    """The contract end to end, in process: the set the real control plane sends is what the
    agent stores, and the run the agent makes by itself for a slot is the very command the
    server's scheduler makes for it."""
    from agent.associations.scheduler import LocalScheduler
    from agent.associations.store import AssociationStore
    from tests.unit.test_associations_api import created, executions, received, tick

    async def scenario(api: Any) -> None:
        node = await api.new_node()
        view = await created(
            api, targets=[node.node_id], schedule="rate(30 minutes)", name="every-half-hour"
        )
        await tick(api)
        sets = [m for m in await received(api, node) if m["type"] == wire.MSG_ASSOCIATIONS]
        store = AssociationStore(tmp_path)
        store.replace(sets[-1]["body"], api.clock())
        [summary] = store.enforced()
        assert summary.association_id == view["association_id"]
        stored = store.association(summary.association_id)
        assert stored is not None and stored["document"]["schemaVersion"]

        made: list[Message] = []

        class Runner:
            def journaled(self, command_id: str) -> bool:
                return False

            async def accept(self, message: Message, *, origin: str | None = None) -> None:
                made.append(message)

        scheduler = LocalScheduler(
            store,
            Runner(),
            grace=GRACE,
            contact_window=GRACE,
            last_contact=lambda: None,
            started_at=api.clock() - 3600,
            clock=api.clock,
        )
        api.clock.advance(30 * 60 + GRACE)
        await tick(api)
        await scheduler.tick(api.clock())
        runs = await executions(api, view["association_id"])
        [scheduled] = [r for r in runs if r["trigger"] == "schedule"]
        assert [m["body"]["command_id"] for m in made] == [scheduled["command_id"]]
        assert made[0]["body"]["parameters"] == stored["parameters"]

    run_api(scenario)
