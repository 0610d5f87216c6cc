"""``corral inventory``: what is on the nodes (docs/inventory.md).

``show`` is one node (its types, or its items of one type: SSM's ListInventoryEntries),
``list`` and ``summary`` are the fleet (GetInventory, with filters and aggregation),
``changes`` a node's history, ``schema`` the types (GetInventorySchema), ``delete`` a custom
type everywhere (DeleteInventory), and ``enable`` the State Manager association that gathers
it all (``corral-inventory``, AWS-GatherSoftwareInventory).

Arguments are checked here before anything is sent (a usage error, exit 2); filters and
attribute names are checked again, with the stored custom types known, by the server.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import click

from agent import wire
from agent.inventory import schema
from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import BadResponse, CliError
from control_plane.cli.inventory_args import (
    FILTER_HELP,
    MAX_FILTERS,
    MAX_GROUP_BY,
    attribute_names,
    aws_target,
    check_filter,
    check_group_by,
    check_type,
    parse_since,
)
from control_plane.cli.output import Column, emit_json, emit_list, emit_object, field
from control_plane.cli.run import parse_params

if TYPE_CHECKING:
    from control_plane.cli.client import ApiClient

ASSOCIATION: Final = "corral-inventory"
DOCUMENT: Final = "AWS-GatherSoftwareInventory"
DEFAULT_SCHEDULE: Final = "rate(30 minutes)"
DEFAULT_TARGETS: Final = ("all",)
ENABLE_FIELDS: Final = (
    "association_id", "name", "version", "document", "targets", "schedule", "parameters",
    "max_errors", "next_run_at",
)  # fmt: skip
MAX_GROUPS: Final = 10_000
# Attributes the items table leaves out unless asked for (long text); JSON has everything.
TABLE_HIDES: Final[dict[str, tuple[str, ...]]] = {schema.APPLICATION: ("Summary", "URL")}

TYPE_COLUMNS: list[Column] = [
    field("type_name"),
    ("items", lambda t: t.get("item_count")),
    field("capture_time"),
    field("updated_at"),
]
SCHEMA_COLUMNS: list[Column] = [
    field("type_name"),
    field("version"),
    ("key", lambda t: t.get("key") or None),
    ("attributes", lambda t: len(t.get("attributes") or [])),
    ("platforms", lambda t: t.get("platforms")),
    ("gathered_by", lambda t: t.get("gathered_by")),
    field("custom"),
]


def _type_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else check_type(value)


def _custom_callback(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    checked = check_type(value)
    if not schema.is_custom(checked):
        raise click.BadParameter(f"{checked} is built in: only Custom:NAME types can be deleted")
    return checked


def _filters_callback(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> list[str]:
    if len(value) > MAX_FILTERS:
        raise click.BadParameter(f"at most {MAX_FILTERS} filters, got {len(value)}")
    return [check_filter(text) for text in value]


def _attributes_callback(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> list[str] | None:
    return None if value is None else attribute_names(value)


type_option = click.option(
    "--type", "type_", metavar="TYPE", callback=_type_callback,
    help="An inventory type: AWS:Application, AWS:Service, Corral:ListeningPort ... or "
    "Custom:NAME (see `corral inventory schema`).",
)  # fmt: skip
required_type_option = click.option(
    "--type", "type_", metavar="TYPE", required=True, callback=_type_callback,
    help="An inventory type (see `corral inventory schema`).",
)  # fmt: skip
filter_option = click.option(
    "--filter", "filters", multiple=True, metavar="FILTER", callback=_filters_callback,
    help=f"{FILTER_HELP} (repeatable: all must match). Version attributes compare by the "
    "package manager's rules.",
)  # fmt: skip
attributes_option = click.option(
    "--attributes", metavar="A,B,...", callback=_attributes_callback,
    help="The table's columns (default: every attribute; -o json has them all).",
)  # fmt: skip


# Showing items -----------------------------------------------------------------------------
def item_columns(
    type_name: str, items: Sequence[Mapping[str, Any]], chosen: Sequence[str] | None
) -> list[str]:
    """The attributes shown: ``chosen``, else those the items have, in the schema's order
    (a custom type's: as they first appear), less :data:`TABLE_HIDES`."""
    if chosen:
        return list(chosen)
    present: dict[str, None] = {}
    for item in items:
        present.update(dict.fromkeys(item))
    known = schema.known_type(type_name)
    order = [a for a in known.all_attributes if a in present] if known else []
    order += [a for a in present if a not in order]
    hidden = TABLE_HIDES.get(type_name, ())
    return [a for a in order if a not in hidden] or order


def _attribute(name: str, where: str | None = None) -> Column:
    if where is None:
        return (name, lambda row: row.get(name))
    return (name, lambda row: (row.get(where) or {}).get(name))


def node_id_of(api: ApiClient, node: str) -> str:
    """A node id as given, or the id of the one node with this name."""
    if wire.NODE_ID_RE.match(node):
        return node
    literal = re.sub(r"([*?\[])", r"[\1]", node)  # the name as is, not a glob
    found = api.get("/v1/nodes", params={"targets": f"name:{literal}", "limit": 2})
    nodes = found.get("nodes") if isinstance(found, dict) else None
    if not isinstance(nodes, list):
        raise BadResponse(f"{api.url} answered GET /v1/nodes without the 'nodes' list")
    if not nodes:
        raise CliError(f"no node is named {node!r} (give its name or its id, mi-...)")
    if len(nodes) > 1:
        raise CliError(f"several nodes are named {node!r}: give the id of one")
    return str(nodes[0]["node_id"])


def _path(*parts: str) -> str:
    return "/".join(["/v1/inventory", *(quote(p, safe="") for p in parts)])


def _query(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != []}


@click.group()
def inventory() -> None:
    """What is on the nodes: packages, services, ports, users, files, custom data (Inventory)."""


@inventory.command()
@click.argument("node")
@type_option
@attributes_option
@max_items_option
@output_option
@pass_runtime
def show(
    rt: Runtime,
    node: str,
    type_: str | None,
    attributes: list[str] | None,
    max_items: int | None,
    output: str,
) -> None:
    """A node's types, or its items of one type.  NODE: its id or its name.

    Without --type: each type the node uploaded, its item count and capture time, and the
    last gathering's errors (on stderr).  With --type: the node's items of that type."""
    with rt.client() as api:
        node_id = node_id_of(api, node)
        if type_ is None:
            shown = api.get(_path("nodes", node_id))
        else:
            rows = api.get_list(
                _path("nodes", node_id, "items"),
                "items",
                params={"type": type_},
                max_items=max_items,
            )
    if type_ is not None:
        names = item_columns(type_, rows, attributes)
        emit_list(rows, [_attribute(n) for n in names], output)
        return
    if output == "json":
        emit_json(shown)
        return
    types = shown.get("types") or []
    emit_list(types[:max_items] if max_items else types, TYPE_COLUMNS, output)
    if not types:
        click.echo(
            f"no inventory from {node_id} yet (gathering it: `corral inventory enable`)", err=True
        )
    for error in shown.get("errors") or []:
        click.echo(f"warning: {error.get('source')}: {error.get('reason')}", err=True)


@inventory.command("list")
@required_type_option
@filter_option
@attributes_option
@max_items_option
@output_option
@pass_runtime
def list_(
    rt: Runtime,
    type_: str,
    filters: list[str],
    attributes: list[str] | None,
    max_items: int | None,
    output: str,
) -> None:
    """Items of one type across the fleet, filtered.

    Every node this token may see; an item is listed when it matches every --filter."""
    with rt.client() as api:
        rows = api.get_list(
            _path("items"),
            "items",
            params=_query(type=type_, filter=filters),
            max_items=max_items,
        )
    names = item_columns(type_, [r.get("item") or {} for r in rows], attributes)
    emit_list(rows, [field("node_id"), *(_attribute(n, "item") for n in names)], output)


@inventory.command()
@required_type_option
@click.option(
    "--group-by", "group_by", required=True, metavar="A,B,...",
    help=f"Count nodes and items per value of these attributes (at most {MAX_GROUP_BY}).",
)  # fmt: skip
@filter_option
@max_items_option
@output_option
@pass_runtime
def summary(
    rt: Runtime,
    type_: str,
    group_by: str,
    filters: list[str],
    max_items: int | None,
    output: str,
) -> None:
    """Nodes and items counted per attribute value.

    `--type AWS:Application --group-by Name,Version --filter Name=openssl` counts the
    nodes per openssl version."""
    names = check_group_by(group_by)
    params = _query(type=type_, group_by=",".join(names), filter=filters)
    with rt.client() as api:
        rows, truncated = summary_groups(api, params, max_items)
    columns = [_attribute(n, "values") for n in names]
    emit_list(rows, [*columns, field("nodes"), field("items")], output)
    if truncated:
        click.echo(
            "warning: too many groups: the server counted only the first "
            f"{MAX_GROUPS:,}; narrow them with --filter",
            err=True,
        )


def summary_groups(
    api: ApiClient, params: dict[str, Any], max_items: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """Every page of a summary's groups (up to ``max_items``), and whether the server cut
    them at its limit (``truncated``: a field ``ApiClient.pages`` does not keep)."""
    from control_plane.cli.client import PAGE_LIMIT

    path, query = _path("summary"), dict(params)
    rows: list[dict[str, Any]] = []
    truncated = False
    while True:
        want = PAGE_LIMIT if max_items is None else min(PAGE_LIMIT, max_items - len(rows))
        data = api.get(path, params={**query, "limit": want})
        page = data.get("groups") if isinstance(data, dict) else None
        if not isinstance(page, list) or not all(isinstance(g, dict) for g in page):
            raise BadResponse(f"{api.url} answered GET {path} without the 'groups' list")
        rows.extend(page)
        truncated = truncated or data.get("truncated") is True
        token = data.get("next_token")
        if not isinstance(token, str) or not token:
            return rows, truncated
        if max_items is not None and len(rows) >= max_items:
            return rows[:max_items], truncated
        if token == query.get("next_token"):
            raise BadResponse(f"{api.url} gave the same next_token twice for GET {path}")
        query["next_token"] = token


def change_detail(change: Mapping[str, Any]) -> str:
    """What a change did, in a few words: ``Version: 1.0-1 -> 1.1-1``."""
    kind = change.get("change")
    old, new = change.get("old") or {}, change.get("new") or {}
    if kind == "captured":
        return f"first capture: {new.get('items', '?')} items"
    if kind == "deleted":
        return f"{old['items']} items" if "items" in old else "-"
    if kind == "changed":
        key = change.get("key") or {}
        diffs = [
            f"{a}: {old.get(a) or '(none)'} -> {new.get(a) or '(none)'}"
            for a in sorted({*old, *new} - set(key))
            if old.get(a) != new.get(a)
        ]
        return "; ".join(diffs) or "-"
    item = new or old
    known = schema.known_type(str(change.get("type_name")))
    version = known.version_attribute if known else None
    return f"{version}={item[version]}" if version and version in item else "-"


CHANGE_COLUMNS: list[Column] = [
    field("time"), field("type_name"), field("change"), field("key"), ("detail", change_detail),
]  # fmt: skip


@inventory.command()
@click.argument("node")
@click.option(
    "--since", metavar="WHEN",
    help="7d, 12h, 30m (before now), a date (2026-12-01, UTC) or an RFC 3339 time "
    "(default: every change kept).",
)  # fmt: skip
@type_option
@max_items_option
@output_option
@pass_runtime
def changes(
    rt: Runtime,
    node: str,
    since: str | None,
    type_: str | None,
    max_items: int | None,
    output: str,
) -> None:
    """What was added, removed and changed on a node, newest first.  NODE: its id or name."""
    start = None if since is None else parse_since(since, time.time())
    with rt.client() as api:
        rows = api.get_list(
            _path("nodes", node_id_of(api, node), "changes"),
            "changes",
            params=_query(since=start, type=type_),
            max_items=max_items,
        )
    emit_list(rows, CHANGE_COLUMNS, output)


@inventory.command("schema")
@type_option
@output_option
@pass_runtime
def schema_(rt: Runtime, type_: str | None, output: str) -> None:
    """The inventory types and their attributes.

    Custom types show the attributes uploaded so far; with --type, one row per attribute."""
    with rt.client() as api:
        types, _ = api.pages(_path("schema"), "types", params=_query(type=type_))
    if type_ is None or output == "json":
        emit_list(types, SCHEMA_COLUMNS, output)
        return
    for found in types:
        emit_list(found.get("attributes") or [], _attribute_columns(found), output)


def _attribute_columns(type_: Mapping[str, Any]) -> list[Column]:
    key = set(type_.get("key") or [])
    return [field("name"), field("data_type"), ("key", lambda a: a.get("name") in key)]


def _can_ask() -> bool:
    """Is there a person at a terminal to confirm on?"""
    return sys.stdin.isatty()


@inventory.command()
@click.option(
    "--type", "type_", required=True, metavar="Custom:NAME", callback=_custom_callback,
    help="The custom type to delete from every node.",
)  # fmt: skip
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@output_option
@pass_runtime
def delete(rt: Runtime, type_: str, yes: bool, output: str) -> None:
    """Delete a custom type from every node.

    A node that still has the type's file uploads it again at its next gathering."""
    if not yes:
        if not _can_ask():
            raise click.UsageError(f"deleting {type_} from every node needs --yes")
        click.confirm(f"Delete {type_} from every node?", abort=True, err=True)
    with rt.client() as api:
        done = api.delete(_path("types", type_))
    if output == "json":
        emit_json(done)
        return
    click.echo(f"deleted {type_}: {done.get('items')} items on {done.get('nodes')} nodes")


@inventory.command()
@click.option(
    "--targets", multiple=True, metavar="SPEC",
    help="The nodes: as `corral run --targets` (all, tag:KEY=V, name:GLOB ...) or AWS's "
    "Key=tag:role,Values=web (repeatable: a union; default when creating: all).",
)  # fmt: skip
@click.option(
    "--schedule", metavar="EXPR",
    help=f"rate(...) or cron(...) (default when creating: {DEFAULT_SCHEDULE}).",
)  # fmt: skip
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE",
    help="An AWS-GatherSoftwareInventory parameter: applications=Disabled, "
    "files='[{\"Path\": \"/etc\", ...}]' ... (repeatable; those set before are kept).",
)  # fmt: skip
@output_option
@pass_runtime
def enable(
    rt: Runtime,
    targets: tuple[str, ...],
    schedule: str | None,
    params: tuple[str, ...],
    output: str,
) -> None:
    """Gather inventory on nodes, on a schedule.

    Creates the association corral-inventory (AWS-GatherSoftwareInventory; every node,
    rate(30 minutes) unless told otherwise), or changes what is given of it if it exists."""
    specs = [spec for text in targets for spec in aws_target(text)]
    parameters = parse_params(params)
    with rt.client() as api:
        found = [
            a
            for a in api.get_list("/v1/associations", "associations")
            if a.get("name") == ASSOCIATION
        ]
        if not found:
            body: dict[str, Any] = {
                "name": ASSOCIATION,
                "document": DOCUMENT,
                "targets": specs or list(DEFAULT_TARGETS),
                "schedule": schedule or DEFAULT_SCHEDULE,
                "parameters": parameters,
                "max_errors": "100%",  # one node failing stops no other
            }
            result = api.post("/v1/associations", body)
            verb = "created"
        else:
            current = found[0]
            wanted: dict[str, Any] = {}
            if current.get("document") != DOCUMENT:
                wanted.update(document=DOCUMENT, clear=["document_version"])
            if specs and specs != current.get("targets"):
                wanted["targets"] = specs
            if schedule and schedule != current.get("schedule"):
                wanted["schedule"] = schedule
            merged = {**(current.get("parameters") or {}), **parameters}
            if merged != (current.get("parameters") or {}):
                wanted["parameters"] = merged
            if wanted:
                wanted["expect_version"] = current["version"]
                path = f"/v1/associations/{quote(str(current['association_id']), safe='')}"
                result = api.patch(path, wanted)
                verb = "updated"
            else:
                result, verb = current, "unchanged"
    for warning in result.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    if output == "json":
        emit_json(result)
        return
    click.echo(
        f"inventory {verb}: association {ASSOCIATION} (id {result.get('association_id')}, "
        f"version {result.get('version')}): {DOCUMENT} "
        f"{result.get('schedule') or 'with no schedule'} "
        f"on {', '.join(result.get('targets') or [])}"
    )
    emit_object(result, output, ENABLE_FIELDS)
