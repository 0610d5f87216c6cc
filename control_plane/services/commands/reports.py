"""What agents report about the commands they run (``invocation_update``), stored in the
channel's group commit: every update of a group in a few statements, whatever the nodes.

A report about an invocation that is not the node's, or that is already final, is a late or
repeated one and changes nothing.  Several reports of one invocation in one group (InProgress
then Success) apply in order.  Once committed, each is handed to the dispatcher, which moves
the fan-out on (the next nodes, the command's status, events).

A result the channel rejected (services/channel_writer.py) arrives here as a Failed update
made by the server (id REJECTION_ID), its details "result rejected: <reason>": it ends the
invocation as any final report does, unless the invocation is final already.

Compliance that steps put (``corral:putComplianceItems``: a step's ``compliance``) is handed
to the compliance service inside the same transaction, once per final report that is
applied: stored with the result or not at all (the agent's outbox sends it again), never
lost between a commit and a later write.  What it refuses is left out, never the report.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.wire import Message
from control_plane.errors import InvalidRequest
from control_plane.services.channel_writer import (
    MAX_REJECTED_DETAILS_CHARS,
    REJECTION_ID,
    AfterCommit,
)
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.commands.dispatcher import Dispatcher
from control_plane.store import commands as store

REPORTED = wire.TERMINAL_STATUSES | {wire.ST_IN_PROGRESS}


def check_update(msg: Message) -> None:
    """Refused before anything is stored: a status the wire does not have."""
    status = msg["body"].get("status")
    if status not in REPORTED:
        raise InvalidRequest(f"invocation_update: unknown status {str(status)[:32]!r}")


class ComplianceSink(Protocol):
    async def record_report(
        self,
        conn: AsyncConnection,
        node_id: str,
        command_id: str,
        steps: list[Any],
        ended_at: float | None,
    ) -> int: ...


class UpdateStore:
    def __init__(
        self, dispatcher: Dispatcher, clock: Clock, compliance: ComplianceSink | None = None
    ) -> None:
        self._dispatcher = dispatcher
        self._clock = clock
        self._compliance = compliance

    async def store(
        self, conn: AsyncConnection, items: list[tuple[str, Message]]
    ) -> AfterCommit | None:
        keys = list(dict.fromkeys((str(m["body"].get("command_id", "")), n) for n, m in items))
        current = await store.invocations_at(conn, keys)
        changes: dict[tuple[str, str], dict[str, Any]] = {}
        reported: list[tuple[str, str, str, str]] = []
        finals: list[tuple[str, str, dict[str, Any]]] = []
        now = self._clock()
        for node_id, msg in items:
            body = msg["body"]
            key = (str(body.get("command_id", "")), node_id)
            status_now = changes.get(key, current.get(key, {})).get("status")
            if status_now is None or status_now in wire.TERMINAL_STATUSES:
                if key in current and key not in changes:  # a late result is kept, as is
                    late = _columns(body, now, 32)
                    await self._dispatcher.late_result(conn, node_id, current[key], late)
                continue  # not the node's, or already final: a late or repeated report
            values = changes.setdefault(key, {})
            details_chars = MAX_REJECTED_DETAILS_CHARS if msg["id"] == REJECTION_ID else 32
            values.update(_columns(body, now, details_chars))
            reported.append((key[0], node_id, values["status"], values["status_details"]))
            if values["status"] in wire.TERMINAL_STATUSES:
                finals.append((node_id, key[0], body))
        await store.update_invocations_at(conn, changes, unless_final=True)
        if self._compliance is not None:
            for node_id, command_id, body in finals:
                steps = body.get("steps")
                if isinstance(steps, list) and any(
                    isinstance(s, dict) and "compliance" in s for s in steps
                ):
                    ended = body.get("ended_at")
                    await self._compliance.record_report(
                        conn,
                        node_id,
                        command_id,
                        steps[: wire.MAX_REPORTED_STEPS],
                        float(ended) if isinstance(ended, int | float) else None,
                    )

        def after() -> None:
            for command_id, node_id, status, details in reported:
                self._dispatcher.agent_reported(command_id, node_id, status, details)

        return after if reported else None


def _columns(body: dict[str, Any], now: float, details_chars: int) -> dict[str, Any]:
    status = str(body["status"])
    values: dict[str, Any] = {
        "status": status,
        "status_details": str(body.get("status_details") or status)[:details_chars],
        "updated_at": now,
    }
    for key in ("response_code", "started_at", "ended_at"):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = int(value) if key == "response_code" else float(value)
    steps = body.get("steps")
    if isinstance(steps, list):
        values["steps"] = [_clean_step(s) for s in steps[:100] if isinstance(s, dict)]
    if status == wire.ST_IN_PROGRESS and "started_at" not in values:
        values["started_at"] = now
    return values


def _clean_step(step: dict[str, Any]) -> dict[str, Any]:
    def text(key: str, limit: int) -> str:
        value = step.get(key, "")
        return value[:limit] if isinstance(value, str) else ""

    def number(key: str) -> float | None:
        value = step.get(key)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    code = step.get("response_code")
    return {
        "name": text("name", 128),
        "action": text("action", 64),
        "status": text("status", 32),
        "status_details": text("status_details", 256),
        "response_code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "started_at": rfc3339(number("started_at")),
        "ended_at": rfc3339(number("ended_at")),
        "stdout": text("stdout", wire.STDOUT_RECORD_CHARS),
        "stderr": text("stderr", wire.STDERR_RECORD_CHARS),
        "stdout_bytes": int(number("stdout_bytes") or 0),
        "stderr_bytes": int(number("stderr_bytes") or 0),
    }
