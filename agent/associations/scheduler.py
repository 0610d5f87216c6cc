"""The local scheduler: a scheduled association runs on the node even when the server is out
of reach.

For each association held with a schedule and ``offline`` set, at each slot (a fire time of
its schedule) plus ``grace`` seconds:

- the agent heard from the server in the last ``contact_window`` seconds: the run is the
  server's (its scheduler sends it as a run_command); the slot is marked ``server``;
- the command id of that slot (``wire.association_command_id``) is already in the journal
  (the server's run arrived): marked ``journal``;
- the agent started less than ``contact_window`` ago and has not heard from the server yet:
  it waits until it has been up that long (the server may yet send the run);
- otherwise the server is out of reach: the slot is recorded as handled (durably), then the
  agent hands its executor a run_command made from the stored association, with the slot's
  command id.  The run is journaled, run and reported through the outbox like any command;
  when the server sends the same command later, the executor reports the journaled result
  instead of running it again.

Only the latest due slot counts: a node that was off, or cut off, over several slots runs
once.  A slot before the agent received the association (at its current version) is never run
by the agent.  A crash between recording the slot and journaling the run is repaired when the
scheduler starts (the slot marked ``agent`` whose command is not journaled is handed over).

Nothing here sleeps on a timer when no association is enforced; tests call ``tick(now)``
with the time they choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from agent import wire
from agent.associations.store import (
    HANDLED_BY_AGENT,
    HANDLED_BY_JOURNAL,
    HANDLED_BY_SERVER,
    AssociationStore,
    Summary,
)
from agent.errors import AgentError
from agent.wire import LocalAssociation, Message

log = logging.getLogger("corral.agent.associations")

ORIGIN = "association"  # the journal's request.json says who made the command
MAX_SLEEP_SECONDS = 300.0  # look again at least this often (a suspended machine's clock jumps)
RETRY_SECONDS = 60.0  # after the state dir failed, or anything unexpected


class Runner(Protocol):
    """What the scheduler needs of the executor (agent/execution/executor.py)."""

    def journaled(self, command_id: str) -> bool: ...

    async def accept(self, message: Message, *, origin: str | None = None) -> None: ...


def schedules() -> ModuleType:
    """agent.schedules, imported on first use only (an agent without scheduled associations
    never loads it)."""
    import agent.schedules

    return agent.schedules


def run_message(association: LocalAssociation, slot: float) -> Message:
    """The run_command the agent makes for itself: as the server's for the same slot."""
    command_id = wire.association_command_id(association["association_id"], slot)
    body: dict[str, Any] = {
        "command_id": command_id,
        "document_name": association["document_name"],
        "document_version": association["document_version"],
        "document": association["document"],
        "parameters": association["parameters"],
        "execution_timeout_seconds": association["execution_timeout_seconds"],
    }
    msg_id = "local-" + hashlib.sha256(command_id.encode()).hexdigest()[:32]
    return Message(id=msg_id, type=wire.MSG_RUN_COMMAND, body=body, created_at=time.time())


class LocalScheduler:
    def __init__(
        self,
        store: AssociationStore,
        runner: Runner,
        *,
        grace: float,
        contact_window: float,
        last_contact: Callable[[], float | None],
        started_at: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.runner = runner
        self.grace = grace
        self.contact_window = contact_window
        self.last_contact = last_contact
        self.started_at = started_at
        self.clock = clock
        self._changed = asyncio.Event()
        self._parsed: dict[tuple[str, int], Any] = {}
        # Held while slots are handled; whoever replaces the store's set takes it too.
        self.lock = asyncio.Lock()

    def changed(self) -> None:
        """The set changed (a new associations message): look again now."""
        self._parsed.clear()
        self._changed.set()

    # The loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        recovered = False
        while True:
            delay: float | None
            try:
                if not recovered:
                    await self.recover()
                    recovered = True
                wake = await self.tick(self.clock())
                if not self.store.enforced():
                    delay = None  # nothing to do until the server sends associations
                elif wake is None:
                    delay = MAX_SLEEP_SECONDS
                else:
                    delay = min(max(wake - self.clock(), 0.0), MAX_SLEEP_SECONDS)
            except Exception:  # a full disk, a bug: the agent goes on, and so does this later
                log.exception("the local association scheduler failed; trying again later")
                delay = RETRY_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
            self._changed.clear()

    async def recover(self) -> None:
        """A slot recorded as run by the agent whose command is not journaled (the agent
        stopped in between): hand it over now."""
        async with self.lock:
            await self._recover()

    async def _recover(self) -> None:
        for summary in self.store.enforced():
            state = self.store.slots.get(summary.association_id)
            if state is None or state.handled_by != HANDLED_BY_AGENT or state.last_slot is None:
                continue
            command_id = wire.association_command_id(summary.association_id, state.last_slot)
            if not await asyncio.to_thread(self.runner.journaled, command_id):
                await self._run(summary, state.last_slot, command_id)

    async def tick(self, now: float) -> float | None:
        """Handle every due slot; the time to look again (None: no slot ahead)."""
        async with self.lock:
            return await self._tick(now)

    async def _tick(self, now: float) -> float | None:
        enforced = self.store.enforced()
        if not enforced:
            return None
        lib = schedules()
        contact = self.last_contact()
        connected = contact is not None and now - contact < self.contact_window
        settling = not connected and now - self.started_at < self.contact_window
        upto = now - self.grace
        wake: float | None = None
        dirty = False
        for summary in enforced:
            parsed = self._parse(lib, summary)
            if parsed is None:
                continue
            state = self.store.slots[summary.association_id]
            after = state.since if state.last_slot is None else max(state.since, state.last_slot)
            zone = summary.timezone
            # As the server's scheduler: rate() counts from the anchor, and no fire at or
            # before it counts (an association's schedule starts when it was set).
            where = {"anchor": summary.anchor, "offset_days": summary.schedule_offset}
            if upto > after:
                latest = lib.last_fire(parsed, after, upto, zone, **where)
                if latest is not None and settling:
                    wake = _earliest(wake, self.started_at + self.contact_window)
                    continue
                if latest is not None:
                    await self._handle(summary, float(latest), connected, now)
                    dirty = True
                    after = float(latest)
            following = lib.next_fire(parsed, max(after, upto), zone, **where)
            if following is not None:
                wake = _earliest(wake, float(following) + self.grace)
        if dirty:
            await asyncio.to_thread(self.store.save)
        return wake

    async def _handle(self, summary: Summary, slot: float, connected: bool, now: float) -> None:
        assoc_id = summary.association_id
        command_id = wire.association_command_id(assoc_id, slot)
        if connected:
            self.store.mark(assoc_id, slot, HANDLED_BY_SERVER, now)
        elif await asyncio.to_thread(self.runner.journaled, command_id):
            self.store.mark(assoc_id, slot, HANDLED_BY_JOURNAL, now)
        else:
            self.store.mark(assoc_id, slot, HANDLED_BY_AGENT, now)
            await asyncio.to_thread(self.store.save)  # recorded before it can start
            await self._run(summary, slot, command_id)

    async def _run(self, summary: Summary, slot: float, command_id: str) -> None:
        association = await asyncio.to_thread(self.store.association, summary.association_id)
        if association is None:
            log.error("association not in the stored set", extra={"command_id": command_id})
            return
        log.warning(
            "the server is out of reach: running the association here",
            extra={
                "association_id": summary.association_id,
                "association": summary.name,
                "version": summary.version,
                "slot": slot,
                "command_id": command_id,
            },
        )
        await self.runner.accept(run_message(association, slot), origin=ORIGIN)

    def _parse(self, lib: ModuleType, summary: Summary) -> Any:
        """The parsed schedule (cached per version); None, logged once, if it cannot be."""
        key = (summary.association_id, summary.version)
        if key not in self._parsed:
            try:
                lib.check_zone(summary.timezone)
                parsed = lib.parse(summary.schedule, "association")
                lib.check_offset(parsed, summary.schedule_offset)
                self._parsed[key] = parsed
            except AgentError as exc:
                log.error(
                    "cannot schedule an association; the agent will not run it by itself",
                    extra={"association_id": summary.association_id, "error": exc.message},
                )
                self._parsed[key] = None
        return self._parsed[key]


def _earliest(current: float | None, candidate: float) -> float:
    return candidate if current is None else min(current, candidate)
