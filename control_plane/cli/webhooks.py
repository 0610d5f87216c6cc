"""``corral webhooks``: POST status changes to a URL, signed with HMAC-SHA256."""

from __future__ import annotations

from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field

COLUMNS: list[Column] = [field("webhook_id"), field("url"), field("events"), field("signed")]


@click.group()
def webhooks() -> None:
    """Webhooks for command events."""


@webhooks.command()
@click.option("--url", required=True, help="Where to POST events.")
@click.option("--event", "events", default="command.*", show_default=True, help="Event glob.")
@click.option("--secret", default=None, help="Signs each body: X-Corral-Signature: sha256=<hmac>.")
@output_option
@pass_runtime
def create(rt: Runtime, url: str, events: str, secret: str | None, output: str) -> None:
    """Create a webhook."""
    with rt.client() as api:
        hook = api.post("/v1/webhooks", {"url": url, "events": events, "secret": secret})
    emit_object(hook, output)


@webhooks.command("list")
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List webhooks."""
    with rt.client() as api:
        emit_list(api.get_list("/v1/webhooks", "webhooks", max_items=max_items), COLUMNS, output)


@webhooks.command()
@click.argument("webhook_id")
@output_option
@pass_runtime
def delete(rt: Runtime, webhook_id: str, output: str) -> None:
    """Delete a webhook."""
    with rt.client() as api:
        result = api.delete(f"/v1/webhooks/{quote(webhook_id, safe='')}")
    emit_message(f"deleted webhook {webhook_id}", result, output)
