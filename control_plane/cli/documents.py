"""``corral documents``: create, update, list, show, set-default, versions and delete."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import IO, Any
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.output import Column, emit_list, emit_message, emit_object, field
from control_plane.cli.params import tags_callback

MAX_CONTENT_BYTES = 64 * 1024
OWNERS = ("self", "corral")
FIELDS = (
    "name", "owner", "document_type", "version", "version_name", "default_version",
    "latest_version", "schema_version", "description", "format", "size", "sha256",
    "parameters", "created_at", "version_created_at", "tags",
)  # fmt: skip
COLUMNS: list[Column] = [
    field("name"),
    field("owner"),
    field("default_version"),
    field("latest_version"),
    field("schema_version"),
    field("document_type"),
    field("created_at"),
    field("tags"),
]
VERSION_COLUMNS: list[Column] = [
    field("version"),
    field("version_name"),
    ("default", lambda v: v.get("is_default")),
    ("latest", lambda v: v.get("is_latest")),
    field("format"),
    field("schema_version"),
    field("created_at"),
    field("sha256"),
]
_EXTENSIONS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}

name_option = click.option("--name", required=True, help="The document's name.")
file_option = click.option(
    "--file",
    "file",
    type=click.File("rb"),
    required=True,
    help="The document: a .json, .yaml or .yml file, or - for standard input.",
)
version_name_option = click.option(
    "--version-name", default=None, metavar="NAME", help="A name for this version."
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "yaml"]),
    default=None,
    help="The file's format (default: from its extension, else detected by the server).",
)


def _path(name: str, action: str = "") -> str:
    return f"/v1/documents/{quote(name, safe='')}" + (f"/{action}" if action else "")


def read_document(file: IO[bytes], fmt: str | None) -> tuple[str, str | None]:
    """The file's text and format, checked for size and encoding before anything is sent."""
    data = file.read(MAX_CONTENT_BYTES + 1)
    name = getattr(file, "name", "-")
    if len(data) > MAX_CONTENT_BYTES:
        raise click.BadParameter(
            f"{name} is larger than {MAX_CONTENT_BYTES} bytes (64 KB), the limit for a document",
            param_hint="'--file'",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{name} is not UTF-8 text", param_hint="'--file'") from None
    if fmt is None and isinstance(name, str):
        fmt = _EXTENSIONS.get(PurePath(name).suffix.lower())
    return text, fmt


def _owner_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    kind, _, owner = value.partition(":")
    if kind != "owner" or owner not in OWNERS:
        raise click.BadParameter(f"filter {value!r} must be owner:self or owner:corral")
    return owner


@click.group()
def documents() -> None:
    """Command documents: yours (owner self) and the built-ins (owner corral)."""


@documents.command()
@name_option
@file_option
@version_name_option
@format_option
@click.option(
    "--tag",
    "tags",
    multiple=True,
    callback=tags_callback,
    metavar="KEY=VALUE",
    help="Tag for the document (repeatable).",
)
@output_option
@pass_runtime
def create(
    rt: Runtime,
    name: str,
    file: IO[bytes],
    version_name: str | None,
    fmt: str | None,
    tags: dict[str, str],
    output: str,
) -> None:
    """Create a document; its content becomes version 1, the default."""
    content, fmt = read_document(file, fmt)
    body: dict[str, Any] = {"name": name, "content": content, "tags": tags}
    body.update(_optional(fmt, version_name))
    with rt.client() as api:
        created = api.post("/v1/documents", body)
    emit_object(created, output, FIELDS)


@documents.command()
@name_option
@file_option
@version_name_option
@format_option
@output_option
@pass_runtime
def update(
    rt: Runtime,
    name: str,
    file: IO[bytes],
    version_name: str | None,
    fmt: str | None,
    output: str,
) -> None:
    """Add a version: it becomes $LATEST; the default version stays until set-default."""
    content, fmt = read_document(file, fmt)
    body: dict[str, Any] = {"content": content, **_optional(fmt, version_name)}
    with rt.client() as api:
        created = api.post(_path(name, "versions"), body)
    emit_object(created, output, FIELDS)


def _optional(fmt: str | None, version_name: str | None) -> dict[str, str]:
    out = {}
    if fmt is not None:
        out["format"] = fmt
    if version_name is not None:
        out["version_name"] = version_name
    return out


@documents.command("list")
@click.option(
    "--filter",
    "owner",
    callback=_owner_callback,
    metavar="owner:self|corral",
    help="Only your documents (owner:self) or the built-ins (owner:corral).",
)
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, owner: str | None, max_items: int | None, output: str) -> None:
    """List documents."""
    params = {"owner": owner} if owner else None
    with rt.client() as api:
        rows = api.get_list("/v1/documents", "documents", params=params, max_items=max_items)
    emit_list(rows, COLUMNS, output)


@documents.command()
@click.argument("name")
@click.option(
    "--version",
    default=None,
    metavar="VERSION",
    help="A version number, $LATEST, $DEFAULT (the default) or a version name.",
)
@click.option("--content", "with_content", is_flag=True, help="Include the document's text.")
@output_option
@pass_runtime
def show(rt: Runtime, name: str, version: str | None, with_content: bool, output: str) -> None:
    """Show one version of a document (the default version unless --version)."""
    params: dict[str, str] = {}
    if version is not None:
        params["version"] = version
    if with_content:
        params["content"] = "true"
    with rt.client() as api:
        data = api.get(_path(name), params=params or None)
    if output == "json" or not with_content or not isinstance(data, Mapping):
        emit_object(data, output, FIELDS)
        return
    # A table of the metadata, a blank line, then the text exactly as stored.
    text = data.get("content")
    text = text if isinstance(text, str) else ""
    emit_object({k: v for k, v in data.items() if k != "content"}, output, FIELDS)
    click.echo("")
    click.echo(text, nl=not text.endswith("\n"))


@documents.command("set-default")
@click.argument("name")
@click.option(
    "--version",
    required=True,
    metavar="VERSION",
    help="A version number, $LATEST or a version name.",
)
@output_option
@pass_runtime
def set_default(rt: Runtime, name: str, version: str, output: str) -> None:
    """Make a version the default (what runs when no version is given)."""
    with rt.client() as api:
        data = api.request("PUT", _path(name, "default"), body={"version": version})
    emit_message(
        f"default version of {name} is now {_field(data, 'default_version', version)}",
        data,
        output,
    )


@documents.command()
@click.argument("name")
@max_items_option
@output_option
@pass_runtime
def versions(rt: Runtime, name: str, max_items: int | None, output: str) -> None:
    """List a document's versions."""
    with rt.client() as api:
        rows = api.get_list(_path(name, "versions"), "versions", max_items=max_items)
    emit_list(rows, VERSION_COLUMNS, output)


@documents.command()
@click.argument("name")
@click.option(
    "--version",
    default=None,
    metavar="VERSION",
    help="Delete only this version (not the default); without it, every version.",
)
@output_option
@pass_runtime
def delete(rt: Runtime, name: str, version: str | None, output: str) -> None:
    """Delete a document, or one of its versions."""
    params = {"version": version} if version is not None else None
    with rt.client() as api:
        data = api.request("DELETE", _path(name), params=params)
    if version is None:
        text = f"deleted document {name}"
    else:
        text = f"deleted version {_field(data, 'version', version)} of document {name}"
    emit_message(text, data or {"deleted": name}, output)


def _field(data: Any, key: str, fallback: str) -> str:
    value = data.get(key) if isinstance(data, Mapping) else None
    return str(value) if value is not None else fallback
