"""The agent's local association scheduler (agent/associations/), driven by the time each test
chooses (``tick(now)``): a slot due while the server is out of reach runs once, through the
real journal; a connected agent leaves it to the server; several missed slots run once; a
restart never runs a slot twice; a new version counts from its arrival; an association the
server keeps to itself never runs here; the stored set survives, and an unreadable file is
moved aside and reported."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.associations.scheduler import ORIGIN, LocalScheduler
from agent.associations.store import (
    HANDLED_BY_AGENT,
    HANDLED_BY_SERVER,
    SET_FILE,
    SLOTS_FILE,
    AssociationStore,
    open_store,
)
from agent.backoff import Backoff
from agent.config import AgentConfig
from agent.execution.executor import Executor, RebootSettings
from agent.execution.journal import Journal
from agent.execution.launcher import Launcher
from agent.execution.settings import WorkerSettings
from agent.outbox import Outbox
from agent.wire import Message

NODE = "mi-0123456789abcdef0"
T0 = 1_800_000_000.0  # a multiple of 30 minutes
HALF_HOUR = 1800.0
GRACE = 60.0
WINDOW = 60.0
ASSOC = "a-0123456789abcdef"


def association(
    version: int = 1, schedule: str | None = "rate(30 minutes)", offline: bool = True
) -> dict[str, Any]:
    return {
        "association_id": ASSOC,
        "name": "ensure-motd",
        "version": version,
        "document_name": "Corral-EnsureFile",
        "document_version": "1",
        "document": {"schemaVersion": "2.2", "mainSteps": []},
        "parameters": {"path": "/etc/motd"},
        "schedule": schedule,
        "timezone": "UTC",
        "schedule_offset": 0,
        "anchor": T0,
        "execution_timeout_seconds": 600,
        "offline": offline,
    }


def body(*items: dict[str, Any], revision: str = "r1") -> dict[str, Any]:
    return {"revision": revision, "associations": list(items)}


def slot_id(slot: float) -> str:
    return wire.association_command_id(ASSOC, slot)


class Node:
    """One life of the agent: the state dir's store, a real executor (journal, outbox; its
    loop not started: a run stays journaled), a scheduler whose contact the test sets."""

    def __init__(self, root: Path, started_at: float = T0 - 3600) -> None:
        self.config = AgentConfig(state_dir=root)
        self.store, self.recovered = open_store(self.config, started_at)
        self.outbox = Outbox(self.config.outbox_file)
        self.executor = Executor(
            journal=Journal(self.config.commands_dir),
            outbox=self.outbox,
            transport=None,
            launcher=Launcher(WorkerSettings(platform="Linux")),
            node_id=NODE,
            reboot=RebootSettings(False, ("true",)),
            backoff=lambda: Backoff(0.01, 0.02),
        )
        self.accepted: list[Message] = []
        self.contact: float | None = None
        self.scheduler = LocalScheduler(
            self.store,
            self,
            grace=GRACE,
            contact_window=WINDOW,
            last_contact=lambda: self.contact,
            started_at=started_at,
            clock=lambda: T0,
        )
        self.crash_on_accept = False

    # The runner the scheduler sees: the executor, counted.
    def journaled(self, command_id: str) -> bool:
        return self.executor.journaled(command_id)

    async def accept(self, message: Message, *, origin: str | None = None) -> None:
        if self.crash_on_accept:
            raise SystemExit("the agent dies here")
        self.accepted.append(message)
        await self.executor.accept(message, origin=origin)

    def journal_ids(self) -> list[str]:
        root = self.config.commands_dir
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def close(self) -> None:
        self.outbox.close()


def run(tmp_path: Path, scenario: Callable[[Path], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario(tmp_path))


async def received(node: Node, *items: dict[str, Any], at: float = T0) -> None:
    await asyncio.to_thread(node.store.replace, body(*items), at)


def test_a_due_slot_runs_once_when_the_server_is_out_of_reach(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        slot = T0 + HALF_HOUR
        assert await node.scheduler.tick(slot + GRACE - 1) == slot + GRACE  # not yet
        assert node.journal_ids() == []
        wake = await node.scheduler.tick(slot + GRACE)
        assert node.journal_ids() == [slot_id(slot)]
        assert wake == slot + HALF_HOUR + GRACE
        await node.scheduler.tick(slot + GRACE + 1)  # again: nothing more
        assert [m["body"]["command_id"] for m in node.accepted] == [slot_id(slot)]
        request = node.executor.journal.command(slot_id(slot)).read("request.json")
        assert request is not None and request["origin"] == ORIGIN
        assert request["body"]["parameters"] == {"path": "/etc/motd"}
        assert request["body"]["document_name"] == "Corral-EnsureFile"
        assert request["body"]["execution_timeout_seconds"] == 600
        state = node.store.slots[ASSOC]
        assert (state.last_slot, state.handled_by) == (slot, HANDLED_BY_AGENT)
        node.close()

    run(tmp_path, scenario)


def test_a_connected_agent_leaves_the_slot_to_the_server(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        slot = T0 + HALF_HOUR
        node.contact = slot + GRACE - 20  # heard from the server 20 s ago
        await node.scheduler.tick(slot + GRACE)
        assert node.journal_ids() == [] and node.accepted == []
        assert node.store.slots[ASSOC].handled_by == HANDLED_BY_SERVER
        # Cut off later: that slot stays the server's; the next one is the agent's.
        await node.scheduler.tick(slot + HALF_HOUR + GRACE)
        assert node.journal_ids() == [slot_id(slot + HALF_HOUR)]
        node.close()

    run(tmp_path, scenario)


def test_the_servers_run_already_journaled_is_not_made_again(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        slot = T0 + HALF_HOUR
        server_run = Message(
            id="m-server-run",
            type=wire.MSG_RUN_COMMAND,
            body={**association(), "command_id": slot_id(slot)},
            created_at=T0,
        )
        await node.executor.accept(server_run)  # delivered before the link went down
        await node.scheduler.tick(slot + GRACE)
        assert node.accepted == [] and node.journal_ids() == [slot_id(slot)]
        node.close()

    run(tmp_path, scenario)


def test_several_missed_slots_run_once_the_latest(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        await node.scheduler.tick(T0 + 5 * HALF_HOUR + GRACE + 100)  # five slots went by
        assert node.journal_ids() == [slot_id(T0 + 5 * HALF_HOUR)]
        node.close()

    run(tmp_path, scenario)


def test_an_agent_just_started_waits_for_the_server_before_running_a_missed_slot(
    tmp_path: Path,
) -> None:
    async def scenario(root: Path) -> None:
        up = T0 + 3 * HALF_HOUR  # the node was off over two slots
        node = Node(root, started_at=up)
        node.store.replace(body(association()), T0)
        assert await node.scheduler.tick(up + 1) == up + WINDOW
        assert node.journal_ids() == []
        await node.scheduler.tick(up + WINDOW)  # no word from the server: run it, once
        assert node.journal_ids() == [slot_id(T0 + 3 * HALF_HOUR)]
        node.close()

    run(tmp_path, scenario)


def test_a_restart_does_not_run_a_slot_twice(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        slot = T0 + HALF_HOUR
        await node.scheduler.tick(slot + GRACE)
        node.close()
        again = Node(root, started_at=slot + GRACE + 5)  # the agent restarts
        await again.scheduler.recover()
        await again.scheduler.tick(slot + 2 * GRACE + 10)
        assert again.accepted == [] and again.journal_ids() == [slot_id(slot)]
        again.close()

    run(tmp_path, scenario)


def test_a_crash_between_recording_the_slot_and_journaling_it_runs_it_once(
    tmp_path: Path,
) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        slot = T0 + HALF_HOUR
        node.crash_on_accept = True
        with pytest.raises(SystemExit):
            await node.scheduler.tick(slot + GRACE)
        assert node.journal_ids() == []
        node.close()
        again = Node(root, started_at=slot + GRACE + 5)
        assert again.store.slots[ASSOC].handled_by == HANDLED_BY_AGENT  # it was recorded
        await again.scheduler.recover()
        assert again.journal_ids() == [slot_id(slot)]
        again.close()
        third = Node(root, started_at=slot + GRACE + 9)
        await third.scheduler.recover()
        await third.scheduler.tick(slot + 3 * GRACE)
        assert third.accepted == [] and third.journal_ids() == [slot_id(slot)]
        third.close()

    run(tmp_path, scenario)


def test_a_new_version_counts_its_slots_from_its_arrival(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association(version=1))
        slot = T0 + HALF_HOUR
        await received(node, association(version=2), at=slot + 30)  # after the slot
        await node.scheduler.tick(slot + GRACE + 5)
        assert node.journal_ids() == []  # that slot is before version 2 reached the node
        await node.scheduler.tick(slot + HALF_HOUR + GRACE)
        assert node.journal_ids() == [slot_id(slot + HALF_HOUR)]
        assert node.store.slots[ASSOC].version == 2
        node.close()

    run(tmp_path, scenario)


def test_a_slot_before_the_association_reached_the_node_is_never_run(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association(), at=T0 + HALF_HOUR + 1)  # just after a slot
        assert await node.scheduler.tick(T0 + HALF_HOUR + GRACE + 10) == T0 + 2 * HALF_HOUR + GRACE
        assert node.journal_ids() == []
        node.close()

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    "item",
    [association(offline=False), association(schedule=None)],
    ids=["server-only", "no-schedule"],
)
def test_an_association_not_enforced_offline_never_runs_here(
    tmp_path: Path, item: dict[str, Any]
) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, item)
        assert await node.scheduler.tick(T0 + 10 * HALF_HOUR) is None
        assert node.journal_ids() == [] and node.store.enforced() == []
        node.close()

    run(tmp_path, scenario)


def test_the_set_and_the_slots_survive_a_restart(tmp_path: Path) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        await received(node, association())
        await node.scheduler.tick(T0 + HALF_HOUR + GRACE)
        node.close()
        store, recovered = open_store(AgentConfig(state_dir=root), T0 + 7200)
        assert recovered == []
        assert store.revision == "r1" and list(store.summaries) == [ASSOC]
        assert store.slots[ASSOC].last_slot == T0 + HALF_HOUR
        assert store.slots[ASSOC].since == T0  # not reset by the restart
        stored = store.association(ASSOC)
        assert stored is not None and stored["parameters"] == {"path": "/etc/motd"}

    run(tmp_path, scenario)


@pytest.mark.parametrize("name", [SET_FILE, SLOTS_FILE])
@pytest.mark.parametrize("content", ["{not json", '{"revision": 3}', "[1, 2]"])
def test_an_unreadable_file_is_moved_aside_and_reported(
    tmp_path: Path, name: str, content: str
) -> None:
    config = AgentConfig(state_dir=tmp_path)
    AssociationStore(tmp_path).replace(body(association()), T0)
    (tmp_path / name).write_text(content)
    store, recovered = open_store(config, T0 + 100)
    [item] = recovered
    assert item.code == wire.EVENT_STATE_FILE_CORRUPT and item.file == name
    assert (tmp_path / item.moved_to).read_text() == content
    event = item.event()
    assert event["type"] == wire.MSG_NODE_EVENT and name in event["body"]["message"]
    if name == SET_FILE:
        assert store.summaries == {} and store.revision is None
    else:
        assert store.slots[ASSOC].since == T0 + 100  # counts from now: no old slot runs
        assert json.loads((tmp_path / SLOTS_FILE).read_text())[ASSOC]["since"] == T0 + 100


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"associations": []}, "revision"),
        ({"revision": "r", "associations": {}}, "must be a list"),
        (body({**association(), "version": "1"}), r"associations\[0\].version"),
        (body({**association(), "offline": 1}), r"associations\[0\].offline"),
        (body({k: v for k, v in association().items() if k != "document"}), "document"),
        (body({**association(), "association_id": "a/b"}), "cannot make a command id"),
        (body({**association(), "association_id": "a" * 60}), "cannot make a command id"),
        (body(association(), association()), "appears twice"),
        (body({**association(), "execution_timeout_seconds": 0}), "must be positive"),
        (body(*[{**association(), "association_id": f"a{n}"} for n in range(101)]), "at most"),
    ],
)
def test_a_bad_associations_body_is_refused_and_nothing_is_stored(
    tmp_path: Path, bad: dict[str, Any], error: str
) -> None:
    store = AssociationStore(tmp_path)
    with pytest.raises(ValueError, match=error):
        store.replace(bad, T0)
    assert not (tmp_path / SET_FILE).exists() and not (tmp_path / SLOTS_FILE).exists()
    assert store.revision is None


def test_status_shows_the_associations_the_node_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent import cli
    from agent.state import Registration, save_registration
    from agent.status import iso

    config = AgentConfig(state_dir=tmp_path)
    save_registration(config, Registration(NODE, "https://corral:8443", 1.0, 2e9, 1.0, "sha256:0"))
    store = AssociationStore(tmp_path)
    server_only = {**association(offline=False), "association_id": "a-2", "name": "needs-ssm"}
    store.replace(body(association(), server_only), T0)
    store.mark(ASSOC, T0, HANDLED_BY_AGENT, T0 + 60)
    store.save()

    def status(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["status", "--state-dir", str(tmp_path), *argv])
        assert exit_info.value.code == 0
        return capsys.readouterr().out

    held = json.loads(status("--output", "json"))["associations"]
    assert [(a["name"], a["next_run"], a["last_slot"], a["handled_by"]) for a in held] == [
        ("ensure-motd", iso(T0 + HALF_HOUR), iso(T0), "agent"),
        ("needs-ssm", None, None, None),
    ]
    table = status()
    assert f"ensure-motd  rate(30 minutes)  {iso(T0 + HALF_HOUR)}  {iso(T0)}" in table
    assert "needs-ssm" in table and "server only" in table
    (tmp_path / SET_FILE).write_text("{oops")
    assert "unreadable (moved aside when the agent starts)" in status()


def test_the_grace_is_a_typed_setting_of_agent_toml(tmp_path: Path) -> None:
    from agent.config import load_config
    from agent.errors import ConfigError

    assert load_config(tmp_path).association_offline_grace_seconds == 60.0
    (tmp_path / "agent.toml").write_text("association_offline_grace_seconds = 120\n")
    assert load_config(tmp_path).association_offline_grace_seconds == 120.0
    for bad in ("0", "-5", '"60"'):
        (tmp_path / "agent.toml").write_text(f"association_offline_grace_seconds = {bad}\n")
        with pytest.raises(ConfigError, match="association_offline_grace_seconds"):
            load_config(tmp_path)


def test_a_cron_schedule_runs_at_its_local_time_with_the_servers_slot(tmp_path: Path) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    sunday = dt.datetime(2027, 1, 17, 2, 0, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    assert sunday - T0 < 7 * 86400  # T0 is the Friday before

    async def scenario(root: Path) -> None:
        node = Node(root)
        weekly = {**association(schedule="cron(0 2 ? * SUN *)"), "timezone": "Europe/Berlin"}
        await received(node, weekly)
        assert await node.scheduler.tick(T0 + 60) == sunday + GRACE
        await node.scheduler.tick(sunday + GRACE)
        assert node.journal_ids() == [slot_id(sunday)]  # 01:00 UTC: 02:00 in Berlin
        node.close()

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    "change",
    [
        {"schedule": "rate(5 minutes)"},  # too fast for an association
        {"schedule": "cron(0 2 * * SUN *)"},  # no ? in a day field
        {"timezone": "Mars/Olympus"},
        {"schedule_offset": 3},  # rate() takes no offset
    ],
)
def test_a_schedule_the_agent_cannot_use_is_never_run_and_the_rest_go_on(
    tmp_path: Path, change: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(root: Path) -> None:
        node = Node(root)
        bad = {**association(), **change, "association_id": "a-bad", "name": "bad"}
        await received(node, bad, association())
        await node.scheduler.tick(T0 + HALF_HOUR + GRACE)
        assert node.journal_ids() == [slot_id(T0 + HALF_HOUR)]
        assert "cannot schedule an association" in caplog.text
        node.close()

    run(tmp_path, scenario)
