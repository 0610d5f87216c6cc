"""Results that arrive after the server ended their invocation itself.

The server ends an invocation without its node's word in two cases: TimedOut "no report from
node" (silent past its execution timeout plus a grace) and DeliveryTimedOut (the node took the
command just as its delivery deadline passed).  The node may still have run it, and its result
may come later (an agent back from a long outage, results queued in its outbox).  Such a result
is not lost: its steps (with their output), exit code and times are stored on the invocation
with ``late_result_at``, the first one only; the final status stays what it was, because the
command's status and everything that followed it (events, webhooks, rate and error control)
were decided on it.  The late arrival is in the audit trail (``commands:LateResult`` by the
node), in the same transaction as the result.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.services.audit import AuditEvent, AuditService
from control_plane.services.commands.state import DETAIL_NO_REPORT
from control_plane.store import commands as store

log = logging.getLogger("corral.commands")

ENDED_BY_SERVER = frozenset({DETAIL_NO_REPORT, wire.DETAIL_DELIVERY_TIMED_OUT})
KEPT = ("response_code", "started_at", "ended_at", "steps")
ACTION = "commands:LateResult"


def is_late(invocation: dict[str, Any], reported_status: str) -> bool:
    """Whether a final report for this (final) invocation is a late result to keep."""
    return (
        invocation["status"] == wire.ST_TIMED_OUT
        and invocation["status_details"] in ENDED_BY_SERVER
        and invocation.get("late_result_at") is None
        and reported_status in wire.TERMINAL_STATUSES
    )


async def store_late(
    conn: AsyncConnection,
    audit: AuditService | None,
    node_id: str,
    invocation: dict[str, Any],
    values: dict[str, Any],
    now: float,
) -> bool:
    """Keep a late result (``values``: the report's cleaned columns) if it is one; in the
    caller's transaction.  False: a repeated or meaningless report, nothing stored."""
    status = str(values.get("status", ""))
    if not is_late(invocation, status) or not ("steps" in values or "response_code" in values):
        return False  # not late, or no result in it (a rejected one: nothing to keep)
    command_id = invocation["command_id"]
    kept: dict[str, Any] = {k: values[k] for k in KEPT if k in values}
    kept["late_result_at"] = now
    await store.update_invocations_at(conn, {(command_id, node_id): kept})
    invocation.update(kept)  # a repeat in the same group is not late twice
    if audit is not None:
        await audit.record(
            conn,
            AuditEvent(
                action=ACTION,
                resource=f"command/{command_id}",
                outcome="allowed",
                identity_type="node",
                identity_id=node_id,
                request={
                    "node_id": node_id,
                    "reported_status": status,
                    "reported_details": values.get("status_details"),
                    "response_code": values.get("response_code"),
                    "status_kept": invocation["status"],
                    "status_details_kept": invocation["status_details"],
                },
            ),
        )
    log.info(
        "late result stored; the invocation's final status is kept",
        extra={"command_id": command_id, "node_id": node_id, "reported": status},
    )
    return True
