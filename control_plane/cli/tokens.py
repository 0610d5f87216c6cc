"""``corral tokens``, ``corral whoami`` and ``corral policies``: operator identities and rights.

A token has either a built-in role (``admin``, ``operator``, ``viewer``: stored policies, see
``corral policies show operator``) or a policy document of its own.  Its secret (``crl_...``)
is shown once, by ``tokens create``; the server keeps only a digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import click

from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import one_line
from control_plane.cli.input_files import read_json_file
from control_plane.cli.output import Column, emit_json, emit_list, emit_message, emit_object, field
from control_plane.cli.params import parse_duration

ROLES = ("admin", "operator", "viewer")
CUSTOM = "custom policy"
NEVER = "never"
MIN_TOKEN_SECONDS = 60
MAX_TOKEN_SECONDS = 3650 * 86400  # the server's bound
TOKEN_FIELDS = (
    "token_id", "name", "role", "state", "created_at", "expires_at", "revoked_at", "created_by",
)  # fmt: skip
WHOAMI_FIELDS = ("name", "token_id", "role", "expires_at")


def _role(row: Mapping[str, Any]) -> Any:
    return row.get("role") or CUSTOM


def _expiry(row: Mapping[str, Any]) -> Any:
    return row.get("expires_at") or NEVER


TOKEN_COLUMNS: list[Column] = [
    field("token_id"), field("name"), ("role", _role), field("state"), ("expires_at", _expiry),
    field("created_by"),
]  # fmt: skip
POLICY_COLUMNS: list[Column] = [field("name"), field("builtin"), field("updated_at")]


def _expires_callback(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """``90d``, ``12h``, ``1w``, seconds, or ``never`` (None) → ``expires_in_seconds``."""
    if value.strip().lower() == NEVER:
        return None
    seconds = parse_duration(value)
    if seconds < MIN_TOKEN_SECONDS:
        raise click.BadParameter(f"{value!r} is less than 1 minute")
    if seconds > MAX_TOKEN_SECONDS:
        raise click.BadParameter(f"{value!r} is more than 3650 days (use 'never')")
    return seconds


def _source_ip_callback(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


def read_policy(path: str) -> dict[str, Any]:
    """The policy document in ``path`` (``-``: stdin); a bad file is one usage error."""
    document = read_json_file(path, "'--policy'")
    if not isinstance(document, dict):
        name = "stdin" if path == "-" else path
        raise click.BadParameter(
            f"{name} must hold a policy document (a JSON object with Version and Statement)",
            param_hint="'--policy'",
        )
    return document


def _pretty(document: Any) -> str:
    """A policy document for people: indented, in the server's key order (Version first)."""
    import json

    return json.dumps(document, indent=2, ensure_ascii=False)


def _warn(warnings: Any) -> None:
    for warning in warnings if isinstance(warnings, list) else ():
        click.echo(f"warning: {one_line(str(warning))}", err=True)


# tokens -------------------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """Operator tokens: create, list, show, revoke."""


@tokens.command()
@click.option("--name", required=True, help="Who or what the token is for.")
@click.option("--role", type=click.Choice(ROLES), help="A built-in role.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="A JSON policy document instead of a role ('-' reads stdin).",
)
@click.option(
    "--expires",
    "expires_in",
    default="90d",
    show_default=True,
    callback=_expires_callback,
    help="Lifetime: 12h, 90d, 1w, seconds, or 'never'.",
)
@output_option
@pass_runtime
def create(
    rt: Runtime,
    name: str,
    role: str | None,
    policy_file: str | None,
    expires_in: int | None,
    output: str,
) -> None:
    """Create a token with a role or a policy; its secret is shown only once."""
    if (role is None) == (policy_file is None):
        raise click.UsageError("give exactly one of --role and --policy")
    body: dict[str, Any] = {"name": name, "expires_in_seconds": expires_in}
    if role is not None:
        body["role"] = role
    else:
        assert policy_file is not None
        body["policy"] = read_policy(policy_file)
    with rt.client() as api:
        created = api.post("/v1/tokens", body)
    if output == "json":
        emit_object(created, output)
    else:
        click.echo(_created_text(created))
    _warn(created.get("warnings"))


def _created_text(created: Mapping[str, Any]) -> str:
    return "\n".join(
        [
            "Token created. The secret is shown only this once and cannot be shown again:",
            "store it now (a password manager, or your CI's secret store).",
            "",
            f"  secret:      {created.get('secret')}",
            f"  token id:    {created.get('token_id')}",
            f"  name:        {one_line(str(created.get('name')))}",
            f"  role:        {_role(created)}",
            f"  expires at:  {_expiry(created)}",
        ]
    )


@tokens.command("list")
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, max_items: int | None, output: str) -> None:
    """List tokens (those this token may see)."""
    with rt.client() as api:
        rows = api.get_list("/v1/tokens", "tokens", max_items=max_items)
    emit_list(rows, TOKEN_COLUMNS, output)


@tokens.command()
@click.argument("token_id")
@output_option
@pass_runtime
def show(rt: Runtime, token_id: str, output: str) -> None:
    """Show a token and its policy document."""
    with rt.client() as api:
        data = api.get(f"/v1/tokens/{quote(token_id, safe='')}")
    if output == "json":
        emit_json(data)
        return
    fields = {k: v for k, v in data.items() if k != "policy"}
    emit_object({**fields, "role": _role(data), "expires_at": _expiry(data)}, output, TOKEN_FIELDS)
    click.echo("\npolicy:")
    click.echo(_pretty(data.get("policy")))


@tokens.command()
@click.argument("token_id")
@output_option
@pass_runtime
def revoke(rt: Runtime, token_id: str, output: str) -> None:
    """Revoke a token: it stops working at its next request."""
    with rt.client() as api:
        data = api.post(f"/v1/tokens/{quote(token_id, safe='')}/revoke")
    emit_message(one_line(str(data.get("message") or f"token {token_id} revoked")), data, output)


# whoami -------------------------------------------------------------------------------------


@click.command()
@output_option
@pass_runtime
def whoami(rt: Runtime, output: str) -> None:
    """The token in use: identity, role, expiry and policies."""
    with rt.client() as api:
        data = api.get("/v1/whoami")
    if output == "json":
        emit_json(data)
        return
    fields = {k: v for k, v in data.items() if k != "policies"}
    emit_object({**fields, "role": _role(data), "expires_at": _expiry(data)}, output, WHOAMI_FIELDS)
    click.echo("\npolicies:")
    for document in data.get("policies") or []:
        click.echo(_pretty(document))


# policies -----------------------------------------------------------------------------------


@click.group()
def policies() -> None:
    """Stored policies (the roles) and the policy simulator."""


@policies.command("list")
@max_items_option
@output_option
@pass_runtime
def policies_list(rt: Runtime, max_items: int | None, output: str) -> None:
    """List stored policies."""
    with rt.client() as api:
        rows = api.get_list("/v1/policies", "policies", max_items=max_items)
    emit_list(rows, POLICY_COLUMNS, output)


@policies.command("show")
@click.argument("name")
@output_option
@pass_runtime
def policies_show(rt: Runtime, name: str, output: str) -> None:
    """Print a policy's document as JSON (a start for `tokens create --policy`)."""
    with rt.client() as api:
        data = api.get(f"/v1/policies/{quote(name, safe='')}")
    if output == "json":
        emit_json(data)
    else:
        click.echo(_pretty(data.get("document")))


@policies.command()
@click.option("--token", "token_id", required=True, metavar="ID", help="The token's id.")
@click.option("--action", required=True, help="An action, e.g. commands:Send.")
@click.option("--resource", required=True, help="A resource, e.g. node/mi-0123456789abcdef0.")
@click.option(
    "--source-ip",
    callback=_source_ip_callback,
    metavar="IP",
    help="The address the request would come from (for IpAddress conditions).",
)
@output_option
@pass_runtime
@click.pass_context
def simulate(
    ctx: click.Context,
    rt: Runtime,
    token_id: str,
    action: str,
    resource: str,
    source_ip: str | None,
    output: str,
) -> None:
    """Would this token be allowed this action on this resource?  Exit 0 if allowed, 1 if not."""
    body: dict[str, Any] = {"token_id": token_id, "action": action, "resource": resource}
    if source_ip is not None:
        body["source_ip"] = source_ip
    with rt.client() as api:
        data = api.post("/v1/policies/simulate", body)
    allowed = data.get("allowed") is True
    verdict = "allowed" if allowed else "denied"
    explanation = one_line(str(data.get("explanation") or ""))
    emit_message(f"{verdict}\n{explanation}" if explanation else verdict, data, output)
    if not allowed:
        ctx.exit(1)
