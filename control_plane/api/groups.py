"""/v1/groups: named target queries (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services import audit_context
from control_plane.services.paging import paginate

router = APIRouter(prefix="/v1/groups", tags=["groups"])


class CreateGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(max_length=128)
    targets: list[StrictStr] = Field(min_length=1, max_length=50)
    description: StrictStr = Field("", max_length=256)


@router.post("", status_code=201)
async def create(
    body: CreateGroup, cp: CP, caller: Annotated[Caller, allow("groups:Create", per_item=True)]
) -> dict[str, Any]:
    await caller.require("groups:Create", f"group/{body.name}")
    audit_context.name_resource(f"group/{body.name}")
    return await cp.groups.create(body.name, list(body.targets), body.description)


@router.get("")
async def list_groups(
    cp: CP,
    _caller: Annotated[Caller, allow("groups:List", "group/*")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Groups by name, a page at a time."""
    page = paginate(
        await cp.groups.list_all(),
        key=lambda g: (g["name"],),
        limit=limit,
        next_token=next_token,
        shape=(str,),
    )
    return body("groups", page)


@router.get("/{name}")
async def show(
    name: str, cp: CP, _caller: Annotated[Caller, allow("groups:Get", "group/{name}")]
) -> dict[str, Any]:
    return await cp.groups.get(name)


@router.delete("/{name}")
async def delete(
    name: str, cp: CP, _caller: Annotated[Caller, allow("groups:Delete", "group/{name}")]
) -> dict[str, Any]:
    await cp.groups.delete(name)
    return {"deleted": name}
