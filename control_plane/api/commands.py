"""/v1/commands: Run Command (operator)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from agent import wire
from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.errors import (
    AccessDenied,
    CalendarClosed,
    InvalidRequest,
    NotFound,
    OutOfScope,
)
from control_plane.services import audit_context
from control_plane.services.targets import MAX_SPECS

router = APIRouter(prefix="/v1/commands", tags=["commands"])

MAX_NODE_FILTER = 1000


class SendCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: list[StrictStr] = Field(min_length=1, max_length=MAX_SPECS)
    document: StrictStr = Field("AWS-RunShellScript", max_length=128)
    document_version: StrictStr | None = Field(None, max_length=64)
    parameters: dict[StrictStr, Any] = Field(default_factory=dict)
    max_concurrency: StrictStr = Field("50", max_length=8)
    max_errors: StrictStr = Field("0", max_length=8)
    timeout_seconds: StrictInt = 3600
    delivery_timeout_seconds: StrictInt = 600
    comment: StrictStr = Field("", max_length=100)
    # Run only while every one of these change calendars is OPEN (else 409 calendar_closed).
    calendars: list[StrictStr] = Field(default_factory=list, max_length=10)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_ids: list[StrictStr] | None = Field(None, max_length=1000)


@router.post("", status_code=201)
async def send(
    body: SendCommand, cp: CP, caller: Annotated[Caller, allow("commands:Send", per_item=True)]
) -> dict[str, Any]:
    await caller.require("commands:Send", f"document/{body.document}")
    if body.calendars:
        await cp.calendars.check_names(body.calendars)
        closed = await cp.calendars.closed_reason(body.calendars, cp.clock())
        if closed is not None:
            raise CalendarClosed(f"{closed}: not run")
    command_id = str(uuid.uuid4())
    audit_context.name_resource(f"command/{command_id}")

    def check_targets(tags_by_node: dict[str, dict[str, str]]) -> list[str]:
        # How many nodes it reached: the entry's "nodes" names the first 1,000 (by id).
        audit_context.name_resource(f"command/{command_id}", node_count=len(tags_by_node))
        return caller.out_of_scope("commands:Send", tags_by_node)

    def audit_details(details: dict[str, Any]) -> None:
        # The entry names the nodes and documents it resolved to ("what ran on db-1?"):
        # `corral audit list --resource node/ID` finds it by any of those nodes.
        audit_context.name_resource(f"command/{command_id}", **details)

    try:
        return await cp.commands.send(
            requested_by=caller.operator.name,
            authorize=check_targets,
            authorize_parameter=lambda action, resource, kind: caller.allowed(
                action, resource, context={"parameter:type": kind}
            ),
            authorize_document=lambda name: caller.allowed("commands:Send", f"document/{name}"),
            audit_details=audit_details,
            command_id=command_id,
            **body.model_dump(exclude={"calendars"}),
        )
    except OutOfScope as exc:  # nothing was stored: record the refusal, then refuse
        await caller.refuse_nodes("commands:Send", exc.nodes)
        raise
    except AccessDenied as exc:  # a parameter it reads, a document it nests
        await caller.denied(exc.action, exc.resource, exc.message)
        raise


@router.get("")
async def list_commands(
    cp: CP,
    caller: Annotated[Caller, allow("commands:List", per_item=True)],
    status: Annotated[str | None, Query(max_length=32)] = None,
    node: Annotated[str | None, Query(max_length=32)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Commands newest first, those the caller may list, a page at a time."""
    page = await cp.commands.list_page(
        status,
        node,
        limit=limit,
        next_token=next_token,
        visible=lambda command_id: caller.allowed("commands:List", f"command/{command_id}"),
    )
    return body("commands", page)


@router.get("/{command_id}")
async def show(
    command_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("commands:Get", "command/{command_id}")],
) -> dict[str, Any]:
    """The command and every invocation; step output only on the nodes where the caller
    may ``commands:GetOutput`` (elsewhere ``output_omitted`` says so)."""
    return await cp.commands.get(command_id, caller.output_access(command_id))


@router.get("/{command_id}/invocations")
async def invocations(
    command_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("commands:Get", "command/{command_id}")],
    node: Annotated[list[str] | None, Query()] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """The command's invocations in send order, a page at a time (``node`` repeatable: only
    those nodes); step output as in the command's own view."""
    if node is not None:
        if len(node) > MAX_NODE_FILTER:
            raise InvalidRequest(f"at most {MAX_NODE_FILTER} node filters")
        bad = [n for n in node if not wire.NODE_ID_RE.match(n)]
        if bad:
            raise InvalidRequest(f"node {bad[0][:40]!r} is not a node id (mi-...)")
    page = await cp.commands.invocations(
        command_id,
        caller.output_access(command_id),
        node_ids=node,
        limit=limit,
        next_token=next_token,
    )
    return body("invocations", page)


@router.get("/{command_id}/invocations/{node_id}")
async def invocation(
    command_id: str,
    node_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("commands:Get", "command/{command_id}")],
) -> dict[str, Any]:
    """One node's invocation, with its output when the caller may read it."""
    return await cp.commands.invocation_detail(
        command_id, node_id, caller.output_access(command_id)
    )


@router.post("/{command_id}/cancel")
async def cancel(
    command_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("commands:Cancel", "command/{command_id}")],
    body: CancelBody | None = None,
) -> dict[str, Any]:
    return await cp.commands.cancel(command_id, (body.node_ids if body else None))


@router.get(
    "/{command_id}/invocations/{node_id}/output",
    response_model=None,
    response_class=PlainTextResponse,
)
async def output(
    command_id: str,
    node_id: str,
    cp: CP,
    caller: Annotated[Caller, allow("commands:GetOutput", "command/{command_id}")],
    step: Annotated[str | None, Query(max_length=128)] = None,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
) -> Response:
    """The step's full output from the blob store, else the (capped) record."""
    tags = await cp.nodes.tags_of(node_id) if caller.operator.uses_node_tags else None
    await caller.require("commands:GetOutput", f"node/{node_id}", tags)
    inv = await cp.commands.invocation(command_id, node_id)
    steps = inv["steps"]
    if not steps:
        return PlainTextResponse("")
    if step is None:
        index = len(steps) - 1 if len(steps) == 1 else None
        chosen = [(i, s) for i, s in enumerate(steps) if s.get("status") != wire.ST_SKIPPED]
        index = chosen[-1][0] if index is None and chosen else (index or 0)
    else:
        matches = [i for i, s in enumerate(steps) if s.get("name") == step]
        if not matches:
            raise NotFound(f"no step {step!r} in command {command_id} on {node_id}")
        index = matches[0]
    blob = cp.blobs.path(command_id, node_id, index, stream)
    if blob.exists():
        return StreamingResponse(cp.blobs.read_chunks(blob), media_type="text/plain; charset=utf-8")
    return PlainTextResponse(str(steps[index].get(stream, "")))
