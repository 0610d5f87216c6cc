"""/v1/nodes: managed nodes (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


class TagBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: dict[StrictStr, StrictStr]


class UntagBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[StrictStr] = Field(max_length=50)


class PingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_seconds: StrictFloat | StrictInt = 30


@router.get("")
async def list_nodes(
    cp: CP,
    caller: Annotated[Caller, allow("nodes:List", per_item=True)],
    filter: Annotated[list[str] | None, Query()] = None,
    targets: Annotated[list[str] | None, Query()] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Nodes the caller may list, in registration order, a page at a time; ``targets``
    (repeatable target specs, as ``corral run`` takes them) shows exactly the nodes a command
    to them would reach."""
    page = await cp.nodes.list_page(
        filter or [],
        targets,
        limit=limit,
        next_token=next_token,
        visible=lambda n: caller.allowed("nodes:List", f"node/{n['node_id']}", n.get("tags") or {}),
    )
    return body("nodes", page)


@router.get("/{node_id}")
async def show(
    node_id: str, cp: CP, _caller: Annotated[Caller, allow("nodes:Get", "node/{node_id}")]
) -> dict[str, Any]:
    return await cp.nodes.get(node_id)


@router.get("/{node_id}/events")
async def events(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("nodes:Get", "node/{node_id}")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """What the node's agent reported about itself (a state file it found unreadable and
    moved aside...), newest first, a page at a time."""
    page = await cp.node_events.list_page(node_id, limit=limit, next_token=next_token)
    return body("events", page)


@router.post("/{node_id}/tags")
async def tag(
    node_id: str,
    body: TagBody,
    cp: CP,
    _caller: Annotated[Caller, allow("nodes:Tag", "node/{node_id}")],
) -> dict[str, Any]:
    return await cp.nodes.tag(node_id, dict(body.tags))


@router.post("/{node_id}/untag")
async def untag(
    node_id: str,
    body: UntagBody,
    cp: CP,
    _caller: Annotated[Caller, allow("nodes:Untag", "node/{node_id}")],
) -> dict[str, Any]:
    return await cp.nodes.untag(node_id, list(body.keys))


@router.post("/{node_id}/ping")
async def ping(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("nodes:Ping", "node/{node_id}")],
    body: PingBody | None = None,
) -> dict[str, Any]:
    return await cp.nodes.ping(node_id, float((body or PingBody()).timeout_seconds))


@router.post("/{node_id}/deregister")
async def deregister(
    node_id: str, cp: CP, _caller: Annotated[Caller, allow("nodes:Deregister", "node/{node_id}")]
) -> dict[str, Any]:
    return await cp.nodes.deregister(node_id)
