"""``corral patch``: what AWS-RunPatchBaseline reported (docs/patching.md).

``summary`` is the fleet (or one patch group): how many nodes are compliant, non-compliant,
waiting for a reboot, failed; ``nodes`` one row per node; ``show`` one node's last operation;
``states`` one node's patches and their states; ``history`` what changed on a node, newest
first.  NODE is a node's id or its name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import click

from agent.inventory import schema
from agent.patching.states import STATES
from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import BadResponse
from control_plane.cli.output import Column, emit_json, emit_list, emit_object, field
from control_plane.cli.patch_args import UpperChoice, group_callback

NO_REPORT: Final = "run AWS-RunPatchBaseline with Operation=Scan on it"
# The fleet's counts, in the order people read them, and what each is called in the table.
COUNTS: Final = (
    ("nodes", "all"),
    ("reported", "reported"),
    ("unreported", "not reported yet"),
    ("compliant", "compliant"),
    ("non_compliant", "non-compliant"),
    ("pending_reboot", "pending reboot"),
    ("failed", "failed"),
    ("missing", "with missing patches"),
    ("installed_rejected", "with rejected patches installed"),
    ("critical_non_compliant", "critical non-compliant"),
    ("security_non_compliant", "security non-compliant"),
    ("other_non_compliant", "other non-compliant"),
)
SHOW_FIELDS: Final = (
    "node_id", "patch_group", "reported", "ComplianceStatus", "ComplianceSeverity",
    "OperationType", "OperationStartTime", "OperationEndTime", "BaselineId", "SnapshotId",
    "OperatingSystem", "Product", "PackageManager", "RebootOption", "InstalledCount",
    "InstalledOtherCount", "InstalledPendingRebootCount", "InstalledRejectedCount",
    "MissingCount", "FailedCount", "NotApplicableCount", "AvailableSecurityUpdateCount",
    "CriticalNonCompliantCount", "SecurityNonCompliantCount", "OtherNonCompliantCount",
    "LastNoRebootInstallOperationTime", "CommandId", "Message",
)  # fmt: skip
NODE_COLUMNS: list[Column] = [
    field("node_id"),
    ("patch_group", lambda r: r.get("PatchGroup")),
    ("baseline", lambda r: r.get("BaselineId")),
    ("compliance", lambda r: r.get("ComplianceStatus")),
    ("severity", lambda r: r.get("ComplianceSeverity")),
    ("installed", lambda r: r.get("InstalledCount")),
    ("missing", lambda r: r.get("MissingCount")),
    ("failed", lambda r: r.get("FailedCount")),
    ("pending_reboot", lambda r: r.get("InstalledPendingRebootCount")),
    ("rejected", lambda r: r.get("InstalledRejectedCount")),
    ("operation", lambda r: r.get("OperationType")),
    ("ended", lambda r: r.get("OperationEndTime")),
]
STATE_COLUMNS: list[Column] = [
    ("patch", lambda p: p.get("KBId")),
    field("State"),
    field("Classification"),
    field("Severity"),
    ("installed", lambda p: p.get("InstalledVersion")),
    ("available", lambda p: p.get("AvailableVersion")),
    ("compliance_level", lambda p: p.get("ComplianceLevel")),
    ("installed_time", lambda p: p.get("InstalledTime")),
    ("reason", lambda p: p.get("Reason")),
]
# What a history line shows of a patch's change, and of an operation's summary.
PATCH_ATTRIBUTES: Final = ("State", "InstalledVersion", "AvailableVersion", "Reason")
SUMMARY_COUNTS: Final = (
    ("missing", "MissingCount"),
    ("failed", "FailedCount"),
    ("pending reboot", "InstalledPendingRebootCount"),
    ("rejected", "InstalledRejectedCount"),
)


def _node_path(node_id: str, *rest: str) -> str:
    return "/".join(["/v1/patch/nodes", quote(node_id, safe=""), *rest])


def _group_params(group: str | None) -> dict[str, str]:
    return {} if group is None else {"group": group}


group_option = click.option(
    "--group", metavar="GROUP", callback=group_callback,
    help="Only the nodes of this patch group (their `Patch Group` or `PatchGroup` tag).",
)  # fmt: skip


@click.group()
def patch() -> None:
    """What AWS-RunPatchBaseline found and did: per node and across the fleet."""


@patch.command()
@group_option
@output_option
@pass_runtime
def summary(rt: Runtime, group: str | None, output: str) -> None:
    """The fleet's nodes: compliant, non-compliant, pending reboot, failed ...

    Counts nodes: a node with 3 missing patches counts once under "with missing patches"."""
    with rt.client() as api:
        data = api.get("/v1/patch/summary", params=_group_params(group))
    counts = data.get("counts") if isinstance(data, dict) else None
    if not isinstance(counts, dict):
        raise BadResponse(f"{api.url} answered GET /v1/patch/summary without its counts")
    if output == "json":
        emit_json(data)
        return
    click.echo(f"patch group {group}:" if group is not None else "every node:")
    rows = [{"status": label, "nodes": counts.get(key, 0)} for key, label in COUNTS]
    emit_list(rows, [field("status"), field("nodes")], output)
    by_group = data.get("reported_by_group") or {}
    if group is None and by_group:
        click.echo("")
        rows = [{"patch_group": g or "(none)", "reported": n} for g, n in sorted(by_group.items())]
        emit_list(rows, [field("patch_group"), field("reported")], output)


@patch.command()
@group_option
@max_items_option
@output_option
@pass_runtime
def nodes(rt: Runtime, group: str | None, max_items: int | None, output: str) -> None:
    """Each node's last patch operation: its compliance and counts (nodes that reported)."""
    with rt.client() as api:
        rows = api.get_list(
            "/v1/patch/states", "nodes", params=_group_params(group), max_items=max_items
        )
    emit_list(rows, NODE_COLUMNS, output)


@patch.command()
@click.argument("node")
@output_option
@pass_runtime
def show(rt: Runtime, node: str, output: str) -> None:
    """A node's last patch operation: when, which baseline, its compliance and counts."""
    from control_plane.cli.inventory import node_id_of

    with rt.client() as api:
        node_id = node_id_of(api, node)
        found = api.get(_node_path(node_id))
    if not isinstance(found, dict):
        raise BadResponse(f"{api.url} answered GET {_node_path(node_id)} with no object")
    emit_object(found, output, SHOW_FIELDS)
    if output != "json" and not found.get("reported"):
        click.echo(f"no patch report from {node_id} yet: {NO_REPORT}", err=True)


@patch.command()
@click.argument("node")
@click.option(
    "--state", type=UpperChoice(STATES),
    help="Only the patches in this state.",
)  # fmt: skip
@max_items_option
@output_option
@pass_runtime
def states(rt: Runtime, node: str, state: str | None, max_items: int | None, output: str) -> None:
    """A node's patches and their states (installed, missing, failed ...) after its last
    operation.  INSTALLED_OTHER: installed, not approved by the baseline."""
    from control_plane.cli.inventory import node_id_of

    params = {} if state is None else {"state": state}
    with rt.client() as api:
        node_id = node_id_of(api, node)
        rows = api.get_list(_node_path(node_id, "patches"), "patches", params=params,
                            max_items=max_items)  # fmt: skip
    emit_list(rows, STATE_COLUMNS, output)
    if not rows and state is None and output != "json":
        click.echo(f"no patch report from {node_id} yet: {NO_REPORT}", err=True)


def history_detail(change: Mapping[str, Any]) -> str:
    """What changed, in a few words: ``State: MISSING -> INSTALLED_PENDING_REBOOT``, or an
    operation's outcome ``NON_COMPLIANT: missing 0 (was 2), failed 0 ...``."""
    kind = change.get("change")
    old, new = change.get("old") or {}, change.get("new") or {}
    if kind in ("captured", "deleted"):
        items = (new if kind == "captured" else old).get("items")
        if change.get("type_name") == schema.PATCH_SUMMARY or items is None:
            return "first report" if kind == "captured" else "report deleted"
        return f"first report: {items} patches" if kind == "captured" else f"{items} patches"
    if change.get("type_name") == schema.PATCH_SUMMARY:
        item = new or old
        counts = [
            f"{label} {item.get(attr, '0')}"
            + (f" (was {old.get(attr, '0')})" if new and old and old.get(attr) != new.get(attr)
               else "")
            for label, attr in SUMMARY_COUNTS
        ]  # fmt: skip
        return f"{item.get('ComplianceStatus') or '?'}: {', '.join(counts)}"
    if kind == "changed":
        diffs = [
            f"{a}: {old.get(a) or '(none)'} -> {new.get(a) or '(none)'}"
            for a in PATCH_ATTRIBUTES
            if old.get(a) != new.get(a)
        ]
        return "; ".join(diffs) or "-"
    item = new or old
    return ", ".join(f"{a}={item[a]}" for a in PATCH_ATTRIBUTES if item.get(a)) or "-"


def _what(change: Mapping[str, Any]) -> Any:
    if change.get("type_name") == schema.PATCH_SUMMARY:
        item = change.get("new") or change.get("old") or {}
        return f"operation {item.get('OperationType') or ''}".strip()
    key = change.get("key") or {}
    if isinstance(key, dict) and key.get("KBId"):
        return key["KBId"]
    return "patches"


HISTORY_COLUMNS: list[Column] = [
    field("time"), ("what", _what), field("change"), ("detail", history_detail),
]  # fmt: skip


@patch.command()
@click.argument("node")
@click.option(
    "--since", metavar="WHEN",
    help="7d, 12h, 30m (before now), a date (2026-12-01, UTC) or an RFC 3339 time.",
)  # fmt: skip
@max_items_option
@output_option
@pass_runtime
def history(rt: Runtime, node: str, since: str | None, max_items: int | None, output: str) -> None:
    """A node's patch operations and each patch whose state changed, newest first."""
    from control_plane.cli.inventory import node_id_of
    from control_plane.cli.inventory_args import parse_since

    params = {} if since is None else {"since": parse_since(since, time.time())}
    with rt.client() as api:
        node_id = node_id_of(api, node)
        rows = api.get_list(_node_path(node_id, "history"), "changes", params=params,
                            max_items=max_items)  # fmt: skip
    emit_list(rows, HISTORY_COLUMNS, output)
