"""``corral mw``: Maintenance Windows (SSM's create-maintenance-window and friends)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.run import parse_params

WINDOW_COLUMNS: list[Column] = [
    field("window_id"),
    field("name"),
    field("schedule"),
    field("schedule_timezone"),
    field("duration"),
    field("cutoff"),
    field("enabled"),
    field("next_execution_time"),
]
EXECUTION_COLUMNS: list[Column] = [
    field("window_execution_id"),
    field("scheduled_time"),
    field("start_time"),
    field("end_time"),
    field("status"),
    field("status_details"),
]
TASK_EXECUTION_COLUMNS: list[Column] = [
    field("task_execution_id"),
    field("priority"),
    field("document"),
    field("status"),
    field("status_details"),
    field("command_ids"),
]
WINDOW_FIELDS = [
    "window_id",
    "name",
    "description",
    "enabled",
    "schedule",
    "schedule_timezone",
    "schedule_offset",
    "duration",
    "cutoff",
    "next_execution_time",
    "start_date",
    "end_date",
    "allow_unassociated_targets",
]
TARGETS_HELP = (
    "window-target:ID | name:GLOB | tag:KEY=V1,V2 | tag-key:KEY | platform:NAME | ip:CIDR | "
    "group:NAME | all | a node id (repeatable: a union)."
)


F = TypeVar("F", bound=Callable[..., Any])


def outputs(func: F) -> F:
    """``--output table|json`` and ``--json`` (the same as ``--output json``), passed to the
    command as ``output``."""

    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, output: str, **kw: Any) -> Any:
        return func(*args, output="json" if as_json else output, **kw)

    flagged = click.option("--json", "as_json", is_flag=True, help="Same as --output json.")
    return output_option(flagged(wrapper))  # type: ignore[return-value]


def _path(window_id: str, *rest: str) -> str:
    return "/".join(["/v1/windows", quote(window_id, safe=""), *(quote(r, safe="") for r in rest)])


@click.group()
def mw() -> None:
    """Maintenance windows: run tasks on a schedule, only while the window is open."""


@mw.command()
@click.option("--name", required=True, help="3-128 characters: letters, digits, _ - .")
@click.option(
    "--schedule",
    required=True,
    metavar="EXPR",
    help="cron(0 2 ? * SUN *), rate(7 days) or at(2027-01-31T02:00:00).",
)
@click.option("--duration", type=int, required=True, metavar="HOURS", help="1-24 hours.")
@click.option(
    "--cutoff",
    type=int,
    required=True,
    metavar="HOURS",
    help="0-23 hours before the end: no task starts after it.",
)
@click.option("--tz", "timezone", default="UTC", show_default=True, help="An IANA time zone.")
@click.option("--schedule-offset", type=int, default=None, metavar="DAYS", help="1-6 (cron only).")
@click.option("--start-date", default=None, help="ISO 8601: not active before it.")
@click.option("--end-date", default=None, help="ISO 8601: not active after it.")
@click.option(
    "--allow-unassociated-targets",
    is_flag=True,
    help="Tasks may target nodes not registered with the window.",
)
@click.option("--description", default="")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@outputs
@pass_runtime
def create(
    rt: Runtime,
    name: str,
    schedule: str,
    duration: int,
    cutoff: int,
    timezone: str,
    schedule_offset: int | None,
    start_date: str | None,
    end_date: str | None,
    allow_unassociated_targets: bool,
    description: str,
    disabled: bool,
    output: str,
) -> None:
    """Create a maintenance window."""
    body = {
        "name": name,
        "schedule": schedule,
        "duration": duration,
        "cutoff": cutoff,
        "schedule_timezone": timezone,
        "schedule_offset": schedule_offset,
        "start_date": start_date,
        "end_date": end_date,
        "allow_unassociated_targets": allow_unassociated_targets,
        "description": description,
        "enabled": not disabled,
    }
    with rt.client() as api:
        emit_object(api.post("/v1/windows", body), output, WINDOW_FIELDS)


@mw.command("register-targets")
@click.argument("window_id")
@click.option("--targets", multiple=True, required=True, metavar="SPEC", help=TARGETS_HELP)
@click.option("--name", default="", help="A name for this target (3-128 characters).")
@click.option("--owner-information", default="", help="Free text, up to 128 characters.")
@outputs
@pass_runtime
def register_targets(
    rt: Runtime,
    window_id: str,
    targets: tuple[str, ...],
    name: str,
    owner_information: str,
    output: str,
) -> None:
    """Register targets with a window (its tasks name them as window-target:ID)."""
    body = {"targets": list(targets), "name": name, "owner_information": owner_information}
    with rt.client() as api:
        emit_object(api.post(_path(window_id, "targets"), body), output)


@mw.command("deregister-target")
@click.argument("window_id")
@click.argument("target_id")
@outputs
@pass_runtime
def deregister_target(rt: Runtime, window_id: str, target_id: str, output: str) -> None:
    """Remove a registered target (refused while a task uses it)."""
    with rt.client() as api:
        result = api.delete(_path(window_id, "targets", target_id))
    emit_message(f"deregistered target {target_id}", result, output)


@mw.command("register-task")
@click.argument("window_id")
@click.option(
    "--type",
    "task_type",
    type=click.Choice(["RUN_COMMAND"]),
    default="RUN_COMMAND",
    show_default=True,
)
@click.option("--document", required=True, metavar="NAME[:VERSION]")
@click.option("--priority", type=int, default=1, show_default=True, help="Lower runs first.")
@click.option("--max-concurrency", default="50", show_default=True, metavar="N|N%")
@click.option("--max-errors", default="0", show_default=True, metavar="N|N%")
@click.option(
    "--targets",
    multiple=True,
    metavar="SPEC",
    help="Default: every registered target. " + TARGETS_HELP,
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A document parameter (repeatable); may use {{WINDOW_ID}}, {{WINDOW_EXECUTION_ID}}, "
    "{{TASK_EXECUTION_ID}}, {{TARGET_ID}}.",
)
@click.option(
    "--cutoff-behavior",
    type=click.Choice(["CONTINUE_TASK", "CANCEL_TASK"]),
    default="CONTINUE_TASK",
    show_default=True,
    help="At the cutoff: let the running command finish, or cancel it.",
)
@click.option("--timeout", "timeout_seconds", type=int, default=3600, show_default=True)
@click.option("--name", default="", help="A name for the task (3-128 characters).")
@outputs
@pass_runtime
def register_task(
    rt: Runtime,
    window_id: str,
    task_type: str,
    document: str,
    priority: int,
    max_concurrency: str,
    max_errors: str,
    targets: tuple[str, ...],
    params: tuple[str, ...],
    cutoff_behavior: str,
    timeout_seconds: int,
    name: str,
    output: str,
) -> None:
    """Register a task (a Run Command document) with a window."""
    doc, sep, version = document.partition(":")
    body = {
        "task_type": task_type,
        "document": doc,
        "document_version": version if sep else None,
        "targets": list(targets),
        "parameters": parse_params(params),
        "priority": priority,
        "max_concurrency": max_concurrency,
        "max_errors": max_errors,
        "cutoff_behavior": cutoff_behavior,
        "timeout_seconds": timeout_seconds,
        "name": name,
    }
    with rt.client() as api:
        emit_object(api.post(_path(window_id, "tasks"), body), output)


@mw.command("deregister-task")
@click.argument("window_id")
@click.argument("task_id")
@outputs
@pass_runtime
def deregister_task(rt: Runtime, window_id: str, task_id: str, output: str) -> None:
    """Remove a task from a window."""
    with rt.client() as api:
        result = api.delete(_path(window_id, "tasks", task_id))
    emit_message(f"deregistered task {task_id}", result, output)


@mw.command("list")
@max_items_option
@outputs
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List maintenance windows."""
    with rt.client() as api:
        rows = api.get_list("/v1/windows", "windows", max_items=max_items)
    emit_list(rows, WINDOW_COLUMNS, output)


@mw.command()
@click.argument("window_id")
@outputs
@pass_runtime
def show(rt: Runtime, window_id: str, output: str) -> None:
    """A window with its targets and tasks."""
    with rt.client() as api:
        emit_object(api.get(_path(window_id)), output, WINDOW_FIELDS)


@mw.command()
@click.argument("window_id")
@max_items_option
@outputs
@pass_runtime
def executions(rt: Runtime, window_id: str, max_items: int | None, output: str) -> None:
    """A window's executions, newest first."""
    with rt.client() as api:
        rows = api.get_list(_path(window_id, "executions"), "executions", max_items=max_items)
    emit_list(rows, EXECUTION_COLUMNS, output)


@mw.command("execution-tasks")
@click.argument("window_id")
@click.argument("execution_id")
@outputs
@pass_runtime
def execution_tasks(rt: Runtime, window_id: str, execution_id: str, output: str) -> None:
    """The task executions of one window execution (with their command ids)."""
    with rt.client() as api:
        found = api.get(_path(window_id, "executions", execution_id))
    if output == "json":
        emit_object(found, output)
        return
    click.echo(f"{found['window_execution_id']}  {found['status']}  {found['status_details']}")
    emit_list(found["tasks"], TASK_EXECUTION_COLUMNS, output)


@mw.command()
@click.argument("window_id")
@outputs
@pass_runtime
def enable(rt: Runtime, window_id: str, output: str) -> None:
    """Enable a window (its next start is computed from now)."""
    with rt.client() as api:
        emit_object(api.post(_path(window_id, "enable")), output, WINDOW_FIELDS)


@mw.command()
@click.argument("window_id")
@outputs
@pass_runtime
def disable(rt: Runtime, window_id: str, output: str) -> None:
    """Disable a window (a running execution goes on)."""
    with rt.client() as api:
        emit_object(api.post(_path(window_id, "disable")), output, WINDOW_FIELDS)


@mw.command()
@click.argument("window_id")
@outputs
@pass_runtime
def delete(rt: Runtime, window_id: str, output: str) -> None:
    """Delete a window with its targets, tasks and execution history."""
    with rt.client() as api:
        result = api.delete(_path(window_id))
    emit_message(f"deleted maintenance window {window_id}", result, output)
