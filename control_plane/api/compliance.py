"""/v1/compliance: SSM's compliance (docs/compliance.md).  Every route is authorized on the
node whose compliance it shows or changes, with the node's tags as condition keys (as
nodes:Get): a token that may not see a node never sees its compliance, not even in the
fleet's counts.  Operators put Custom:NAME items only; Association and Patch compliance is
the server's own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services.paging import paginate

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

TypeQuery = Annotated[str | None, Query(max_length=100)]
StatusQuery = Annotated[str | None, Query(max_length=16)]


class PutItems(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compliance_type: StrictStr = Field(max_length=100)
    # Checked item by item by the service (one-line errors naming the item).
    items: list[dict[str, Any]] = Field(max_length=10_000)
    execution_id: StrictStr = Field("", max_length=100)
    execution_type: StrictStr = Field("Custom", max_length=50)
    # When the items were observed (seconds since the epoch); the server's time by default.
    execution_time: StrictFloat | StrictInt | None = None


@router.get("/summaries")
async def summaries(
    cp: CP,
    caller: Annotated[Caller, allow("compliance:ListSummaries", per_item=True)],
    type: TypeQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Per compliance type: nodes compliant and non-compliant, by severity (SSM's
    ListComplianceSummaries), over the nodes the caller may see."""
    found = await cp.compliance.fleet_summary(
        compliance_type=type,
        visible=lambda n, tags: caller.allowed("compliance:ListSummaries", f"node/{n}", tags),
    )
    page = paginate(
        found,
        key=lambda s: (s["compliance_type"],),
        limit=limit,
        next_token=next_token,
        shape=(str,),
    )
    return body("summaries", page)


@router.get("/resources")
async def resources(
    cp: CP,
    caller: Annotated[Caller, allow("compliance:ListSummaries", per_item=True)],
    type: TypeQuery = None,
    status: StatusQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Each (node, compliance type) the caller may see (SSM's
    ListResourceComplianceSummaries), by node id."""
    page = await cp.compliance.resource_summaries(
        compliance_type=type,
        status=status,
        limit=limit,
        next_token=next_token,
        visible=lambda n, tags: caller.allowed("compliance:ListSummaries", f"node/{n}", tags),
    )
    return body("resources", page)


@router.get("/nodes/{node_id}/summaries")
async def node_summaries(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("compliance:ListSummaries", "node/{node_id}")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    found = await cp.compliance.node_summary(node_id)
    page = paginate(
        found,
        key=lambda s: (s["compliance_type"],),
        limit=limit,
        next_token=next_token,
        shape=(str,),
    )
    return body("summaries", page)


@router.get("/nodes/{node_id}/items")
async def items(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("compliance:ListItems", "node/{node_id}")],
    type: TypeQuery = None,
    status: StatusQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = await cp.compliance.list_items(
        node_id, compliance_type=type, status=status, limit=limit, next_token=next_token
    )
    return body("items", page)


@router.put("/nodes/{node_id}/items")
async def put_items(
    node_id: str,
    put: PutItems,
    cp: CP,
    _caller: Annotated[Caller, allow("compliance:PutItems", "node/{node_id}")],
) -> dict[str, Any]:
    """Replace every item of a Custom:NAME type on the node (SSM's PutComplianceItems)."""
    return await cp.compliance.put_custom(
        node_id,
        put.compliance_type,
        list(put.items),
        execution_id=put.execution_id,
        execution_type=put.execution_type,
        execution_time=None if put.execution_time is None else float(put.execution_time),
    )


@router.get("/nodes/{node_id}/history")
async def history(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("compliance:GetHistory", "node/{node_id}")],
    type: TypeQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The node's item changes (appeared, changed status, went away), newest first."""
    page = await cp.compliance.history(
        node_id, compliance_type=type, limit=limit, next_token=next_token
    )
    return body("changes", page)
