"""``corral groups``: named target queries (like SSM resource groups)."""

from __future__ import annotations

from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field

COLUMNS: list[Column] = [
    field("name"),
    ("targets", lambda g: " ".join(g.get("targets", []))),
    field("created_at"),
]


@click.group()
def groups() -> None:
    """Saved target queries, used as `--targets group:NAME`."""


@groups.command()
@click.argument("name")
@click.option(
    "--targets",
    "targets",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="name:GLOB | tag:KEY=V1,V2 | tag-key:KEY | platform:NAME | ip:CIDR | all | a node id "
    "(repeatable: a union).",
)
@click.option("--description", default="")
@output_option
@pass_runtime
def create(rt: Runtime, name: str, targets: tuple[str, ...], description: str, output: str) -> None:
    """Create a group."""
    with rt.client() as api:
        group = api.post(
            "/v1/groups", {"name": name, "targets": list(targets), "description": description}
        )
    emit_object(group, output)


@groups.command("list")
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List groups."""
    with rt.client() as api:
        emit_list(api.get_list("/v1/groups", "groups", max_items=max_items), COLUMNS, output)


@groups.command()
@click.argument("name")
@output_option
@pass_runtime
def show(rt: Runtime, name: str, output: str) -> None:
    """A group and the nodes it matches now."""
    with rt.client() as api:
        emit_object(api.get(f"/v1/groups/{quote(name, safe='')}"), output)


@groups.command()
@click.argument("name")
@output_option
@pass_runtime
def delete(rt: Runtime, name: str, output: str) -> None:
    """Delete a group."""
    with rt.client() as api:
        result = api.delete(f"/v1/groups/{quote(name, safe='')}")
    emit_message(f"deleted group {name}", result, output)
