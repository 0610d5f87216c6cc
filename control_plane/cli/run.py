"""``corral run``: send a document (or a shell command) to nodes, like ``aws ssm send-command``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from control_plane.cli.context import Runtime, output_option, pass_runtime
from control_plane.cli.errors import CliError
from control_plane.cli.follow import Follower
from control_plane.cli.node_results import echo_result
from control_plane.cli.output import emit_object


class CommandFailed(CliError):
    """The command ran but did not succeed everywhere (exit 1 after printing the results)."""


def check_success(result: dict[str, Any]) -> None:
    """The exit status of a followed command (``run --wait``, ``commands watch``): 0 for
    Success; CommandFailed (exit 1) for any other end: Failed, TimedOut, Cancelled ..."""
    if result["status"] != "Success":
        raise CommandFailed(
            f"command {result['command_id']} ended {result['status']} ({result['status_details']})"
        )


def follow_hint(rt: Runtime, command_id: str) -> str:
    """The command line that follows ``command_id`` with the same profile."""
    profile = f" --profile {rt.profile_name}" if rt.profile_name else ""
    return f"corral{profile} commands watch {command_id}"


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``name=value`` pairs; a name given several times becomes a list."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} must be NAME=VALUE", param_hint="--param")
        if name in params:
            previous = params[name]
            params[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[name] = value
    return params


def _rate(value: str, name: str, allow_zero: bool) -> str:
    number = value[:-1] if value.endswith("%") else value
    if (
        not number.isdigit()
        or (int(number) == 0 and not allow_zero)
        or (value.endswith("%") and int(number) > 100)
    ):
        raise click.BadParameter(f"{value!r} must be a number or a percentage", param_hint=name)
    return value


@click.command(context_settings={"ignore_unknown_options": False})
@click.option(
    "--targets",
    "targets",
    multiple=True,
    metavar="SPEC",
    help="name:GLOB | tag:KEY=V1,V2 | tag-key:KEY | platform:NAME | ip:CIDR | group:NAME | "
    "all | a node id (repeatable: a union).",
)
@click.option("--node", "nodes", multiple=True, metavar="ID", help="A node id (repeatable).")
@click.option("--document", default=None, metavar="NAME[:VERSION]", help="The document to run.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A document parameter (repeatable).",
)
@click.option("--max-concurrency", default="50", show_default=True, help="Nodes at once: N or N%.")
@click.option(
    "--max-errors", default="0", show_default=True, help="Errors before stopping: N or N%."
)
@click.option(
    "--timeout",
    type=click.IntRange(5, 172800),
    default=3600,
    show_default=True,
    help="Execution timeout (s).",
)
@click.option(
    "--delivery-timeout",
    type=click.IntRange(30, 2592000),
    default=600,
    show_default=True,
    help="Seconds to reach a node.",
)
@click.option("--comment", default="", help="Up to 100 characters.")
@click.option(
    "--calendar",
    "calendars",
    multiple=True,
    metavar="NAME",
    help="Run only if this change calendar is OPEN now (repeatable); else nothing runs.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Wait, printing each node's result and output as it finishes; exit 1 unless all "
    "succeeded.",
)
@click.option(
    "--no-output", is_flag=True, help="With --wait: each node's status only, not its output."
)
@click.argument("command", nargs=-1, metavar="[-- COMMAND ...]")
@output_option
@pass_runtime
def run(
    rt: Runtime,
    targets: tuple[str, ...],
    nodes: tuple[str, ...],
    document: str | None,
    params: tuple[str, ...],
    max_concurrency: str,
    max_errors: str,
    timeout: int,
    delivery_timeout: int,
    comment: str,
    calendars: tuple[str, ...],
    wait: bool,
    no_output: bool,
    command: tuple[str, ...],
    output: str,
) -> None:
    """Run a document on nodes; `corral run --targets all -- uptime` runs a shell command."""
    specs = [*targets, *nodes]
    if not specs:
        raise click.UsageError("give --targets SPEC or --node ID")
    if bool(document) == bool(command):
        raise click.UsageError("give either --document NAME or -- COMMAND, not both or neither")
    if command and params:
        raise click.UsageError("--param goes with --document; after -- comes the shell command")
    _rate(max_concurrency, "--max-concurrency", allow_zero=False)
    _rate(max_errors, "--max-errors", allow_zero=True)
    if len(comment) > 100:
        raise click.BadParameter("at most 100 characters", param_hint="--comment")
    name, version = ("AWS-RunShellScript", None) if command else _split_document(document or "")
    parameters = {"commands": [" ".join(command)]} if command else parse_params(params)
    body = {
        "targets": specs,
        "document": name,
        "document_version": version,
        "parameters": parameters,
        "max_concurrency": max_concurrency,
        "max_errors": max_errors,
        "timeout_seconds": timeout,
        "delivery_timeout_seconds": delivery_timeout,
        "comment": comment,
    }
    if calendars:
        body["calendars"] = list(calendars)
    with rt.client() as api:
        sent = api.post("/v1/commands", body)
        if not wait:
            _sent(rt, sent, output)
            return
        result = follow(api, sent["command_id"], output, show_output=not no_output)
    if output == "json":
        emit_object(result if not no_output else without_output(result), output)
    else:
        click.echo(summary(result))
    check_success(result)


def _sent(rt: Runtime, sent: dict[str, Any], output: str) -> None:
    """What a send without --wait prints: the command's id, and how to follow it."""
    if output == "json":
        emit_object(sent, output)
        return
    count = sent.get("target_count")
    nodes = f"{count} node{'' if count == 1 else 's'}" if isinstance(count, int) else "its nodes"
    document = sent.get("document_name") or "the document"
    if sent.get("document_version"):
        document += f" (version {sent['document_version']})"
    click.echo(f"command {sent['command_id']} sent: {document} on {nodes}")
    click.echo(f"follow it with: {follow_hint(rt, sent['command_id'])}")


def _split_document(spec: str) -> tuple[str, str | None]:
    name, _, version = spec.partition(":")
    return name, version or None


def follow(api: Any, command_id: str, output: str, *, show_output: bool) -> dict[str, Any]:
    """Wait for the command to end; in a table, print each node's result as it finishes."""
    if output == "json":
        return Follower(api, command_id, lambda _inv: None).run()
    return Follower(api, command_id, lambda inv: echo_result(inv, output=show_output)).run()


def summary(result: dict[str, Any]) -> str:
    return (
        f"command {result['command_id']}: {result['status']} ({result['status_details']}), "
        f"{result.get('completed_count', 0)}/{result['target_count']} done, "
        f"{result.get('error_count', 0)} errors"
    )


def without_output(result: dict[str, Any]) -> dict[str, Any]:
    """The command's view with its steps' stdout and stderr left out."""
    invocations = [
        {
            **inv,
            "steps": [
                {k: v for k, v in step.items() if k not in ("stdout", "stderr")}
                for step in inv.get("steps", [])
            ],
        }
        for inv in result.get("invocations", [])
    ]
    return {**result, "invocations": invocations}


def print_result(result: dict[str, Any], output: str, *, show_output: bool = True) -> None:
    """A command that has ended (or not): every node's result, then the summary."""
    if output == "json":
        emit_object(result if show_output else without_output(result), output)
        return
    for inv in result.get("invocations", []):
        echo_result(inv, output=show_output)
    click.echo(summary(result))
