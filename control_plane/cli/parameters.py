"""``corral params``: Parameter Store (put, get, get-by-path, list, history, labels, delete).

Names hold slashes (``/app/prod/db-url``), so they travel in query strings and bodies, never in
URL paths.  A SecureString value leaves the server only for ``--decrypt`` to a token allowed
``parameters:GetDecrypted``; otherwise it arrives as ``****`` and the CLI says why on stderr.
No message of this module repeats a value: the client-side checks are the server's own rules
(control_plane/rules/parameters.py, whose messages never echo one), imported by the
commands that use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import ApiError, CliError
from control_plane.cli.input_files import read_json_file, read_value
from control_plane.cli.output import Column, emit_json, emit_list, emit_object, field
from control_plane.cli.params import tags_callback

TYPES = ("String", "StringList", "SecureString")
TIERS = ("Standard", "Advanced")
SECURE = "SecureString"
MASK = "****"
DELETE_BATCH = 10  # the server's limit of names per delete request
FILTERS = "type=" + "|type=".join(TYPES)
GET_FIELDS = (
    "name", "type", "version", "labels", "last_modified_at", "last_modified_by", "value",
)  # fmt: skip
LIST_COLUMNS: list[Column] = [
    field("name"), field("type"), field("tier"), field("version"), field("last_modified_at"),
    field("last_modified_by"),
]  # fmt: skip
PATH_COLUMNS: list[Column] = [field("name"), field("type"), field("version"), field("value")]
HISTORY_COLUMNS: list[Column] = [
    field("version"), field("labels"), field("type"),
    ("created", lambda v: v.get("version_created_at")),
    ("by", lambda v: v.get("version_created_by")), field("value"),
]  # fmt: skip


def _precheck(param_hint: str, check: Callable[..., object], *args: Any) -> None:
    """Apply one of the server's rules here: its refusal is a usage error, nothing is sent."""
    from control_plane.errors import InvalidRequest

    try:
        check(*args)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint=param_hint) from None


def _masked(row: Mapping[str, Any]) -> bool:
    return row.get("type") == SECURE and row.get("value") == MASK


def _note_masked(rows: Sequence[Mapping[str, Any]], decrypt: bool) -> None:
    """Say on stderr why SecureString values show as ``****``."""
    hidden = [row for row in rows if _masked(row)]
    if not hidden:
        return
    what = "a SecureString value" if len(hidden) == 1 else f"{len(hidden)} SecureString values"
    if decrypt:
        why = "this token is not allowed parameters:GetDecrypted"
    else:
        why = "add --decrypt to see " + ("it" if len(hidden) == 1 else "them")
    click.echo(f"note: {what} shown as {MASK}: {why}", err=True)


def _flag(value: bool) -> str:
    return "true" if value else "false"


# Reading a policies file ---------------------------------------------------------------------


def read_policies(path: str) -> list[Any]:
    """The JSON list of AWS policy objects in ``path``; a bad file is one usage error."""
    document = read_json_file(path, "'--policies'")
    if not isinstance(document, list):
        raise click.BadParameter(
            f'{path} must hold a JSON list of policy objects, e.g. [{{"Type": "Expiration", ...}}]',
            param_hint="'--policies'",
        )
    return document


def _filter_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``type=SecureString`` → ``SecureString``; the only filter there is."""
    if value is None:
        return None
    key, _, wanted = value.partition("=")
    if key.strip() != "type" or wanted.strip() not in TYPES:
        raise click.BadParameter(f"{value!r} is not a supported filter; use {FILTERS}")
    return wanted.strip()


def _path_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``/app/prod/`` → ``/app/prod``: the server takes a path without its trailing slash."""
    if value is None or value == "/":
        return value
    return value.rstrip("/") or "/"


# The group ----------------------------------------------------------------------------------


@click.group()
def params() -> None:
    """Parameter Store: versioned configuration values and encrypted secrets."""


@params.command()
@click.argument("name")
@click.option(
    "--value",
    metavar="V",
    help="The value. '-' reads standard input and drops one trailing newline, as `read` does "
    "(keeps secrets out of shell history).",
)
@click.option(
    "--value-file",
    metavar="F",
    help="Read the value from file F exactly as it is (trailing newline included).",
)
@click.option(
    "--type",
    "type_",
    type=click.Choice(TYPES),
    help="Default: String for a new parameter; with --overwrite, the parameter's current type.",
)
@click.option("--description", metavar="D", help="What the parameter is for.")
@click.option("--overwrite", is_flag=True, help="Add a version to an existing parameter.")
@click.option(
    "--tier",
    type=click.Choice(TIERS),
    help="Standard (4 KB values) or Advanced (8 KB, policies). Default: Standard, or the "
    "parameter's current tier.",
)
@click.option(
    "--allowed-pattern",
    metavar="RE",
    help="A regular expression the whole value must match (this and later versions).",
)
@click.option("--data-type", default="text", show_default=True, help="Only 'text' is supported.")
@click.option(
    "--policies",
    "policies_file",
    metavar="FILE",
    help="A JSON list of parameter policies (Expiration, ExpirationNotification, "
    "NoChangeNotification); Advanced tier only.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    callback=tags_callback,
    metavar="KEY=VALUE",
    help="Tag for the parameter (repeatable).",
)
@output_option
@pass_runtime
def put(
    rt: Runtime,
    name: str,
    value: str | None,
    value_file: str | None,
    type_: str | None,
    description: str | None,
    overwrite: bool,
    tier: str | None,
    allowed_pattern: str | None,
    data_type: str,
    policies_file: str | None,
    tags: dict[str, str],
    output: str,
) -> None:
    """Create a parameter, or with --overwrite add a version to it.

    Prints NAME: version N (TYPE, TIER).
    """
    text = read_value(value, value_file)
    policies = read_policies(policies_file) if policies_file is not None else None
    if type_ is None and not overwrite:
        type_ = "String"
    _check_put(name, text, type_, tier, description, allowed_pattern, data_type, policies)
    with rt.client() as api:
        if type_ is None:
            type_ = _current_type(api, name)
            _check_value(text, type_, tier)
        body: dict[str, Any] = {
            "name": name,
            "value": text,
            "type": type_,
            "overwrite": overwrite,
            "data_type": data_type,
        }
        optional = {
            "description": description,
            "tier": tier,
            "allowed_pattern": allowed_pattern,
            "policies": policies,
            "tags": tags or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        done = api.request("PUT", "/v1/parameters", body=body)
    if output == "json":
        emit_json(done)
    else:
        shown = f"{done.get('type')}, {done.get('tier')}"
        click.echo(f"{done.get('name')}: version {done.get('version')} ({shown})")


def _check_put(
    name: str,
    value: str,
    type_: str | None,
    tier: str | None,
    description: str | None,
    allowed_pattern: str | None,
    data_type: str,
    policies: list[Any] | None,
) -> None:
    """The server's rules, applied before anything is sent (the server applies them again).
    ``type_`` None: not known yet (an overwrite keeps the current type)."""
    from control_plane.rules import parameters as rules

    _precheck("'NAME'", rules.check_name, name)
    _precheck("'--data-type'", rules.check_data_type, data_type)
    if description is not None:
        _precheck("'--description'", rules.check_description, description)
    if type_ is not None:
        _check_value(value, type_, tier)
    if allowed_pattern is not None:
        _precheck("'--allowed-pattern'", rules.check_allowed_pattern, allowed_pattern)
        _precheck("'--value'", rules.check_value_matches, allowed_pattern, value)
    if policies is not None:
        # Without --tier, an existing parameter may already be Advanced: the server decides.
        # An Expiration already past would delete the parameter at once: refused here.
        now = time.time()
        _precheck("'--policies'", rules.parse_policies, policies, tier or "Advanced", now)


def _check_value(value: str, type_: str, tier: str | None) -> None:
    from control_plane.rules import parameters as rules

    # Without --tier, an existing parameter may be Advanced: check against the larger bound.
    _precheck("'--value'", rules.check_value, value, type_, tier or "Advanced")


def _current_type(api: Any, name: str) -> str:
    """The type an overwrite keeps (as AWS does); String for a parameter that does not exist."""
    try:
        current = api.get("/v1/parameters/get", params={"name": name})
    except ApiError as exc:
        if exc.status == 404:
            return "String"
        raise CliError(
            f"cannot read the current type of {name} to keep it ({exc.message}): give --type"
        ) from None
    found = current.get("type") if isinstance(current, dict) else None
    return found if found in TYPES else "String"


@params.command()
@click.argument("selector", metavar="NAME[:VERSION|:LABEL]")
@click.option(
    "--decrypt", is_flag=True, help="Show a SecureString's value (needs parameters:GetDecrypted)."
)
@click.option(
    "--value-only",
    is_flag=True,
    help="Print only the value and a newline (for scripts); with --decrypt, a value that is "
    "not shown (no parameters:GetDecrypted) is an error (exit 1), never ****.",
)
@output_option
@pass_runtime
@click.pass_context
def get(
    ctx: click.Context, rt: Runtime, selector: str, decrypt: bool, value_only: bool, output: str
) -> None:
    """Show a parameter's value and version (the latest unless :VERSION or :LABEL)."""
    if value_only and ctx.get_parameter_source("output") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --value-only or --output, not both")
    with rt.client() as api:
        data = api.get("/v1/parameters/get", params={"name": selector, "decrypt": _flag(decrypt)})
    if value_only:
        if decrypt and data.get("note"):
            # A script asking for the secret must not go on with "****".
            raise CliError(f"{data.get('name')}: {data['note']}")
        click.echo(data.get("value"))
    elif output == "json":
        emit_json(data)
    else:
        # A version never changes once written: the one shown was last modified when created
        # (for the latest version these are the parameter's last_modified_* as well).
        shown = {k: data.get(k) for k in GET_FIELDS}
        shown["last_modified_at"] = data.get("version_created_at", shown["last_modified_at"])
        shown["last_modified_by"] = data.get("version_created_by", shown["last_modified_by"])
        emit_object(shown, output, GET_FIELDS)
    _note_masked([data], decrypt)


@params.command("get-by-path")
@click.argument("path", callback=_path_callback)
@click.option("--recursive", is_flag=True, help="Include every level below PATH.")
@click.option(
    "--decrypt", is_flag=True, help="Show SecureString values (needs parameters:GetDecrypted)."
)
@max_items_option
@output_option
@pass_runtime
def get_by_path(
    rt: Runtime, path: str, recursive: bool, decrypt: bool, max_items: int | None, output: str
) -> None:
    """Parameters under a path, with their values.

    PATH is like /app/prod: its direct children, or with --recursive every level below it.
    """
    with rt.client() as api:
        rows = api.get_list(
            "/v1/parameters/by-path",
            "parameters",
            params={"path": path, "recursive": _flag(recursive), "decrypt": _flag(decrypt)},
            max_items=max_items,
        )
    emit_list(rows, PATH_COLUMNS, output)
    _note_masked(rows, decrypt)


@params.command("list")
@click.option("--path", callback=_path_callback, metavar="P", help="Only parameters under P.")
@click.option(
    "--filter",
    "type_",
    callback=_filter_callback,
    metavar="type=TYPE",
    help=f"Only parameters of one type: {FILTERS}.",
)
@max_items_option
@output_option
@pass_runtime
def list_(
    rt: Runtime, path: str | None, type_: str | None, max_items: int | None, output: str
) -> None:
    """List parameters (metadata only, no values)."""
    query = {k: v for k, v in {"path": path, "type": type_}.items() if v is not None}
    with rt.client() as api:
        rows = api.get_list("/v1/parameters", "parameters", params=query, max_items=max_items)
    emit_list(rows, LIST_COLUMNS, output)


@params.command()
@click.argument("name")
@click.option(
    "--decrypt", is_flag=True, help="Show SecureString values (needs parameters:GetDecrypted)."
)
@max_items_option
@output_option
@pass_runtime
def history(rt: Runtime, name: str, decrypt: bool, max_items: int | None, output: str) -> None:
    """The kept versions of a parameter, oldest first, with their labels."""
    with rt.client() as api:
        rows = api.get_list(
            "/v1/parameters/history",
            "versions",
            params={"name": name, "decrypt": _flag(decrypt)},
            max_items=max_items,
        )
    emit_list(rows, HISTORY_COLUMNS, output)
    _note_masked(rows, decrypt)


def _check_labels(labels: Sequence[str]) -> list[str]:
    from control_plane.rules import parameters as rules

    for text in labels:
        _precheck("'LABEL'", rules.check_label, text)
    return list(labels)


@params.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), metavar="N", help="Default: the latest.")
@click.argument("labels", nargs=-1, required=True, metavar="LABEL...")
@output_option
@pass_runtime
def label(
    rt: Runtime, name: str, version: int | None, labels: tuple[str, ...], output: str
) -> None:
    """Label a version (the latest by default); a label moves from any other version."""
    body: dict[str, Any] = {"name": name, "labels": _check_labels(labels)}
    if version is not None:
        body["version"] = version
    with rt.client() as api:
        done = api.post("/v1/parameters/label", body)
    if output == "json":
        emit_json(done)
        return
    text = f"{name}: version {done.get('version')} labelled {', '.join(done.get('labels') or [])}"
    moved = done.get("moved_from") or []
    if moved:
        text += f" (moved from version {', '.join(str(v) for v in moved)})"
    click.echo(text)


@params.command()
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), required=True, metavar="N")
@click.argument("labels", nargs=-1, required=True, metavar="LABEL...")
@output_option
@pass_runtime
def unlabel(rt: Runtime, name: str, version: int, labels: tuple[str, ...], output: str) -> None:
    """Take labels off a version (one it does not carry is a warning)."""
    body = {"name": name, "version": version, "labels": list(labels)}
    with rt.client() as api:
        done = api.post("/v1/parameters/unlabel", body)
    removed, invalid = done.get("removed") or [], done.get("invalid") or []
    if output == "json":
        emit_json(done)
    elif removed:
        click.echo(f"{name}: version {version} unlabelled {', '.join(removed)}")
    if invalid:
        click.echo(
            f"warning: version {version} of {name} has no label {', '.join(invalid)}", err=True
        )


@params.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@output_option
@pass_runtime
@click.pass_context
def delete(ctx: click.Context, rt: Runtime, names: tuple[str, ...], output: str) -> None:
    """Delete parameters and all their versions; exit 1 if any name was not found."""
    unique = list(dict.fromkeys(names))
    deleted: list[str] = []
    invalid: list[str] = []
    with rt.client() as api:
        for start in range(0, len(unique), DELETE_BATCH):
            done = api.post(
                "/v1/parameters/delete", {"names": unique[start : start + DELETE_BATCH]}
            )
            deleted += done.get("deleted") or []
            invalid += done.get("invalid") or []
    if output == "json":
        emit_json({"deleted": deleted, "invalid": invalid})
    else:
        for name in deleted:
            click.echo(f"deleted {name}")
    if invalid:
        click.echo(f"error: not found: {', '.join(invalid)}", err=True)
        ctx.exit(1)
