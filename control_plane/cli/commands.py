"""``corral commands``: list, show, output, cancel and watch commands."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.follow import Follower
from control_plane.cli.node_results import echo_result
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.run import check_success, print_result, summary, without_output

LIST_COLUMNS: list[Column] = [
    field("command_id"), field("document_name"), field("status"), field("status_details"),
    field("target_count"), field("created_at"),
]  # fmt: skip


@click.group()
def commands() -> None:
    """Commands sent with `corral run`."""


@commands.command("list")
@click.option("--status", default=None, help="Only commands with this status.")
@click.option("--node", default=None, help="Only commands that targeted this node.")
@max_items_option
@output_option
@pass_runtime
def list_(
    rt: Runtime, status: str | None, node: str | None, max_items: int | None, output: str
) -> None:
    """List recent commands, newest first."""
    params = {k: v for k, v in (("status", status), ("node", node)) if v}
    with rt.client() as api:
        rows = api.get_list("/v1/commands", "commands", params=params or None, max_items=max_items)
    emit_list(rows, LIST_COLUMNS, output)


@commands.command()
@click.argument("command_id")
@click.option("--no-output", is_flag=True, help="Each node's status only, not its output.")
@output_option
@pass_runtime
def show(rt: Runtime, command_id: str, no_output: bool, output: str) -> None:
    """A command: every node's status and what it printed (where your token may read it)."""
    with rt.client() as api:
        result = api.get(f"/v1/commands/{quote(command_id, safe='')}")
    print_result(result, output, show_output=not no_output)


@commands.command()
@click.argument("command_id")
@click.option("--node", required=True, help="The node whose output to show.")
@click.option("--step", default=None, help="Step name (default: the last step that ran).")
@click.option("--stderr", is_flag=True, help="Show standard error instead of output.")
@pass_runtime
def output(rt: Runtime, command_id: str, node: str, step: str | None, stderr: bool) -> None:
    """Stream a step's full output (up to 16 MiB)."""
    params = {"stream": "stderr" if stderr else "stdout"}
    if step:
        params["step"] = step
    path = f"/v1/commands/{quote(command_id, safe='')}/invocations/{quote(node, safe='')}/output"
    with rt.client() as api:
        for chunk in api.stream(path, params=params):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


@commands.command()
@click.argument("command_id")
@click.option("--node", "nodes", multiple=True, help="Cancel only on this node (repeatable).")
@output_option
@pass_runtime
def cancel(rt: Runtime, command_id: str, nodes: tuple[str, ...], output: str) -> None:
    """Stop a command: running processes are killed (whole process group)."""
    body = {"node_ids": list(nodes)} if nodes else {}
    with rt.client() as api:
        result = api.post(f"/v1/commands/{quote(command_id, safe='')}/cancel", body)
    emit_message(result["message"], result, output)


@commands.command()
@click.argument("command_id")
@click.option("--no-output", is_flag=True, help="Status changes only, not what nodes printed.")
@output_option
@pass_runtime
def watch(rt: Runtime, command_id: str, no_output: bool, output: str) -> None:
    """Print status changes as they happen, and each node's output as it finishes, until
    the command ends; exit 1 unless it ended Success (as `corral run --wait`).

    With --output json, print nothing until the command ends, then its view (as
    `corral commands show --output json`)."""

    def changed(event: dict[str, Any]) -> None:
        who = event.get("node_id", "command")
        status = f"{event['status']} ({event['status_details']})"
        click.echo(f"{event.get('time', 0):.3f} {who}: {status}")

    def finished(inv: dict[str, Any]) -> None:
        if not no_output:
            echo_result(inv)

    path = f"/v1/commands/{quote(command_id, safe='')}"
    with rt.client() as api:
        result = api.get(path)
        if not result.get("completed_at"):
            if output == "json":
                result = Follower(api, command_id, lambda _inv: None).run()
            else:
                click.echo(f"{command_id}: {result['status']} ({result['status_details']})")
                result = Follower(api, command_id, finished, on_event=changed).run()
    if output == "json":
        emit_object(result if not no_output else without_output(result), output)
    else:
        click.echo(summary(result))
    check_success(result)


__all__ = ["commands", "emit_object"]
