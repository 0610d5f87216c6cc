"""/v1/tokens, /v1/policies, /v1/whoami, /v1/login: operator identities and their rights."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import InvalidRequest
from control_plane.security.actions import lookup
from control_plane.security.policy import evaluate, parse_policy, policy_warnings
from control_plane.security.policy_conditions import ContextValue
from control_plane.services import audit_context
from control_plane.services.operators import new_token_id
from control_plane.services.paging import paginate

router = APIRouter(tags=["access"])


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=128)
    role: StrictStr | None = Field(None, max_length=32)
    policy: dict[str, Any] | None = None
    expires_in_seconds: StrictInt | None = Field(None, ge=60, le=3650 * 86400)


class Simulate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_id: StrictStr = Field(max_length=40)
    action: StrictStr = Field(max_length=128)
    resource: StrictStr = Field(max_length=2048)
    source_ip: StrictStr | None = Field(None, max_length=64)


def _whoami(caller: Caller) -> dict[str, Any]:
    op = caller.operator
    return {
        "token_id": op.token_id,
        "name": op.name,
        "role": op.role,
        "expires_at": None
        if op.expires_at is None
        else dt.datetime.fromtimestamp(op.expires_at, dt.UTC).isoformat().replace("+00:00", "Z"),
        "policies": [p.document for p in op.policies],
    }


@router.get("/v1/whoami")
async def whoami(
    caller: Annotated[Caller, allow("identity:WhoAmI", "*")],
) -> dict[str, Any]:
    """Who the token is: any valid token may ask (``identity:WhoAmI`` is implicit)."""
    return _whoami(caller)


@router.post("/v1/login")
async def login(
    caller: Annotated[Caller, allow("identity:WhoAmI", "*", audit=True, audit_as="identity:Login")],
) -> dict[str, Any]:
    """``corral login``: who the token is, and an audit entry that it logged in.  Any valid
    token may log in, whatever its policies (``identity:WhoAmI`` is implicit)."""
    audit_context.name_resource(f"token/{caller.operator.token_id}")
    return _whoami(caller)


@router.post("/v1/tokens", status_code=201)
async def create_token(
    body: CreateToken, cp: CP, caller: Annotated[Caller, allow("tokens:Create", "token/*")]
) -> dict[str, Any]:
    warnings: list[str] = []
    if body.policy is not None:
        warnings = policy_warnings(parse_policy(body.policy, name=body.name))
    token_id = new_token_id()
    audit_context.name_resource(f"token/{token_id}")
    token_id, secret = await cp.operators.create_token(
        body.name,
        role=body.role,
        policy=body.policy,
        expires_in=body.expires_in_seconds,
        created_by=caller.operator,
        token_id=token_id,
    )
    shown = await cp.operators.get_token(token_id)
    return {**shown, "secret": secret, "warnings": warnings}


@router.get("/v1/tokens")
async def list_tokens(
    cp: CP,
    caller: Annotated[Caller, allow("tokens:List", per_item=True)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The tokens the caller may list, in the order they were made, a page at a time."""
    page = paginate(
        await cp.operators.list_tokens(),
        key=lambda t: (t["created_at"], t["token_id"]),
        limit=limit,
        next_token=next_token,
        shape=(str, str),
        visible=lambda t: caller.allowed("tokens:List", f"token/{t['token_id']}"),
    )
    return body("tokens", page)


@router.get("/v1/tokens/{token_id}")
async def show_token(
    token_id: str, cp: CP, _caller: Annotated[Caller, allow("tokens:Get", "token/{token_id}")]
) -> dict[str, Any]:
    return await cp.operators.get_token(token_id)


@router.post("/v1/tokens/{token_id}/revoke")
async def revoke_token(
    token_id: str, cp: CP, _caller: Annotated[Caller, allow("tokens:Revoke", "token/{token_id}")]
) -> dict[str, Any]:
    return await cp.operators.revoke(token_id)


@router.get("/v1/policies")
async def list_policies(
    cp: CP,
    _caller: Annotated[Caller, allow("policies:List", "policy/*")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = paginate(
        await cp.operators.list_policies(),
        key=lambda p: (p["name"],),
        limit=limit,
        next_token=next_token,
        shape=(str,),
    )
    return body("policies", page)


@router.get("/v1/policies/{name}")
async def show_policy(
    name: str, cp: CP, _caller: Annotated[Caller, allow("policies:Get", "policy/{name}")]
) -> dict[str, Any]:
    return await cp.operators.get_policy(name)


@router.post("/v1/policies/simulate")
async def simulate(
    body: Simulate, cp: CP, _caller: Annotated[Caller, allow("policies:Simulate", "policy/*")]
) -> dict[str, Any]:
    """IAM's policy simulator: would this token be allowed, and which statement decides."""
    target = await cp.operators.operator_for(body.token_id)
    action = lookup(body.action)
    if action is None:
        raise InvalidRequest(f"unknown action {body.action!r}")
    context: dict[str, ContextValue] = {
        "current_time": dt.datetime.fromtimestamp(cp.clock(), dt.UTC),
        "secure_transport": True,
        "token:id": target.token_id,
        "token:name": target.name,
    }
    if body.source_ip:
        try:
            context["source_ip"] = ipaddress.ip_address(body.source_ip)
        except ValueError:
            raise InvalidRequest(f"source_ip: not an IP address: {body.source_ip!r}") from None
    if body.resource.startswith("node/"):
        for key, value in (await cp.nodes.tags_of(body.resource[5:])).items():
            context[f"node:tag/{key}"] = value
    if action.implicit:  # as the route does: every valid token has it, no policy is asked
        return {
            "token_id": target.token_id,
            "action": action.name,
            "resource": body.resource,
            "allowed": True,
            "decision": "implicit-allow",
            "statement": None,
            "sid": None,
            "policy": None,
            "explanation": f"every valid token may {action.name}, whatever its policies say "
            "(asking who you are needs no permission)",
        }
    decision = evaluate(target.policies, action.name, body.resource, context)
    return {
        "token_id": target.token_id,
        "action": action.name,
        "resource": body.resource,
        "allowed": decision.allowed,
        "decision": decision.reason,
        "statement": decision.statement_index,
        "sid": decision.sid,
        "policy": decision.policy_name,
        "explanation": decision.describe(),
    }
