"""``corral nodes``: list, show, tag, untag, ping and deregister managed nodes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import BadResponse
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.params import (
    check_tag_key,
    check_tag_value,
    tag_keys_callback,
    tags_callback,
)

FIELDS = (
    "node_id", "name", "status", "platform", "platform_version", "agent_version", "hostname",
    "ip_addresses", "tags", "registered_at", "last_seen", "activation_id", "outbox_depth",
    "outbox_dead",
)  # fmt: skip
COLUMNS: list[Column] = [
    field("node_id"),
    field("name"),
    field("status"),
    field("platform"),
    field("platform_version"),
    field("agent_version"),
    ("ip", lambda n: (n.get("ip_addresses") or [None])[0]),
    field("last_seen"),
]


def _path(node_id: str, action: str = "") -> str:
    return f"/v1/nodes/{quote(node_id, safe='')}" + (f"/{action}" if action else "")


_COMPARISON = re.compile(r"^(agent_version|platform|status)(<=|>=|!=|<|>|=)(.+)$")
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+~-]{0,63}$")
FILTER_FORMS = "tag:KEY=VALUE, agent_version<OP>VERSION (OP: < <= > >= = !=), platform=P, status=S"


def _filters_callback(
    _ctx: click.Context, _param: click.Parameter, value: Sequence[str]
) -> list[str]:
    """Checked here for a one-line error before any request; the server checks them too."""
    for item in value:
        if item.startswith("tag:"):
            key, sep, tag_value = item.removeprefix("tag:").partition("=")
            if not sep:
                raise click.BadParameter(f"filter {item!r} must be tag:KEY=VALUE")
            check_tag_key(key)
            check_tag_value(key, tag_value)
            continue
        match = _COMPARISON.match(item)
        if match is None:
            raise click.BadParameter(f"filter {item!r}: expected {FILTER_FORMS}")
        name, op, operand = match.groups()
        if name == "agent_version" and not _VERSION.match(operand):
            raise click.BadParameter(f"filter {item!r}: {operand!r} is not a version like 0.2.0")
        if name != "agent_version" and op not in ("=", "!="):
            raise click.BadParameter(f"filter {item!r}: {name} takes = or !=")
    return list(value)


@click.group()
def nodes() -> None:
    """Managed nodes."""


@nodes.command("list")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    callback=_filters_callback,
    metavar="FILTER",
    help="Only nodes with tag:KEY=VALUE, agent_version<OP>VERSION (OP: < <= > >= = !=; "
    "quote it: 'agent_version<0.2.0'), platform=P or status=S (repeatable: all must match).",
)
@click.option(
    "--targets",
    "targets",
    multiple=True,
    metavar="SPEC",
    help="Only the nodes these target specs match, exactly as `corral run --targets` would "
    "reach them (repeatable: a union).",
)
@max_items_option
@output_option
@pass_runtime
def list_(
    rt: Runtime, filters: list[str], targets: tuple[str, ...], max_items: int | None, output: str
) -> None:
    """List nodes (--targets previews what a command would reach)."""
    params: dict[str, list[str]] = {}
    if filters:
        params["filter"] = filters
    if targets:
        params["targets"] = list(targets)
    with rt.client() as api:
        rows = api.get_list("/v1/nodes", "nodes", params=params or None, max_items=max_items)
    emit_list(rows, COLUMNS, output)


@nodes.command()
@click.argument("node_id")
@output_option
@pass_runtime
def show(rt: Runtime, node_id: str, output: str) -> None:
    """Show one node."""
    with rt.client() as api:
        node = api.get(_path(node_id))
    emit_object(node, output, FIELDS)


EVENT_COLUMNS: list[Column] = [
    field("time"), field("severity"), field("code"), field("message"),
]  # fmt: skip


@nodes.command()
@click.argument("node_id")
@max_items_option
@output_option
@pass_runtime
def events(rt: Runtime, node_id: str, max_items: int | None, output: str) -> None:
    """What the node's agent reported about itself, newest first (a state file it found
    unreadable and moved aside: results may have been lost)."""
    with rt.client() as api:
        rows = api.get_list(_path(node_id) + "/events", "events", max_items=max_items)
    emit_list(rows, EVENT_COLUMNS, output)


@nodes.command()
@click.argument("node_id")
@click.argument("tags", nargs=-1, required=True, callback=tags_callback, metavar="KEY=VALUE...")
@output_option
@pass_runtime
def tag(rt: Runtime, node_id: str, tags: dict[str, str], output: str) -> None:
    """Add or replace tags on a node."""
    with rt.client() as api:
        node = api.post(_path(node_id, "tags"), {"tags": tags})
    emit_object(node, output, FIELDS)


@nodes.command()
@click.argument("node_id")
@click.argument("keys", nargs=-1, required=True, callback=tag_keys_callback, metavar="KEY...")
@output_option
@pass_runtime
def untag(rt: Runtime, node_id: str, keys: list[str], output: str) -> None:
    """Remove tags from a node."""
    with rt.client() as api:
        node = api.post(_path(node_id, "untag"), {"keys": keys})
    emit_object(node, output, FIELDS)


@nodes.command()
@click.argument("node_id")
@click.option(
    "--timeout",
    type=click.IntRange(1, 300),
    default=30,
    show_default=True,
    help="Seconds to wait for the pong.",
)
@output_option
@pass_runtime
def ping(rt: Runtime, node_id: str, timeout: int, output: str) -> None:
    """Ask a node to answer, and time the round trip."""
    with rt.client() as api:
        # The server waits up to `timeout` for the node; give the HTTP call room beyond it.
        pong = api.post(_path(node_id, "ping"), {"timeout_seconds": timeout}, timeout=timeout + 15)
    if not isinstance(pong, dict) or not isinstance(pong.get("rtt_ms"), int | float):
        raise BadResponse(f"{api.url} answered the ping without an rtt_ms: {pong!r}")
    who = pong.get("node_id", node_id)
    emit_message(f"pong from {who} in {pong['rtt_ms']:.1f} ms", pong, output)


@nodes.command()
@click.argument("node_id")
@output_option
@pass_runtime
def deregister(rt: Runtime, node_id: str, output: str) -> None:
    """Deregister a node: its credentials stop working at once."""
    with rt.client() as api:
        node = api.post(_path(node_id, "deregister"))
    if not isinstance(node, dict):
        raise BadResponse(f"{api.url} answered the deregistration with {node!r}")
    who = node.get("node_id") or node_id
    name = f" ({node['name']})" if node.get("name") and node.get("name") != who else ""
    text = f"deregistered {who}{name}: its credentials no longer work"
    emit_message(text, {**node, "deregistered": True, "message": text}, output)
