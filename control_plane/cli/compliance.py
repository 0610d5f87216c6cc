"""``corral compliance``: SSM's compliance (summary, list, history, put).

A node's items per compliance type (Association, Patch, Custom:NAME), each COMPLIANT or
NON_COMPLIANT with a severity; ``put`` replaces every item of one Custom:NAME type on a node,
as ``aws ssm put-compliance-items`` does.  Its file holds the items as AWS writes them
(``[{"Id", "Title", "Severity", "Status", "Details"}]``, or ``{"Items": [...]}``); lower-case
field names are taken too.
"""

from __future__ import annotations

from typing import Any

import click

from agent import wire
from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.input_files import read_json_file
from control_plane.cli.output import Column, emit_json, emit_list, field

TYPE_HELP = "Association, Patch or Custom:NAME."
_ITEM_FIELDS = {"id", "title", "severity", "status", "details"}


def _severities(side: str) -> Column:
    """``CRITICAL=1, HIGH=2``: the non-zero counts of one side of a summary."""

    def get(row: Any) -> str:
        counts = (row.get(side) or {}).get("severity") or {}
        shown = [f"{k}={v}" for k, v in counts.items() if v]
        return ", ".join(shown) or "-"

    return (f"{side.replace('_', '-')} by severity", get)


def _count(side: str) -> Column:
    return (side.replace("_", "-"), lambda row: (row.get(side) or {}).get("count"))


SUMMARY_COLUMNS: list[Column] = [
    field("compliance_type"), _count("compliant"), _count("non_compliant"),
    _severities("non_compliant"), _severities("compliant"),
]  # fmt: skip
NODE_COLUMNS: list[Column] = [
    field("node_id"), field("compliance_type"), field("status"), field("overall_severity"),
    _count("compliant"), _count("non_compliant"),
    ("executed", lambda r: (r.get("execution_summary") or {}).get("execution_time")),
]  # fmt: skip
ITEM_COLUMNS: list[Column] = [
    field("compliance_type"), field("id"), field("status"), field("severity"), field("title"),
    field("status_since"),
]  # fmt: skip
HISTORY_COLUMNS: list[Column] = [
    field("time"), field("compliance_type"), field("id"),
    ("change", lambda r: f"{r.get('old_status') or '(new)'} -> {r.get('new_status') or '(gone)'}"),
    field("severity"), field("execution_id"),
]  # fmt: skip


def _check_type(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in ("Association", "Patch"):
        return value
    if not wire.COMPLIANCE_CUSTOM_TYPE_RE.match(value) or len(value) > 100:
        raise click.BadParameter(
            f"{value!r} is not a compliance type: expected Association, Patch or Custom:NAME"
        )
    return value


def _check_custom(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    checked = _check_type(ctx, param, value)
    if checked in ("Association", "Patch"):
        raise click.BadParameter(
            f"{checked} compliance is written by the server itself; put Custom:NAME items"
        )
    return checked


type_option = click.option(
    "--type", "type_", metavar="TYPE", callback=_check_type, help=f"Compliance type: {TYPE_HELP}"
)
status_option = click.option(
    "--status",
    type=click.Choice(list(wire.COMPLIANCE_STATUSES)),
    default=None,
    help="Only items (or nodes) with this status.",
)
node_option = click.option("--node", "node_id", required=True, metavar="ID", help="The node.")


def _query(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@click.group()
def compliance() -> None:
    """Compliance: what each node reports as compliant or not, and since when."""


@compliance.command()
@type_option
@click.option(
    "--by-node",
    is_flag=True,
    help="One row per node and type (its status, severity and counts) instead of the fleet's.",
)
@status_option
@max_items_option
@output_option
@pass_runtime
def summary(
    rt: Runtime,
    type_: str | None,
    by_node: bool,
    status: str | None,
    max_items: int | None,
    output: str,
) -> None:
    """Per compliance type: how many nodes are compliant and non-compliant, by severity (a
    node counts at its most severe item).  Only the nodes this token may see are counted."""
    if status is not None and not by_node:
        raise click.BadParameter("--status needs --by-node", param_hint="'--status'")
    with rt.client() as api:
        if by_node:
            query = _query(type=type_, status=status)
            rows = api.get_list(
                "/v1/compliance/resources", "resources", params=query, max_items=max_items
            )
            emit_list(rows, NODE_COLUMNS, output)
            return
        rows = api.get_list(
            "/v1/compliance/summaries",
            "summaries",
            params=_query(type=type_),
            max_items=max_items,
        )
    emit_list(rows, SUMMARY_COLUMNS, output)


@compliance.command("list")
@node_option
@type_option
@status_option
@max_items_option
@output_option
@pass_runtime
def list_(
    rt: Runtime,
    node_id: str,
    type_: str | None,
    status: str | None,
    max_items: int | None,
    output: str,
) -> None:
    """A node's compliance items, by type then id."""
    with rt.client() as api:
        rows = api.get_list(
            f"/v1/compliance/nodes/{node_id}/items",
            "items",
            params=_query(type=type_, status=status),
            max_items=max_items,
        )
    emit_list(rows, ITEM_COLUMNS, output)


@compliance.command()
@node_option
@type_option
@max_items_option
@output_option
@pass_runtime
def history(
    rt: Runtime, node_id: str, type_: str | None, max_items: int | None, output: str
) -> None:
    """A node's item changes, newest first: an item appeared ((new) -> status), changed
    status, or went away (status -> (gone)), with when it was observed."""
    with rt.client() as api:
        rows = api.get_list(
            f"/v1/compliance/nodes/{node_id}/history",
            "changes",
            params=_query(type=type_),
            max_items=max_items,
        )
    emit_list(rows, HISTORY_COLUMNS, output)


def read_items(path: str) -> list[dict[str, Any]]:
    """The items of ``path`` as the API takes them (lower-case fields)."""
    hint = "'--file'"
    data = read_json_file(path, hint)
    if isinstance(data, dict) and set(data) <= {"Items", "items"} and len(data) == 1:
        data = next(iter(data.values()))
    if not isinstance(data, list):
        raise click.BadParameter(
            f"{path} must hold a JSON list of items "
            '([{"Id": ..., "Severity": ..., "Status": ...}] or {"Items": [...]})',
            param_hint=hint,
        )
    items = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise click.BadParameter(f"{path}: item {index} is not an object", param_hint=hint)
        item = {str(k).lower(): v for k, v in entry.items()}
        unknown = sorted(set(item) - _ITEM_FIELDS)
        if unknown or len(item) != len(entry):
            what = unknown[0] if unknown else "a field given twice"
            raise click.BadParameter(
                f"{path}: item {index}: unknown field {what!r} "
                "(fields: Id, Title, Severity, Status, Details)",
                param_hint=hint,
            )
        items.append(item)
    return items


@compliance.command()
@node_option
@click.option(
    "--type",
    "type_",
    required=True,
    metavar="Custom:NAME",
    callback=_check_custom,
    help="The custom compliance type whose items this replaces.",
)
@click.option(
    "--file",
    "file_",
    required=True,
    metavar="FILE",
    help='JSON list of items ({"Id", "Title", "Severity", "Status", "Details"}); - for stdin.',
)
@click.option("--execution-id", default="", help="What produced these items (a run's id).")
@output_option
@pass_runtime
def put(rt: Runtime, node_id: str, type_: str, file_: str, execution_id: str, output: str) -> None:
    """Replace every item of a Custom:NAME type on a node (an empty list clears them).

    Prints NODE TYPE: STATUS (N items, M changed)."""
    items = read_items(file_)
    with rt.client() as api:
        done = api.request(
            "PUT",
            f"/v1/compliance/nodes/{node_id}/items",
            body={"compliance_type": type_, "items": items, "execution_id": execution_id},
        )
    if output == "json":
        emit_json(done)
        return
    note = f"; {done['ignored']}" if done.get("ignored") else ""
    click.echo(
        f"{done.get('node_id')} {done.get('compliance_type')}: {done.get('status')} "
        f"({done.get('item_count')} items, {done.get('changes')} changed{note})"
    )
