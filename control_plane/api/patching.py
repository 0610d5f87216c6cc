"""/v1/baselines and /v1/patch: Patch Manager (docs/patching.md).

Baselines are resources of their own (``baseline/<id>``).  What nodes reported is authorized
on the node it is about, with its tags as condition keys (as inventory:Get): a token that may
not see a node never sees its patches, its summary, or its place in the fleet's counts.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from agent.inventory import schema
from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services import audit_context
from control_plane.services.paging import paginate

baselines_router = APIRouter(prefix="/v1/baselines", tags=["patching"])
patch_router = APIRouter(prefix="/v1/patch", tags=["patching"])

BASELINE = "baseline/{baseline_id}"
NODE = "node/{node_id}"
BaselineJSON = Annotated[dict[str, Any], Body(max_length=40)]
GroupQuery = Annotated[str | None, Query(min_length=1, max_length=256)]
StateQuery = Annotated[str | None, Query(min_length=1, max_length=32)]


class PatchGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patch_group: StrictStr = Field(min_length=1, max_length=256)


@baselines_router.post("", status_code=201)
async def create_baseline(
    baseline: BaselineJSON,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:CreateBaseline", "baseline/*")],
) -> dict[str, Any]:
    """CreatePatchBaseline: AWS's JSON (Name, OperatingSystem, ApprovalRules ...)."""
    return await cp.patching.baselines.create(baseline)


@baselines_router.get("")
async def list_baselines(
    cp: CP,
    caller: Annotated[Caller, allow("patch:ListBaselines", per_item=True)],
    operating_system: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """DescribePatchBaselines: the predefined baselines and the operators', by id."""
    found = await cp.patching.baselines.summaries(operating_system)
    page = paginate(
        found,
        key=lambda b: (str(b["BaselineId"]),),
        limit=limit,
        next_token=next_token,
        shape=(str,),
        visible=lambda b: caller.allowed("patch:ListBaselines", f"baseline/{b['BaselineId']}"),
    )
    return body("baselines", page)


@baselines_router.get("/{baseline_id}")
async def get_baseline(
    baseline_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:GetBaseline", BASELINE)],
) -> dict[str, Any]:
    return await cp.patching.baselines.get(baseline_id)


@baselines_router.patch("/{baseline_id}")
async def update_baseline(
    baseline_id: str,
    changes: BaselineJSON,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:UpdateBaseline", BASELINE)],
) -> dict[str, Any]:
    """UpdatePatchBaseline: the fields given replace the baseline's."""
    return await cp.patching.baselines.update(baseline_id, changes)


@baselines_router.delete("/{baseline_id}")
async def delete_baseline(
    baseline_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:DeleteBaseline", BASELINE)],
) -> dict[str, Any]:
    return await cp.patching.baselines.delete(baseline_id)


@baselines_router.post("/{baseline_id}/default")
async def set_default(
    baseline_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:SetDefaultBaseline", BASELINE)],
) -> dict[str, Any]:
    """RegisterDefaultPatchBaseline: the default of the baseline's operating system."""
    return await cp.patching.baselines.set_default(baseline_id)


@baselines_router.post("/{baseline_id}/patch-groups")
async def register_patch_group(
    baseline_id: str,
    group: PatchGroup,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:RegisterPatchGroup", BASELINE)],
) -> dict[str, Any]:
    """RegisterPatchBaselineForPatchGroup (one baseline per group and operating system)."""
    return await cp.patching.baselines.register_group(baseline_id, group.patch_group)


@baselines_router.delete("/{baseline_id}/patch-groups")
async def deregister_patch_group(
    baseline_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:DeregisterPatchGroup", BASELINE)],
    patch_group: Annotated[str, Query(min_length=1, max_length=256)],
) -> dict[str, Any]:
    return await cp.patching.baselines.deregister_group(baseline_id, patch_group)


@patch_router.get("/groups")
async def patch_groups(
    cp: CP, _caller: Annotated[Caller, allow("patch:ListPatchGroups")]
) -> dict[str, Any]:
    """DescribePatchGroups: each group's baseline per operating system."""
    return {"patch_groups": await cp.patching.baselines.groups()}


@patch_router.get("/defaults")
async def defaults(
    cp: CP, _caller: Annotated[Caller, allow("patch:ListBaselines", "baseline/*")]
) -> dict[str, Any]:
    """Each operating system's default baseline."""
    return {"defaults": await cp.patching.baselines.defaults()}


@patch_router.get("/summary")
async def fleet_summary(
    cp: CP,
    caller: Annotated[Caller, allow("patch:DescribeInstancePatchStates", per_item=True)],
    group: GroupQuery = None,
) -> dict[str, Any]:
    """DescribePatchGroupState over the nodes the caller may see (of one patch group)."""
    return await cp.patching.reports.fleet(
        group=group,
        visible=lambda n, tags: caller.allowed(
            "patch:DescribeInstancePatchStates", f"node/{n}", tags
        ),
    )


@patch_router.get("/states")
async def node_states(
    cp: CP,
    caller: Annotated[Caller, allow("patch:DescribeInstancePatchStates", per_item=True)],
    group: GroupQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Each visible node's last operation (DescribeInstancePatchStatesForPatchGroup)."""
    found = await cp.patching.reports.node_states(
        group=group,
        visible=lambda n, tags: caller.allowed(
            "patch:DescribeInstancePatchStates", f"node/{n}", tags
        ),
    )
    page = paginate(
        found, key=lambda r: (str(r["node_id"]),), limit=limit, next_token=next_token,
        shape=(str,),
    )  # fmt: skip
    return body("nodes", page)


@patch_router.get("/nodes/{node_id}")
async def node_summary(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:DescribeInstancePatchStates", NODE)],
) -> dict[str, Any]:
    """DescribeInstancePatchStates for one node."""
    return await cp.patching.reports.node(node_id)


@patch_router.get("/nodes/{node_id}/patches")
async def node_patches(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:DescribeInstancePatches", NODE)],
    state: StateQuery = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """DescribeInstancePatches: the node's patches and their states."""
    page = await cp.patching.reports.patches(
        node_id, state=state, limit=limit, next_token=next_token
    )
    return body("patches", page)


@patch_router.get("/nodes/{node_id}/history")
async def node_history(
    node_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("patch:GetHistory", NODE)],
    since: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The node's operations and patch state changes, newest first."""
    page = await cp.inventory.changes(
        node_id,
        since=since,
        type_name=(schema.PATCH_SUMMARY, schema.PATCH),
        limit=limit,
        next_token=next_token,
    )
    return body("changes", page)


@patch_router.get("/nodes/{node_id}/effective-patches")
async def effective_patches(
    node_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("patch:DescribeEffectivePatches", NODE)],
    baseline: Annotated[str, Query(min_length=1, max_length=128)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """What ``baseline`` would approve among the updates the node's last scan found."""
    await caller.require("patch:GetBaseline", f"baseline/{baseline}")
    audit_context.name_resource(f"node/{node_id}", baseline=baseline)
    return await cp.patching.effective(baseline, node_id, limit=limit, next_token=next_token)


routers = (baselines_router, patch_router)
