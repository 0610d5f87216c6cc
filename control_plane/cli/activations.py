"""``corral activations``: create, list, show and delete hybrid activations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.params import expiry_callback, tags_callback

FIELDS = (
    "activation_id", "name", "description", "registration_limit", "registrations_count",
    "expires_at", "expired", "created_at", "tags",
)  # fmt: skip
_UNKNOWN_CA = "sha256:<hash of the server CA>"
COLUMNS: list[Column] = [
    ("id", lambda a: a.get("activation_id")),
    field("name"),
    ("registrations", lambda a: f"{a.get('registrations_count')}/{a.get('registration_limit')}"),
    field("expires_at"),
    field("expired"),
]


@click.group()
def activations() -> None:
    """Activation codes that let new nodes register."""


@activations.command()
@click.option("--name", default="", help="A name for the activation (and its nodes).")
@click.option("--description", default="", help="Free text.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="How many nodes may register with it (1-1000).",
)
@click.option(
    "--expires",
    "expires_in",
    default="24h",
    show_default=True,
    callback=expiry_callback,
    help="Lifetime: 90m, 24h, 30d, 1w or seconds; at most 30 days.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    callback=tags_callback,
    metavar="KEY=VALUE",
    help="Tag for nodes registered with it (repeatable).",
)
@output_option
@pass_runtime
def create(
    rt: Runtime,
    name: str,
    description: str,
    limit: int,
    expires_in: int,
    tags: dict[str, str],
    output: str,
) -> None:
    """Create an activation; its code is shown only once."""
    profile = rt.profile()
    body = {
        "name": name,
        "description": description,
        "registration_limit": limit,
        "expires_in_seconds": expires_in,
        "tags": tags,
    }
    ca = _ca_hash(profile.ca_file) if output == "table" else ""
    with rt.client(profile) as api:
        created = api.post("/v1/activations", body)
    if output == "json":
        emit_object(created, output)
    else:
        click.echo(_register_help(created, profile.url, ca))


def _ca_hash(ca_file: str | None) -> str:
    """The hash for the register hint; never fails (the code must be shown once created)."""
    from control_plane.cli.errors import CliError
    from control_plane.cli.tls import ca_hash_of_file

    try:
        return ca_hash_of_file(ca_file) if ca_file else _UNKNOWN_CA
    except CliError:
        return _UNKNOWN_CA


def _register_help(created: Mapping[str, Any], url: str, ca_hash: str) -> str:
    act_id, code = created.get("activation_id"), created.get("activation_code")
    return "\n".join(
        [
            "Activation created. The code is shown only this once: keep it secret.",
            "",
            f"  activation id:    {act_id}",
            f"  activation code:  {code}",
            f"  expires at:       {created.get('expires_at')}",
            f"  registrations:    up to {created.get('registration_limit')}",
            "",
            "Register a node with (as root on the node):",
            "",
            f"  corral-agent register --url {url} --id {act_id} --code {code} --ca-hash {ca_hash}",
        ]
    )


@activations.command("list")
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List activations."""
    with rt.client() as api:
        rows = api.get_list("/v1/activations", "activations", max_items=max_items)
    emit_list(rows, COLUMNS, output)


@activations.command()
@click.argument("activation_id")
@output_option
@pass_runtime
def show(rt: Runtime, activation_id: str, output: str) -> None:
    """Show one activation."""
    with rt.client() as api:
        data = api.get(f"/v1/activations/{quote(activation_id, safe='')}")
    emit_object(data, output, FIELDS)


@activations.command()
@click.argument("activation_id")
@output_option
@pass_runtime
def delete(rt: Runtime, activation_id: str, output: str) -> None:
    """Delete an activation; nodes registered with it stay registered."""
    with rt.client() as api:
        data = api.delete(f"/v1/activations/{quote(activation_id, safe='')}")
    emit_message(f"deleted activation {activation_id}", data or {"deleted": activation_id}, output)
