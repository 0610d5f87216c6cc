"""``corral-agent status``: what this node's state dir says, without contacting the server."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agent.config import AgentConfig
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
