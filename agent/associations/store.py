"""The associations this node holds, and what the local scheduler did with their slots.

Two files in the state dir, each written to a temporary file, fsynced, then renamed
(agent/state.py's ``write_atomic``), so a crash or a power cut leaves the old one or the new one:

``associations.json``
    the last ``associations`` message's body (``revision``, ``associations``: the documents,
    parameters and schedules), with ``received_at``.  Rewritten only when the server sends a
    new set; in memory the agent keeps a summary of each (no documents), and reads the file
    again for the document when it runs one.
``association_slots.json``
    per association id: the ``version`` held, ``since`` (when the agent received that
    version: the agent never runs a slot before it), ``last_slot`` (the latest scheduled time
    handled), ``handled_by`` (``agent``: run here; ``server``: the server was in contact, the
    run was its; ``journal``: the command was already journaled) and ``handled_at``.

A file that cannot be read (not JSON, or not the shape written here) is moved into
``corrupt/`` and reported as a ``node_event`` (agent/state_recovery.py).  Without the set the
node holds no associations until the server sends them again; without the slots every
association counts from the moment the agent started (no earlier slot is ever run by it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from agent import wire
from agent.config import AgentConfig
from agent.execution.journal import COMMAND_ID_RE
from agent.state import write_atomic
from agent.state_recovery import Recovered, quarantine
from agent.wire import AssociationsBody, LocalAssociation

log = logging.getLogger("corral.agent.associations")

SET_FILE = "associations.json"
SLOTS_FILE = "association_slots.json"
HANDLED_BY_AGENT = "agent"
HANDLED_BY_SERVER = "server"
HANDLED_BY_JOURNAL = "journal"

# Each key of a LocalAssociation and the type its value must have.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "association_id": str,
    "name": str,
    "version": int,
    "document_name": str,
    "document_version": str,
    "document": dict,
    "parameters": dict,
    "schedule": (str, type(None)),
    "timezone": str,
    "schedule_offset": int,
    "anchor": (int, float),
    "execution_timeout_seconds": int,
    "offline": bool,
}
_MAX_ASSOCIATION_ID = 64 - 1 - 10  # "-" and a 10-digit slot still make a valid command id


@dataclass(frozen=True)
class Summary:
    """What the agent keeps in memory of one association (its document stays on disk)."""

    association_id: str
    name: str
    version: int
    document_name: str
    schedule: str | None
    timezone: str
    schedule_offset: int
    anchor: float
    offline: bool

    @property
    def enforced(self) -> bool:
        """Does the agent run it by itself when the server is out of reach?"""
        return self.offline and self.schedule is not None


@dataclass
class SlotState:
    version: int
    since: float
    last_slot: float | None = None
    handled_by: str | None = None
    handled_at: float | None = None


def validate(body: Any) -> AssociationsBody:
    """The ``associations`` message body, checked; ValueError (one line) naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("associations: the body is not an object")
    revision = body.get("revision")
    if not isinstance(revision, str) or not revision or len(revision) > 128:
        raise ValueError("associations: revision must be a string of 1 to 128 characters")
    items = body.get("associations")
    if not isinstance(items, list):
        raise ValueError("associations: associations must be a list")
    if len(items) > wire.MAX_NODE_ASSOCIATIONS:
        raise ValueError(
            f"associations: {len(items)} associations, at most {wire.MAX_NODE_ASSOCIATIONS}"
        )
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"associations[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is not an object")
        for key, kind in _FIELDS.items():
            value = item.get(key)
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise ValueError(f"{where}.{key} is missing or of the wrong type")
        assoc_id = item["association_id"]
        if len(assoc_id) > _MAX_ASSOCIATION_ID or not COMMAND_ID_RE.match(assoc_id):
            raise ValueError(
                f"{where}.association_id {assoc_id[:80]!r} cannot make a command id "
                f"(letters, digits, - and _, at most {_MAX_ASSOCIATION_ID})"
            )
        if assoc_id in seen:
            raise ValueError(f"{where}.association_id {assoc_id!r} appears twice")
        seen.add(assoc_id)
        if item["execution_timeout_seconds"] <= 0:
            raise ValueError(f"{where}.execution_timeout_seconds must be positive")
    return cast(AssociationsBody, body)


def summarize(item: LocalAssociation) -> Summary:
    return Summary(
        association_id=item["association_id"],
        name=item["name"],
        version=item["version"],
        document_name=item["document_name"],
        schedule=item["schedule"],
        timezone=item["timezone"],
        schedule_offset=item["schedule_offset"],
        anchor=float(item["anchor"]),
        offline=item["offline"],
    )


def _slots_from(data: Any) -> dict[str, SlotState]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    slots: dict[str, SlotState] = {}
    for assoc_id, raw in data.items():
        try:
            state = SlotState(**raw)
        except TypeError:
            raise ValueError(f"the entry of {assoc_id!r} is not a slot record") from None
        numbers = [state.since, *([state.last_slot] if state.last_slot is not None else [])]
        if not isinstance(state.version, int) or not all(
            isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
        ):
            raise ValueError(f"the entry of {assoc_id!r} holds a wrong type")
        slots[assoc_id] = state
    return slots


class AssociationStore:
    def __init__(self, state_dir: Path) -> None:
        self.set_file = state_dir / SET_FILE
        self.slots_file = state_dir / SLOTS_FILE
        self.revision: str | None = None
        self.received_at: float | None = None
        self.summaries: dict[str, Summary] = {}
        self.slots: dict[str, SlotState] = {}

    # The set -----------------------------------------------------------------------------
    def replace(self, body: Any, now: float) -> AssociationsBody:
        """Keep the set the server sent, durably (before its message is acknowledged).  An
        association new to the node, or at a new version, counts its slots from ``now``."""
        checked = validate(body)
        stored = {"revision": checked["revision"], "received_at": now, **checked}
        write_atomic(self.set_file, json.dumps(stored).encode(), 0o600)
        self._adopt(checked, now)
        self._reconcile(now)
        self.save()
        return checked

    def _adopt(self, body: AssociationsBody, received_at: float) -> None:
        self.revision = body["revision"]
        self.received_at = received_at
        self.summaries = {a["association_id"]: summarize(a) for a in body["associations"]}

    def _reconcile(self, now: float) -> bool:
        """Slot records for the associations held (a new version starts again at ``now``);
        True if anything changed."""
        changed = False
        for assoc_id in list(self.slots):
            if assoc_id not in self.summaries:
                del self.slots[assoc_id]
                changed = True
        for assoc_id, summary in self.summaries.items():
            state = self.slots.get(assoc_id)
            if state is None or state.version != summary.version:
                last = state.last_slot if state is not None else None
                by = state.handled_by if state is not None else None
                at = state.handled_at if state is not None else None
                self.slots[assoc_id] = SlotState(summary.version, now, last, by, at)
                changed = True
        return changed

    def association(self, assoc_id: str) -> LocalAssociation | None:
        """The whole association (document, parameters), read from the file."""
        data = json.loads(self.set_file.read_text(encoding="utf-8"))
        for item in data.get("associations", []):
            if item.get("association_id") == assoc_id:
                return cast(LocalAssociation, item)
        return None

    def enforced(self) -> list[Summary]:
        return [s for s in self.summaries.values() if s.enforced]

    # Slots -------------------------------------------------------------------------------
    def mark(self, assoc_id: str, slot: float, handled_by: str, now: float) -> None:
        """Record in memory that ``slot`` was handled; ``save`` makes it durable."""
        state = self.slots[assoc_id]
        state.last_slot = slot
        state.handled_by = handled_by
        state.handled_at = now

    def save(self) -> None:
        data = {assoc_id: asdict(state) for assoc_id, state in self.slots.items()}
        write_atomic(self.slots_file, json.dumps(data).encode(), 0o600)


def _read(path: Path) -> Any:
    """The file's JSON; None if it does not exist; ValueError if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
    return json.loads(text)


def _load_set(data: Any) -> tuple[AssociationsBody, float]:
    body = validate(data)
    received = data.get("received_at") if isinstance(data, dict) else None
    if not isinstance(received, int | float) or isinstance(received, bool):
        raise ValueError("received_at is missing")
    return body, float(received)


def open_store(config: AgentConfig, now: float) -> tuple[AssociationStore, list[Recovered]]:
    """The store as the state dir holds it; an unreadable file is moved aside (reported by
    the caller through the outbox) and the agent goes on without it."""
    store = AssociationStore(config.state_dir)
    recovered: list[Recovered] = []
    try:
        data = _read(store.set_file)
        if data is not None:
            body, received_at = _load_set(data)
            store._adopt(body, received_at)
    except (OSError, ValueError) as exc:
        recovered.append(
            quarantine(
                config.state_dir,
                store.set_file,
                reason=_why(exc),
                consequence="the node holds no associations until the server sends them "
                "again; none is run by the agent meanwhile",
            )
        )
    try:
        data = _read(store.slots_file)
        if data is not None:
            store.slots = _slots_from(data)
    except (OSError, ValueError) as exc:
        recovered.append(
            quarantine(
                config.state_dir,
                store.slots_file,
                reason=_why(exc),
                consequence="each association counts its schedule from now: a slot missed "
                "before is not run by the agent",
            )
        )
    if store._reconcile(now) and (store.summaries or store.slots_file.exists()):
        store.save()
    if store.revision is not None:
        log.info(
            "associations loaded",
            extra={"revision": store.revision, "count": len(store.summaries)},
        )
    return store, recovered


def read_only(config: AgentConfig) -> tuple[list[Summary], dict[str, SlotState]] | None:
    """For ``corral-agent status``: what the files say, without moving anything; None if one
    cannot be read (the agent moves it aside when it starts)."""
    try:
        data = _read(config.state_dir / SET_FILE)
        summaries = (
            [] if data is None else [summarize(a) for a in _load_set(data)[0]["associations"]]
        )
        slots_data = _read(config.state_dir / SLOTS_FILE)
        slots = {} if slots_data is None else _slots_from(slots_data)
    except (OSError, ValueError):
        return None
    return summaries, slots


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
