"""/v1/inventory: what is on the nodes (docs/inventory.md).  Every route is authorized on the
node whose inventory it shows, with the node's tags as condition keys (as nodes:Get); the
fleet-wide routes (items, summary) show and count only the nodes the caller may list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services.paging import paginate

router = APIRouter(prefix="/v1/inventory", tags=["inventory"])

TypeName = Annotated[str, Query(min_length=1, max_length=100)]
OptionalType = Annotated[str | None, Query(min_length=1, max_length=100)]
Filters = Annotated[list[str] | None, Query(max_length=10)]


@router.get("/schema")
async def inventory_schema(
    cp: CP,
    _caller: Annotated[Caller, allow("inventory:GetSchema")],
    type: OptionalType = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Every type and its attributes (SSM's GetInventorySchema), custom ones included, by
    name a page at a time (custom types are as many as the fleet made)."""
    found = await cp.inventory.schema(type)
    page = paginate(
        found, key=lambda t: (t["type_name"],), limit=limit, next_token=next_token, shape=(str,)
    )
    return body("types", page)


@router.get("/nodes/{node_id}")
async def node_inventory(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("inventory:Get", "node/{node_id}")],
) -> dict[str, Any]:
    """The node's types: item counts, content hashes, when captured; its last gathering's
    errors."""
    return await cp.inventory.node(node_id)


@router.get("/nodes/{node_id}/items")
async def node_items(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("inventory:Get", "node/{node_id}")],
    type: TypeName,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The node's items of one type (SSM's ListInventoryEntries)."""
    page = await cp.inventory.node_items(node_id, type, limit=limit, next_token=next_token)
    return body("items", page)


@router.get("/nodes/{node_id}/changes")
async def node_changes(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("inventory:GetHistory", "node/{node_id}")],
    since: Annotated[str | None, Query(max_length=40)] = None,
    type: OptionalType = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """What was added, removed and changed on the node, newest first."""
    page = await cp.inventory.changes(
        node_id, since=since, type_name=type, limit=limit, next_token=next_token
    )
    return body("changes", page)


@router.get("/items")
async def items(
    cp: CP,
    caller: Annotated[Caller, allow("inventory:List", per_item=True)],
    type: TypeName,
    filter: Filters = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Items of one type across the fleet matching every filter (SSM's GetInventory)."""
    page = await cp.inventory.search(
        type,
        list(filter or []),
        visible=lambda n, tags: caller.allowed("inventory:List", f"node/{n}", tags),
        limit=limit,
        next_token=next_token,
    )
    return body("items", page)


@router.get("/summary")
async def summary(
    cp: CP,
    caller: Annotated[Caller, allow("inventory:List", per_item=True)],
    type: TypeName,
    group_by: Annotated[str, Query(min_length=1, max_length=400)],
    filter: Filters = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Counts of nodes and items per group of attribute values (SSM's aggregators)."""
    return await cp.inventory.summary(
        type,
        [a.strip() for a in group_by.split(",") if a.strip()],
        list(filter or []),
        visible=lambda n, tags: caller.allowed("inventory:List", f"node/{n}", tags),
        limit=limit,
        next_token=next_token,
    )


@router.delete("/types/{type_name}")
async def delete_type(
    type_name: str,
    cp: CP,
    _caller: Annotated[Caller, allow("inventory:DeleteCustomType", "inventory/{type_name}")],
) -> dict[str, Any]:
    """Delete a custom type's data from every node (SSM's DeleteInventory)."""
    return await cp.inventory.delete_custom_type(type_name)
