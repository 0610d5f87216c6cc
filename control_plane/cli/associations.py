"""``corral associations``: State Manager (docs/state-manager.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.run import parse_params

COLUMNS: list[Column] = [
    field("association_id"),
    field("name"),
    field("version"),
    ("document", lambda a: f"{a['document']}:{a.get('document_version') or '$DEFAULT'}"),
    ("schedule", lambda a: a.get("schedule") or "-"),
    field("next_run_at"),
]
EXECUTION_COLUMNS: list[Column] = [
    field("execution_id"),
    field("trigger"),
    field("status"),
    field("detailed_status"),
    field("target_count"),
    field("created_at"),
]
TARGET_COLUMNS: list[Column] = [
    field("node_id"),
    field("status"),
    field("detailed_status"),
    ("response_code", lambda t: t.get("response_code")),
]

SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNSPECIFIED"]


def _path(association_id: str, *more: str) -> str:
    return "/".join(["/v1/associations", quote(association_id, safe=""), *more])


def _document(text: str) -> tuple[str, str | None]:
    """``NAME[:VERSION]``."""
    name, sep, version = text.partition(":")
    if not name or (sep and not version):
        raise click.BadParameter(f"{text!r} must be NAME or NAME:VERSION", param_hint="--document")
    return name, version or None


def _options(func: Any) -> Any:
    """The settable fields, shared by create and update."""
    for option in reversed(
        [
            click.option(
                "--param",
                "params",
                multiple=True,
                metavar="NAME=VALUE",
                help="A document parameter (repeatable; repeated names make a list).",
            ),
            click.option(
                "--schedule",
                metavar="EXPR",
                help="cron(...) or rate(...) (see `corral schedule next`).",
            ),
            click.option("--tz", "timezone", metavar="ZONE", help="IANA zone of a cron schedule."),
            click.option(
                "--apply-only-at-cron-interval",
                "apply_only",
                is_flag=True,
                default=None,
                help="Do not apply at creation: wait for the schedule.",
            ),
            click.option(
                "--schedule-offset",
                type=int,
                metavar="DAYS",
                help="Run DAYS after each cron time (1-6; cron only).",
            ),
            click.option("--max-concurrency", metavar="N|N%"),
            click.option("--max-errors", metavar="N|N%"),
            click.option("--compliance-severity", type=click.Choice(SEVERITIES)),
            click.option("--sync-compliance", type=click.Choice(["AUTO", "MANUAL"])),
            click.option(
                "--calendar",
                "calendars",
                multiple=True,
                metavar="NAME",
                help="Run only while this change calendar is OPEN (repeatable).",
            ),
        ]
    ):
        func = option(func)
    return func


def _fields(
    params: Sequence[str],
    schedule: str | None,
    timezone: str | None,
    apply_only: bool | None,
    schedule_offset: int | None,
    max_concurrency: str | None,
    max_errors: str | None,
    compliance_severity: str | None,
    sync_compliance: str | None,
    calendars: Sequence[str],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": schedule,
        "timezone": timezone,
        "apply_only_at_cron_interval": apply_only,
        "schedule_offset": schedule_offset,
        "max_concurrency": max_concurrency,
        "max_errors": max_errors,
        "compliance_severity": compliance_severity,
        "sync_compliance": sync_compliance,
    }
    if params:
        body["parameters"] = parse_params(params)
    if calendars:
        body["calendars"] = list(calendars)
    return {k: v for k, v in body.items() if v is not None}


@click.group()
def associations() -> None:
    """Keep nodes in a declared state: a document applied on a schedule (State Manager)."""


@associations.command()
@click.option("--name", required=True, help="3-128 letters, digits, _ - .")
@click.option("--document", required=True, metavar="NAME[:VERSION]")
@click.option(
    "--targets",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="As `corral run --targets` (repeatable: a union).",
)
@_options
@output_option
@pass_runtime
def create(
    rt: Runtime, /, name: str, document: str, targets: tuple[str, ...], output: str, **options: Any
) -> None:
    """Create an association; it applies at once unless --apply-only-at-cron-interval."""
    doc, version = _document(document)
    body = {
        "name": name,
        "document": doc,
        "document_version": version,
        "targets": list(targets),
        **_fields(**options),
    }
    with rt.client() as api:
        created = api.post("/v1/associations", body)
    for warning in created.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    emit_object(created, output)


@associations.command()
@click.argument("association_id")
@click.option("--name")
@click.option("--document", metavar="NAME[:VERSION]")
@click.option("--targets", multiple=True, metavar="SPEC")
@click.option("--no-schedule", is_flag=True, help="Remove the schedule.")
@click.option(
    "--expect-version",
    type=int,
    metavar="N",
    help="Refuse (and change nothing) unless it is still at version N.",
)
@_options
@output_option
@pass_runtime
def update(
    rt: Runtime,
    /,
    association_id: str,
    name: str | None,
    document: str | None,
    targets: tuple[str, ...],
    no_schedule: bool,
    expect_version: int | None,
    output: str,
    **options: Any,
) -> None:
    """Change an association: a new version."""
    body: dict[str, Any] = _fields(**options)
    if name:
        body["name"] = name
    if document:
        body["document"], version = _document(document)
        if version:
            body["document_version"] = version
        else:
            body["clear"] = ["document_version"]
    if targets:
        body["targets"] = list(targets)
    if no_schedule:
        body["clear"] = [*body.get("clear", []), "schedule", "schedule_offset"]
    if expect_version is not None:
        body["expect_version"] = expect_version
    if not body or set(body) == {"expect_version"}:
        raise click.UsageError("nothing to change: give at least one option")
    with rt.client() as api:
        emit_object(api.patch(_path(association_id), body), output)


@associations.command("list")
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List associations."""
    with rt.client() as api:
        rows = api.get_list("/v1/associations", "associations", max_items=max_items)
    emit_list(rows, COLUMNS, output)


@associations.command()
@click.argument("association_id")
@output_option
@pass_runtime
def show(rt: Runtime, association_id: str, output: str) -> None:
    """An association, its overview (nodes per status) and each node's status."""
    with rt.client() as api:
        emit_object(api.get(_path(association_id)), output)


@associations.command()
@click.argument("association_id")
@output_option
@pass_runtime
def versions(rt: Runtime, association_id: str, output: str) -> None:
    """Every version of an association, newest first."""
    with rt.client() as api:
        rows = api.get_list(_path(association_id, "versions"), "versions")
    emit_list(
        rows,
        [
            field("version"),
            field("created_at"),
            field("created_by"),
            field("schedule"),
            field("document_name"),
        ],
        output,
    )


@associations.command("run-now")
@click.argument("association_id")
@output_option
@pass_runtime
def run_now(rt: Runtime, association_id: str, output: str) -> None:
    """Run it now on every node it targets, whatever its schedule."""
    with rt.client() as api:
        emit_object(api.post(_path(association_id, "run")), output)


@associations.command()
@click.argument("association_id")
@output_option
@pass_runtime
def delete(rt: Runtime, association_id: str, output: str) -> None:
    """Delete an association (nodes stop enforcing it once told)."""
    with rt.client() as api:
        result = api.delete(_path(association_id))
    emit_message(f"deleted association {association_id}", result, output)


@associations.command()
@click.argument("association_id")
@max_items_option
@output_option
@pass_runtime
def executions(rt: Runtime, association_id: str, max_items: int | None, output: str) -> None:
    """Its runs, newest first."""
    with rt.client() as api:
        rows = api.get_list(_path(association_id, "executions"), "executions", max_items=max_items)
    emit_list(rows, EXECUTION_COLUMNS, output)


@associations.command("execution-targets")
@click.argument("association_id")
@click.argument("execution_id")
@max_items_option
@output_option
@pass_runtime
def execution_targets(
    rt: Runtime, association_id: str, execution_id: str, max_items: int | None, output: str
) -> None:
    """Each node of one run: its status (and output, with commands:GetOutput)."""
    with rt.client() as api:
        rows = api.get_list(
            _path(association_id, "executions", quote(execution_id, safe=""), "targets"),
            "targets",
            max_items=max_items,
        )
    emit_list(rows, TARGET_COLUMNS, output)
