"""``corral-agent status``: what this node's state dir says, without contacting the server."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from agent.associations.store import Summary, read_only
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.outbox import read_counts
from agent.state import load_registration, load_status
from agent.state_recovery import CORRUPT_DIR


def iso(ts: object) -> str | None:
    if not isinstance(ts, int | float):
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def collect(config: AgentConfig) -> dict[str, Any]:
    reg = load_registration(config)
    status = load_status(config)
    depth, dead = _counts(config)
    return {
        "node_id": reg.node_id,
        "server_url": reg.url,
        "registered_at": iso(reg.registered_at),
        "credential_expires_at": iso(reg.credential_expires_at),
        "last_contact": iso(status.get("last_contact")),
        "outbox_depth": depth,
        # Messages the server rejected (or unreadable rows): corral-agent outbox list-dead.
        "dead": dead,
        "state_dir": str(config.state_dir),
        "files_moved_aside": _moved_aside(config),
        "associations": _associations(config, time.time()),
    }


def _counts(config: AgentConfig) -> tuple[int | str, int | str]:
    """(outbox depth, dead messages)."""
    if not config.outbox_file.exists():
        return 0, 0
    counts = read_counts(config.outbox_file)
    if counts is None:
        unreadable = "unreadable (moved aside when the agent starts)"
        return unreadable, unreadable
    return counts


def _moved_aside(config: AgentConfig) -> int:
    """State files found unreadable and moved into corrupt/ (agent/state_recovery.py)."""
    folder = config.state_dir / CORRUPT_DIR
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def _associations(config: AgentConfig, now: float) -> list[dict[str, Any]] | str:
    """The associations the node holds: each one's schedule, its next slot (when the agent
    would run it by itself, were the server out of reach then, ``grace`` later) and the last
    slot handled, and by whom (agent, server, journal)."""
    held = read_only(config)
    if held is None:
        return "unreadable (moved aside when the agent starts)"
    summaries, slots = held
    rows = []
    for summary in summaries:
        state = slots.get(summary.association_id)
        rows.append(
            {
                "association_id": summary.association_id,
                "name": summary.name,
                "version": summary.version,
                "document": summary.document_name,
                "schedule": summary.schedule,
                "timezone": summary.timezone,
                "offline": summary.offline,
                "next_run": iso(_next_slot(summary, state.since if state else now, now)),
                "last_slot": iso(state.last_slot) if state else None,
                "handled_by": state.handled_by if state else None,
            }
        )
    return rows


def _next_slot(summary: Summary, since: float, now: float) -> float | None:
    """The next slot the agent would run by itself (None: it never runs this one)."""
    if not summary.enforced:
        return None
    from agent import schedules  # only when a scheduled association is held

    try:
        parsed = schedules.parse(summary.schedule or "", "association")
        return schedules.next_fire(
            parsed,
            max(since, now),
            summary.timezone,
            anchor=summary.anchor,
            offset_days=summary.schedule_offset,
        )
    except AgentError:
        return None
