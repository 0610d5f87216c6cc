"""/v1/associations: State Manager (operator).

Creating or changing an association is sending a command on a schedule: the caller must be
allowed the association action on the document it runs and on every node it targets now
(each with its tags), and on every document it nests and Parameter Store value it reads.
Execution targets carry step output only where the caller may ``commands:GetOutput``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import AccessDenied, InvalidRequest, OutOfScope
from control_plane.services import audit_context
from control_plane.services.associations import Spec
from control_plane.services.paging import paginate
from control_plane.services.targets import MAX_SPECS

router = APIRouter(prefix="/v1/associations", tags=["associations"])


class AssociationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document_version: StrictStr | None = Field(None, max_length=64)
    parameters: dict[StrictStr, Any] | None = None
    schedule: StrictStr | None = Field(None, max_length=256)
    timezone: StrictStr | None = Field(None, max_length=64)
    apply_only_at_cron_interval: StrictBool | None = None
    schedule_offset: StrictInt | None = None
    max_concurrency: StrictStr | None = Field(None, max_length=8)
    max_errors: StrictStr | None = Field(None, max_length=8)
    compliance_severity: StrictStr | None = Field(None, max_length=16)
    sync_compliance: StrictStr | None = Field(None, max_length=8)
    calendars: list[StrictStr] | None = Field(None, max_length=10)
    execution_timeout: StrictInt | None = None


class CreateAssociation(AssociationFields):
    name: StrictStr = Field(max_length=128)
    document: StrictStr = Field(max_length=128)
    targets: list[StrictStr] = Field(min_length=1, max_length=MAX_SPECS)


class UpdateAssociation(AssociationFields):
    name: StrictStr | None = Field(None, max_length=128)
    document: StrictStr | None = Field(None, max_length=128)
    targets: list[StrictStr] | None = Field(None, min_length=1, max_length=MAX_SPECS)
    expect_version: StrictInt | None = Field(None, ge=1)
    # Fields to set back to none (schedule, schedule_offset, document_version).
    clear: list[StrictStr] = Field(default_factory=list, max_length=5)


def _changes(fields: BaseModel) -> dict[str, Any]:
    return {
        k: v
        for k, v in fields.model_dump(exclude={"expect_version", "clear"}).items()
        if v is not None
    }


def _checks(caller: Caller, action: str, resource: str) -> dict[str, Any]:
    def nodes(tags_by_node: dict[str, dict[str, str]]) -> None:
        audit_context.name_resource(resource, node_count=len(tags_by_node))
        out = caller.out_of_scope(action, tags_by_node)
        if out:
            raise OutOfScope(out)

    return {
        "authorize_nodes": nodes,
        "authorize_parameter": lambda act, res, kind: caller.allowed(
            act, res, context={"parameter:type": kind}
        ),
        "authorize_document": lambda name: caller.allowed(action, f"document/{name}"),
    }


async def _guarded(caller: Caller, action: str, call: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await call
        return result
    except OutOfScope as exc:  # nothing was stored: record the refusal, then refuse
        await caller.refuse_nodes(action, exc.nodes)
        raise
    except AccessDenied as exc:
        await caller.denied(exc.action, exc.resource, exc.message)
        raise


@router.post("", status_code=201)
async def create(
    fields: CreateAssociation,
    cp: CP,
    caller: Annotated[Caller, allow("associations:Create", per_item=True)],
) -> dict[str, Any]:
    """Create an association; it applies at once unless it applies only at its cron
    interval.  Targets that match no node yet are accepted with a warning."""
    action = "associations:Create"
    await caller.require(action, f"document/{fields.document}")
    # Its id does not exist yet: creating one is allowed on association/* (the other routes
    # name association/ID).
    await caller.require(action, "association/*")
    audit_context.name_resource("association/*")
    spec = Spec(
        name=fields.name,
        document=fields.document,
        document_version=fields.document_version,
        targets=list(fields.targets),
    )
    for key, value in _changes(fields).items():
        if key not in ("name", "document", "targets"):
            setattr(spec, key, value)
    view = await _guarded(
        caller,
        action,
        cp.associations.create(
            spec,
            requested_by=caller.operator.name,
            stored=_name_it,
            **_checks(caller, action, "association/*"),
        ),
    )
    return view


def _name_it(row: dict[str, Any]) -> None:
    """The audit entry names the association and the version the call made."""
    audit_context.name_resource(f"association/{row['id']}", version=row["version"])


@router.get("")
async def list_associations(
    cp: CP,
    caller: Annotated[Caller, allow("associations:List", per_item=True)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = await cp.associations.list_page(
        limit=limit,
        next_token=next_token,
        visible=lambda row: caller.allowed("associations:List", f"association/{row['id']}"),
    )
    return body("associations", page)


@router.get("/{association_id}")
async def show(
    association_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("associations:Get", "association/{association_id}")],
) -> dict[str, Any]:
    return await cp.associations.get(association_id)


@router.patch("/{association_id}")
async def update(
    association_id: str,
    fields: UpdateAssociation,
    cp: CP,
    caller: Annotated[Caller, allow("associations:Update", "association/{association_id}")],
) -> dict[str, Any]:
    """A new version with the fields given; ``expect_version``: refused (409, nothing
    changes) unless the association is still at that version."""
    action = "associations:Update"
    changes = _changes(fields)
    for key in fields.clear:
        if key not in ("schedule", "schedule_offset", "document_version"):
            raise InvalidRequest(
                f"cannot clear {key[:40]!r}: only schedule, schedule_offset, document_version"
            )
        changes[key] = None
    if "document" in changes:
        await caller.require(action, f"document/{changes['document']}")
    view = await _guarded(
        caller,
        action,
        cp.associations.update(
            association_id,
            changes,
            expect_version=fields.expect_version,
            requested_by=caller.operator.name,
            stored=_name_it,
            **_checks(caller, action, f"association/{association_id}"),
        ),
    )
    return view


@router.delete("/{association_id}")
async def delete(
    association_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("associations:Delete", "association/{association_id}")],
) -> dict[str, Any]:
    return await cp.associations.delete(association_id)


@router.get("/{association_id}/versions")
async def versions(
    association_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("associations:ListVersions", "association/{association_id}")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Every version, newest first, a page at a time."""
    page = paginate(
        await cp.associations.versions(association_id),
        key=lambda v: (-int(v["version"]),),
        limit=limit,
        next_token=next_token,
        shape=(int,),
    )
    return body("versions", page)


@router.post("/{association_id}/run", status_code=201)
async def run_now(
    association_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("associations:StartOnce", "association/{association_id}")],
) -> dict[str, Any]:
    """Run it now on every node it targets (SSM StartAssociationsOnce)."""
    action = "associations:StartOnce"
    checks = _checks(caller, action, f"association/{association_id}")
    return await _guarded(
        caller, action, cp.associations.run_now(association_id, checks["authorize_nodes"])
    )


@router.get("/{association_id}/executions")
async def executions(
    association_id: str,
    cp: CP,
    _caller: Annotated[
        Caller, allow("associations:ListExecutions", "association/{association_id}")
    ],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    page = await cp.associations.executions(association_id, limit=limit, next_token=next_token)
    return body("executions", page)


@router.get("/{association_id}/executions/{execution_id}/targets")
async def execution_targets(
    association_id: str,
    execution_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("associations:ListExecutions", "association/{association_id}")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Each node of one execution; step output only where the caller may
    ``commands:GetOutput`` on that node."""
    page = await cp.associations.execution_targets(
        association_id,
        execution_id,
        caller.output_access(execution_id),
        limit=limit,
        next_token=next_token,
    )
    return body("targets", page)
