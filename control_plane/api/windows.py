"""/v1/windows: Maintenance Windows (operator).  Registering a task is also checked as
commands:Send on its document: a window runs its tasks as "window:<id>", so whoever registers
one must be allowed to send that document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import AccessDenied, NotFound
from control_plane.services import audit_context
from control_plane.services.targets import MAX_SPECS
from control_plane.services.windows.model import new_window_id

router = APIRouter(prefix="/v1/windows", tags=["maintenance windows"])

WINDOW = "window/{window_id}"


class CreateWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(max_length=256)
    schedule: StrictStr = Field(max_length=256)
    duration: StrictInt
    cutoff: StrictInt
    schedule_timezone: StrictStr = Field("UTC", max_length=64)
    schedule_offset: StrictInt | None = None
    start_date: StrictStr | None = Field(None, max_length=64)
    end_date: StrictStr | None = Field(None, max_length=64)
    allow_unassociated_targets: StrictBool = False
    description: StrictStr = Field("", max_length=128)
    enabled: StrictBool = True


class RegisterTargets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: list[StrictStr] = Field(min_length=1, max_length=MAX_SPECS)
    name: StrictStr = Field("", max_length=256)
    owner_information: StrictStr = Field("", max_length=128)


class RegisterTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_type: StrictStr = Field("RUN_COMMAND", max_length=32)
    document: StrictStr = Field(max_length=128)
    document_version: StrictStr | None = Field(None, max_length=64)
    targets: list[StrictStr] = Field(default_factory=list, max_length=MAX_SPECS)
    parameters: dict[StrictStr, Any] = Field(default_factory=dict)
    priority: StrictInt = 1
    max_concurrency: StrictStr = Field("50", max_length=8)
    max_errors: StrictStr = Field("0", max_length=8)
    cutoff_behavior: StrictStr = Field("CONTINUE_TASK", max_length=16)
    timeout_seconds: StrictInt = 3600
    name: StrictStr = Field("", max_length=256)


@router.post("", status_code=201)
async def create(
    body: CreateWindow,
    cp: CP,
    caller: Annotated[Caller, allow("windows:Create", per_item=True)],
) -> dict[str, Any]:
    window_id = new_window_id()
    await caller.require("windows:Create", f"window/{window_id}")
    audit_context.name_resource(f"window/{window_id}")
    return await cp.windows.create(
        created_by=caller.operator.name, window_id=window_id, **body.model_dump()
    )


@router.get("")
async def list_windows(
    cp: CP,
    caller: Annotated[Caller, allow("windows:List", per_item=True)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Windows by id, those the caller may list, a page at a time."""
    page = await cp.windows.list_page(
        limit=limit,
        next_token=next_token,
        visible=lambda window_id: caller.allowed("windows:List", f"window/{window_id}"),
    )
    return body("windows", page)


@router.get("/{window_id}")
async def show(
    window_id: str, cp: CP, _caller: Annotated[Caller, allow("windows:Get", WINDOW)]
) -> dict[str, Any]:
    """The window with its registered targets and tasks."""
    return await cp.windows.get(window_id)


@router.post("/{window_id}/enable")
async def enable(
    window_id: str, cp: CP, _caller: Annotated[Caller, allow("windows:Update", WINDOW)]
) -> dict[str, Any]:
    return await cp.windows.set_enabled(window_id, True)


@router.post("/{window_id}/disable")
async def disable(
    window_id: str, cp: CP, _caller: Annotated[Caller, allow("windows:Update", WINDOW)]
) -> dict[str, Any]:
    return await cp.windows.set_enabled(window_id, False)


@router.delete("/{window_id}")
async def delete(
    window_id: str, cp: CP, _caller: Annotated[Caller, allow("windows:Delete", WINDOW)]
) -> dict[str, Any]:
    await cp.windows.delete(window_id)
    return {"deleted": window_id}


@router.post("/{window_id}/targets", status_code=201)
async def register_targets(
    window_id: str,
    body: RegisterTargets,
    cp: CP,
    _caller: Annotated[Caller, allow("windows:RegisterTargets", WINDOW)],
) -> dict[str, Any]:
    return await cp.windows.register_targets(
        window_id, list(body.targets), name=body.name, owner_information=body.owner_information
    )


@router.delete("/{window_id}/targets/{target_id}")
async def deregister_target(
    window_id: str,
    target_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("windows:DeregisterTarget", WINDOW)],
) -> dict[str, Any]:
    await cp.windows.deregister_target(window_id, target_id)
    return {"deregistered": target_id}


@router.post("/{window_id}/tasks", status_code=201)
async def register_task(
    window_id: str,
    body: RegisterTask,
    cp: CP,
    caller: Annotated[Caller, allow("windows:RegisterTask", per_item=True)],
) -> dict[str, Any]:
    await caller.require("windows:RegisterTask", f"window/{window_id}")
    await caller.require("windows:RegisterTask", f"document/{body.document}")
    await caller.require("commands:Send", f"document/{body.document}")
    audit_context.name_resource(f"window/{window_id}")
    try:
        return await cp.windows.register_task(
            window_id,
            authorize_parameter=lambda action, resource, kind: caller.allowed(
                action, resource, context={"parameter:type": kind}
            ),
            authorize_document=lambda name: caller.allowed("commands:Send", f"document/{name}"),
            **body.model_dump(),
        )
    except AccessDenied as exc:  # a parameter it reads, a document it nests
        await caller.denied(exc.action, exc.resource, exc.message)
        raise


@router.delete("/{window_id}/tasks/{task_id}")
async def deregister_task(
    window_id: str,
    task_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("windows:DeregisterTask", WINDOW)],
) -> dict[str, Any]:
    await cp.windows.deregister_task(window_id, task_id)
    return {"deregistered": task_id}


@router.get("/{window_id}/executions")
async def executions(
    window_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("windows:ListExecutions", WINDOW)],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The window's executions, newest first."""
    page = await cp.windows.executions(window_id, limit=limit, next_token=next_token)
    return body("executions", page)


@router.get("/{window_id}/executions/{execution_id}")
async def execution(
    window_id: str,
    execution_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("windows:GetExecution", WINDOW)],
) -> dict[str, Any]:
    """One execution and its task executions (with the command ids they sent)."""
    found = await cp.windows.execution(execution_id)
    if found["window_id"] != window_id:
        raise NotFound(f"window {window_id} has no execution {execution_id}")
    return found
