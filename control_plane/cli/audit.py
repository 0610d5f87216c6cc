"""``corral audit``: search the audit trail, export it, and verify it (online or offline).

Times (``--since``, ``--until``, ``--from``, ``--to``) are a duration ago (``90m``, ``1h``,
``7d``) or an RFC 3339 time with its zone (``2026-12-01T10:00:00Z``); the API takes seconds
since the epoch.  ``verify --file`` checks an export with
:func:`control_plane.security.audit_verify.verify_export`, which needs only PyNaCl: it works
without the server extra and without a server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from control_plane.cli.context import Runtime, output_option, pass_runtime
from control_plane.cli.errors import ApiError, BadResponse, CliError, one_line
from control_plane.cli.output import Column, emit_json, emit_list, field
from control_plane.cli.params import parse_duration

if TYPE_CHECKING:
    from control_plane.cli.client import ApiClient

MAX_TIME = 1e11  # the server's bound on since/until
OUTCOMES = ("allowed", "denied", "error")
KEY_ROUTE = "/v1/audit/public-key"


def parse_time(text: str, now: float) -> float:
    """``1h`` (an hour before ``now``) or ``2026-12-01T10:00:00Z`` → seconds since the epoch."""
    import datetime as dt

    value = text.strip()
    try:
        when = now - parse_duration(value)
    except click.BadParameter:
        try:
            parsed = dt.datetime.fromisoformat(value.upper())
        except ValueError:
            raise click.BadParameter(
                f"{text!r} is neither a duration ago (1h, 7d) nor an RFC 3339 time "
                "(2026-12-01T10:00:00Z)"
            ) from None
        if parsed.tzinfo is None:
            raise click.BadParameter(
                f"{text!r} has no time zone: add Z (UTC) or an offset such as +02:00"
            ) from None
        when = parsed.timestamp()
    if not 0 <= when <= MAX_TIME:
        raise click.BadParameter(f"{text!r} is out of range")
    return when


def _time_callback(ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    import time

    # One "now" for the whole command line: --since 2h --until 1h is exactly one hour.
    now: float = ctx.meta.setdefault("corral.audit.now", time.time())
    return parse_time(value, now)


def _check_range(since: float | None, until: float | None, names: str) -> None:
    if since is not None and until is not None and since > until:
        raise click.UsageError(f"{names}: the start is after the end")


def _stamp(seconds: Any) -> str | None:
    import datetime as dt

    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


LIST_COLUMNS: list[Column] = [
    ("time", lambda e: _stamp(e.get("time"))),
    ("identity", lambda e: e.get("identity_name") or e.get("identity_id")),
    field("source_ip"),
    field("action"),
    field("resource"),
    field("outcome"),
    field("error"),
]


@click.group()
def audit() -> None:
    """The audit trail: list, export and verify it."""


# list ---------------------------------------------------------------------------------------


@audit.command("list")
@click.option("--since", callback=_time_callback, metavar="T", help="From: 1h, 7d or RFC 3339.")
@click.option("--until", callback=_time_callback, metavar="T", help="Up to: 1h, 7d or RFC 3339.")
@click.option("--identity", help="A token's name or id, or a node id.")
@click.option("--action", help="An action; * and ? match (commands:*).")
@click.option(
    "--resource",
    help="A resource; * and ? match (node/mi-*).  node/ID also finds the commands sent to "
    "that node.",
)
@click.option(
    "--node",
    metavar="ID|NAME",
    help="What concerns this node, commands sent to it included (--resource node/ID; a "
    "name is looked up, which needs nodes:List).",
)
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option(
    "--limit",
    "--max-items",
    "limit",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    help="At most this many entries (newest first).",
)
@output_option
@pass_runtime
def list_(
    rt: Runtime,
    since: float | None,
    until: float | None,
    identity: str | None,
    action: str | None,
    resource: str | None,
    node: str | None,
    outcome: str | None,
    limit: int,
    output: str,
) -> None:
    """List audit entries, newest first.

    What was run on web-3 this week: `corral audit list --node web-3 --action commands:Send
    --since 7d`."""
    _check_range(since, until, "--since/--until")
    if node is not None and resource is not None:
        raise click.UsageError("give --node or --resource, not both")
    if node is not None and not node.strip():
        raise click.BadParameter("the node is empty", param_hint="'--node'")
    with rt.client() as api:
        if node is not None:
            resource = f"node/{_node_id(api, node.strip())}"
        query = _params(
            since=since,
            until=until,
            identity=identity,
            action=action,
            resource=resource,
            outcome=outcome,
        )
        entries, more = api.pages("/v1/audit", "entries", params=query, max_items=limit)
    emit_list(entries, LIST_COLUMNS, output)
    if more:
        click.echo(
            f"note: showing the newest {len(entries)} entries; more match (raise --limit)",
            err=True,
        )


def _node_id(api: ApiClient, node: str) -> str:
    """``node`` if it is a node id, else the id of the one registered node of that name."""
    from agent.wire import NODE_ID_RE

    if NODE_ID_RE.match(node):
        return node
    if "*" in node or "?" in node:
        raise click.BadParameter(f"{node!r}: give one node's id or name", param_hint="'--node'")
    try:
        found = api.get_list("/v1/nodes", "nodes", params={"targets": [f"name:{node}"]})
    except ApiError as exc:
        if exc.status != 403:
            raise
        raise CliError(
            f"cannot look up node {node!r} ({exc.message}): give its id (mi-...) instead"
        ) from exc
    ids = sorted({str(n.get("node_id")) for n in found})
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise CliError(f"no registered node is named {node!r}: give its id (mi-...)")
    raise CliError(f"{len(ids)} nodes are named {node!r} ({', '.join(ids)}): give one id")


# export -------------------------------------------------------------------------------------


@audit.command()
@click.option(
    "--since", callback=_time_callback, metavar="T", help="From: 1h, 7d or RFC 3339 (default: all)."
)
@click.option("--until", callback=_time_callback, metavar="T", help="Up to: 1h, 7d or RFC 3339.")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="JSON Lines, with the chain fields (verifiable by `audit verify --file`).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, writable=True),
    metavar="PATH",
    help="Write here instead of stdout (only once it is complete).",
)
@pass_runtime
def export(
    rt: Runtime, since: float | None, until: float | None, format_: str, path: str | None
) -> None:
    """Export entries and signed checkpoints as JSON Lines, unchanged from the server."""
    _check_range(since, until, "--since/--until")
    params = _params(since=since, until=until)
    with rt.client() as api:
        chunks = api.stream("/v1/audit/export", params=params)
        if path is None:
            end = _copy(chunks, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            end = _copy_to_file(chunks, Path(path))
    if path is not None:
        click.echo(
            f"exported {end.get('entries')} entries and {end.get('checkpoints')} "
            f"checkpoints to {path}"
        )


def _copy(chunks: Iterable[bytes], out: IO[bytes]) -> Mapping[str, Any]:
    """Write every byte as it comes; the export's end line, or an error if there is none."""
    import json

    tail = b""
    for chunk in chunks:
        out.write(chunk)
        tail = (tail + chunk)[-4096:]
    last = tail.rstrip(b"\n").rpartition(b"\n")[2]
    try:
        end = json.loads(last)
    except ValueError:
        end = None
    if not isinstance(end, dict) or end.get("type") != "end":
        raise CliError("the export stopped before its end line: it is incomplete")
    return end


def _copy_to_file(chunks: Iterable[bytes], path: Path) -> Mapping[str, Any]:
    """Into ``path`` through a temporary file: a failed export leaves no partial file."""
    part = path.with_name(f".{path.name}.part")
    try:
        with part.open("wb") as fh:
            end = _copy(chunks, fh)
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return end


# verify -------------------------------------------------------------------------------------


@audit.command()
@click.option("--from", "since", callback=_time_callback, metavar="T", help="Check from here.")
@click.option("--to", "until", callback=_time_callback, metavar="T", help="Check up to here.")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Verify this export offline instead of asking the server.",
)
@click.option(
    "--public-key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="The trusted signing key (audit.pub, PEM or base64) for --file.",
)
@output_option
@pass_runtime
@click.pass_context
def verify(
    ctx: click.Context,
    rt: Runtime,
    since: float | None,
    until: float | None,
    path: str | None,
    key_file: str | None,
    output: str,
) -> None:
    """Check the hash chain and the signed checkpoints; exit 0 if intact, 1 if broken."""
    if path is None:
        if key_file is not None:
            raise click.UsageError("--public-key goes with --file")
        _check_range(since, until, "--from/--to")
        with rt.client() as api:
            result = api.get("/v1/audit/verify", params=_params(since=since, until=until))
        if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
            raise BadResponse("the server's verify answer has no 'ok'")
        _report(result, output)
    else:
        if since is not None or until is not None:
            raise click.UsageError(
                "--from/--to do not go with --file: an export covers what it covers"
            )
        result = _verify_file(rt, path, key_file)
        if output == "table" and result["key_source"] == "none":
            click.echo(
                "warning: no trusted public key (give --public-key audit.pub, or log in): "
                "checkpoint signatures were checked with the keys they carry, which proves "
                "the export is consistent but not who signed it",
                err=True,
            )
        _report(result, output)
        if output == "table":
            click.echo(_key_line(result))
    if not result["ok"]:
        ctx.exit(1)


def _report(result: Mapping[str, Any], output: str) -> None:
    if output == "json":
        emit_json(result)
    elif result["ok"]:
        click.echo(
            f"audit chain OK: {result.get('checked')} entries, "
            f"{result.get('checkpoints')} signed checkpoints"
        )
    else:
        where = result.get("first_bad_seq")
        reason = one_line(str(result.get("reason")))
        at = ""
        if where is not None:
            at = f" at entry {where}"
            reason = reason.removeprefix(f"entry {where}: ")  # said once is enough
        click.echo(f"audit chain BROKEN{at}: {reason}")


def _key_line(result: Mapping[str, Any]) -> str:
    source, key_id = result["key_source"], result.get("key_id")
    if source == "file":
        return f"public key: {result['key_file']} (key id {key_id})"
    if source == "server":
        return f"public key: fetched from {result['key_url']} (key id {key_id})"
    return "public key: none trusted"


def _verify_file(rt: Runtime, path: str, key_file: str | None) -> dict[str, Any]:
    from control_plane.security.audit_chain import key_id
    from control_plane.security.audit_verify import verify_export

    info: dict[str, Any] = {"file": path, "key_source": "none", "key_id": None}
    key = _trusted_key(rt, key_file, info)
    if key is not None:
        info["key_id"] = key_id(key)
    try:
        with open(path, "rb") as fh:
            verdict = verify_export(fh, key)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return {
        "ok": verdict.ok,
        "checked": verdict.checked,
        "checkpoints": verdict.checkpoints,
        "first_bad_seq": verdict.first_bad_seq,
        "reason": verdict.reason,
        **info,
    }


def _trusted_key(rt: Runtime, key_file: str | None, info: dict[str, Any]) -> bytes | None:
    """From ``--public-key``, else from the server the current profile logs in to, else None."""
    from control_plane.errors import CorralError
    from control_plane.security.audit_chain import load_public_key

    if key_file is not None:
        try:
            data = Path(key_file).read_bytes()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {key_file}: {exc.strerror or exc}", param_hint="'--public-key'"
            ) from None
        try:
            key = load_public_key(data)
        except CorralError:
            raise click.BadParameter(
                f"{key_file} is not an Ed25519 public key (expected audit.pub)",
                param_hint="'--public-key'",
            ) from None
        info.update(key_source="file", key_file=key_file)
        return key

    from control_plane.cli.errors import ConnectionFailed, NoProfile

    try:
        profile = rt.profile()
    except NoProfile:
        return None
    try:
        with rt.client(profile) as api:
            pem = api.get_text(KEY_ROUTE)
    except ConnectionFailed as exc:
        raise CliError(f"{exc.message} (give --public-key audit.pub to verify offline)") from exc
    try:
        key = load_public_key(pem.encode())
    except CorralError:
        raise BadResponse(f"{profile.url}{KEY_ROUTE} did not serve an Ed25519 key") from None
    info.update(key_source="server", key_url=f"{profile.url}{KEY_ROUTE}")
    return key
