"""What an operator sees of a command and its invocations, and who sees its output.

Output (each step's ``stdout`` and ``stderr``) is the sensitive part of a command: every view
that carries it is built here, and building one needs an :class:`OutputAccess`, the reader's
answer to ``commands:GetOutput`` on the command and on each node.  An invocation the reader
may not read keeps its statuses and exit codes, its steps' output becomes ``null``, and
``output_omitted`` says why.  Events and webhooks carry no output at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from agent import wire
from control_plane.services.clock import rfc3339
from control_plane.services.commands.state import is_delivery_timeout, is_error

OUTPUT_FIELDS = ("stdout", "stderr")


class OutputAccess(Protocol):
    """The reader of a view: may they read the output of this command on this node?"""

    @property
    def uses_node_tags(self) -> bool:
        """Whether ``may_read`` needs the node's tags (else it is given ``None``)."""
        ...

    def may_read(self, node_id: str, tags: dict[str, str] | None) -> bool: ...


class NoOutput:
    """A reader who sees no output (what nobody has asked for yet)."""

    uses_node_tags = False

    def may_read(self, node_id: str, tags: dict[str, str] | None) -> bool:
        return False


def omitted_reason(node_id: str) -> str:
    return f"output omitted: you may not commands:GetOutput on node/{node_id}"


def readable_nodes(
    access: OutputAccess, node_ids: Iterable[str], tags: dict[str, dict[str, str]] | None
) -> set[str]:
    """The nodes (of ``node_ids``) whose output ``access`` may read."""
    return {
        node_id
        for node_id in node_ids
        if access.may_read(node_id, tags.get(node_id, {}) if tags is not None else None)
    }


def command_view(
    row: dict[str, Any],
    invocations: list[dict[str, Any]] | None = None,
    readable: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A command; with ``invocations``, their statuses and the output of ``readable`` nodes."""
    view: dict[str, Any] = {
        "command_id": row["id"],
        "document_name": row["document_name"],
        "document_version": row["document_version"],
        "parameters": row["parameters"],
        "targets": row["targets"],
        "comment": row["comment"],
        "max_concurrency": row["max_concurrency"],
        "max_errors": row["max_errors"],
        "timeout_seconds": row["execution_timeout"],
        "delivery_timeout_seconds": row["delivery_timeout"],
        "status": row["status"],
        "status_details": row["status_details"],
        "target_count": row["target_count"],
        "requested_by": row["requested_by"],
        "created_at": rfc3339(row["created_at"]),
        "completed_at": rfc3339(row["completed_at"]),
    }
    if invocations is not None:
        view["completed_count"] = sum(
            1 for i in invocations if i["status"] in wire.TERMINAL_STATUSES
        )
        view["error_count"] = sum(
            1 for i in invocations if is_error(i["status"], i["status_details"])
        )
        view["delivery_timed_out_count"] = sum(
            1 for i in invocations if is_delivery_timeout(i["status"], i["status_details"])
        )
        view["invocations"] = [invocation_view(i, i["node_id"] in readable) for i in invocations]
    return view


def invocation_view(inv: dict[str, Any], output: bool) -> dict[str, Any]:
    """One node's invocation; its steps' output only when ``output`` (the reader may)."""
    steps = inv["steps"]
    hidden = not output and bool(steps)
    if hidden:
        steps = [{**step, **dict.fromkeys(OUTPUT_FIELDS)} for step in steps]
    return {
        "command_id": inv["command_id"],
        "node_id": inv["node_id"],
        "node_name": inv.get("node_name") or "",
        "status": inv["status"],
        "status_details": inv["status_details"],
        "response_code": inv["response_code"],
        "started_at": rfc3339(inv["started_at"]),
        "ended_at": rfc3339(inv["ended_at"]),
        "steps": steps,
        "output_omitted": omitted_reason(inv["node_id"]) if hidden else None,
        "late_result_at": rfc3339(inv.get("late_result_at")),
        "note": late_note(inv),
    }


def late_note(inv: dict[str, Any]) -> str | None:
    """What an operator must know about a result that came after its invocation ended."""
    if inv.get("late_result_at") is None:
        return None
    return (
        f"the node's result arrived after the invocation had ended {inv['status']} "
        f"({inv['status_details']}); it is shown, the status is kept"
    )
