"""/v1/parameters: Parameter Store.  Names travel in bodies and query strings (they hold
slashes); a SecureString value is shown only to a caller allowed parameters:GetDecrypted on
that name, and never reaches the audit trail (the ``value`` field is masked there)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import InvalidRequest
from control_plane.rules.parameters import parse_selector
from control_plane.security.actions import resource_name
from control_plane.security.policy_conditions import ContextValue
from control_plane.services.hub import ControlPlane
from control_plane.services.paging import paginate
from control_plane.services.parameters.service import SECURE

router = APIRouter(prefix="/v1/parameters", tags=["parameters"])

Name = Annotated[str, Query(min_length=1, max_length=2048)]


def resource(name: str) -> str:
    return resource_name("parameter", name)


class PutParameter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(max_length=2048)
    value: StrictStr = Field(max_length=16 * 1024)
    # None: String for a new parameter, the current type on an overwrite.
    type: StrictStr | None = Field(None, max_length=16)
    description: StrictStr | None = Field(None, max_length=1024)
    overwrite: StrictBool = False
    tier: StrictStr | None = Field(None, max_length=16)
    allowed_pattern: StrictStr | None = Field(None, max_length=1024)
    data_type: StrictStr = Field("text", max_length=32)
    policies: list[dict[str, Any]] | None = Field(None, max_length=10)
    tags: dict[StrictStr, StrictStr] | None = Field(None, max_length=50)


class LabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(max_length=2048)
    version: StrictInt | None = Field(None, ge=1)
    labels: list[StrictStr] = Field(min_length=1, max_length=10)


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[StrictStr] = Field(min_length=1, max_length=10)


async def _current_type(cp: ControlPlane, caller: Caller, name: str) -> str | None:
    """The parameter's type now (None: it does not exist), read only when the caller's
    policies have a ``parameter:type`` condition."""
    if not caller.operator.uses_key("parameter:type"):
        return None
    row = await cp.parameters.metadata(name)
    return str(row["type"]) if row else None


def _typed(kind: str | None) -> dict[str, ContextValue] | None:
    """The ``parameter:type`` condition key of a request about a parameter of this type."""
    return {"parameter:type": kind} if kind else None


@router.put("")
async def put(
    body: PutParameter,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Put", per_item=True, redact=("value",))],
) -> dict[str, Any]:
    kind = body.type or await _current_type(cp, caller, body.name) or "String"
    await caller.require("parameters:Put", resource(body.name), context=_typed(kind))
    return await cp.parameters.put(by=caller.operator.name, **body.model_dump())


@router.get("/get")
async def get(
    name: Name,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Get", per_item=True)],
    decrypt: bool = False,
) -> dict[str, Any]:
    """``name`` is a selector: NAME, NAME:VERSION or NAME:LABEL."""
    base = parse_selector(name).name
    typed = _typed(await _current_type(cp, caller, base))
    await caller.require("parameters:Get", resource(base), context=typed)
    allowed = decrypt and caller.allowed(
        "parameters:GetDecrypted", resource(base), context=typed
    )
    shown = await cp.parameters.get(name, decrypt=allowed)
    if decrypt and shown["type"] == SECURE and not allowed:
        shown["note"] = "value not shown: parameters:GetDecrypted is not allowed"
    return shown


@router.get("/by-path")
async def by_path(
    path: Name,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Get", per_item=True)],
    recursive: bool = False,
    decrypt: bool = False,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = await cp.parameters.by_path(
        path,
        recursive=recursive,
        limit=limit,
        next_token=next_token,
        visible=lambda n, t: caller.allowed("parameters:Get", resource(n), context=_typed(t)),
        decrypt=lambda n, t: (
            decrypt and caller.allowed("parameters:GetDecrypted", resource(n), context=_typed(t))
        ),
    )
    return body("parameters", page)


@router.get("")
async def list_parameters(
    cp: CP,
    caller: Annotated[Caller, allow("parameters:List", per_item=True)],
    path: Annotated[str | None, Query(max_length=2048)] = None,
    type: Annotated[str | None, Query(max_length=16)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = await cp.parameters.list_page(
        path=path,
        type_=type,
        limit=limit,
        next_token=next_token,
        visible=lambda n, t: caller.allowed("parameters:List", resource(n), context=_typed(t)),
    )
    return body("parameters", page)


@router.get("/history")
async def history(
    name: Name,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:GetHistory", per_item=True)],
    decrypt: bool = False,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The parameter's versions, oldest first, a page at a time."""
    typed = _typed(await _current_type(cp, caller, name))
    await caller.require("parameters:GetHistory", resource(name), context=typed)
    allowed = decrypt and caller.allowed(
        "parameters:GetDecrypted", resource(name), context=typed
    )
    versions = await cp.parameters.history(name, decrypt=allowed)
    page = paginate(
        versions, key=lambda v: (v["version"],), limit=limit, next_token=next_token, shape=(int,)
    )
    shown = body("versions", page)
    if decrypt and not allowed and any(v["type"] == SECURE for v in shown["versions"]):
        shown["note"] = "values not shown: parameters:GetDecrypted is not allowed"
    return shown


@router.post("/label")
async def label(
    body: LabelBody,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Label", per_item=True)],
) -> dict[str, Any]:
    typed = _typed(await _current_type(cp, caller, body.name))
    await caller.require("parameters:Label", resource(body.name), context=typed)
    return await cp.parameters.label(body.name, body.version, list(body.labels))


@router.post("/unlabel")
async def unlabel(
    body: LabelBody,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Unlabel", per_item=True)],
) -> dict[str, Any]:
    typed = _typed(await _current_type(cp, caller, body.name))
    await caller.require("parameters:Unlabel", resource(body.name), context=typed)
    if body.version is None:
        raise InvalidRequest("version: required to remove labels")
    return await cp.parameters.unlabel(body.name, body.version, list(body.labels))


@router.post("/delete")
async def delete(
    body: DeleteBody,
    cp: CP,
    caller: Annotated[Caller, allow("parameters:Delete", per_item=True)],
) -> dict[str, Any]:
    for name in body.names:
        typed = _typed(await _current_type(cp, caller, name))
        await caller.require("parameters:Delete", resource(name), context=typed)
    return await cp.parameters.delete(list(body.names))
