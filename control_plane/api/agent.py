"""/v1/agent/*: the routes agents speak (see agent/wire.py and docs/wire.md)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from agent import wire
from control_plane.api.authz import client_ip, public
from control_plane.api.deps import CP, NodeDep
from control_plane.errors import Forbidden, Unauthorized
from control_plane.services import audit_context
from control_plane.services.audit import AuditEvent
from control_plane.services.channel import acked

router = APIRouter(tags=["agent"])


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    activation_id: StrictStr = Field(max_length=64)
    activation_code: StrictStr = Field(max_length=128)
    public_key: StrictStr = Field(max_length=64)
    name: StrictStr = Field("", max_length=256)
    hostname: StrictStr = Field("", max_length=256)


class ChallengeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: StrictStr = Field(max_length=32)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: StrictStr = Field(max_length=32)
    nonce: StrictStr = Field(max_length=512)
    timestamp: StrictInt
    signature: StrictStr = Field(max_length=128)


class RenewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: StrictStr = Field(max_length=64)
    proof: StrictStr = Field(max_length=128)


class PollBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    acks: list[StrictStr] = Field(default_factory=list, max_length=wire.MAX_MESSAGES_PER_BATCH)
    wait_seconds: StrictFloat | StrictInt = wire.POLL_HOLD_SECONDS


class MessagesBody(BaseModel):
    """Only the envelope is checked here: each element is checked (and rejected alone) by
    the channel."""

    model_config = ConfigDict(extra="forbid")
    messages: list[Any] = Field(max_length=wire.MAX_MESSAGES_PER_BATCH)


class PemResponse(Response):
    media_type = "application/x-pem-file"


@router.get(
    wire.ROUTE_CA,
    response_class=PemResponse,
    dependencies=[public("the CA certificate; callers pin its hash")],
)
async def ca(cp: CP) -> PemResponse:
    """The CA certificate, unauthenticated: the caller checks it against its pinned hash."""
    return PemResponse(cp.ca_pem)


def _event(http: Request, action: str, resource: str, **fields: Any) -> AuditEvent:
    return AuditEvent(
        action=action,
        resource=resource,
        outcome="allowed",
        source_ip=client_ip(http),
        request_id=http.scope.get("state", {}).get("request_id"),
        **fields,
    )


@router.post(
    wire.ROUTE_REGISTER, status_code=201, dependencies=[public("proves an activation code")]
)
async def register(body: RegisterBody, request: Request, cp: CP) -> dict[str, Any]:
    """Registration is audited with the change (the code itself never is)."""
    event = _event(
        request,
        "nodes:Register",
        f"activation/{body.activation_id}",
        request={"activation_id": body.activation_id, "name": body.name, "hostname": body.hostname},
    )
    audit_context.expect(event)
    try:
        registered = await cp.registration.register(**body.model_dump())
    except Forbidden as exc:
        audit_context.discard()  # the denial replaces the expected entry
        await cp.audit.record_standalone(replace(event, outcome="denied", error=exc.message))
        raise
    return {**registered, wire.KEY_MAX_REQUEST_BYTES: cp.config.max_request_bytes}


@router.post(wire.ROUTE_CHALLENGE, dependencies=[public("a nonce for the node's proof")])
async def challenge(body: ChallengeBody, cp: CP) -> dict[str, Any]:
    return cp.registration.challenge(body.node_id)


@router.post(wire.ROUTE_TOKEN, dependencies=[public("proves possession of the node's key")])
async def token(body: TokenBody, request: Request, cp: CP) -> dict[str, Any]:
    try:
        issued = await cp.registration.issue_token(**body.model_dump())
    except Unauthorized as exc:  # a forged or replayed proof, or a deregistered node
        event = _event(request, "agent:Authenticate", f"node/{body.node_id}")
        await cp.audit.record_standalone(replace(event, outcome="denied", error=exc.message))
        raise
    return {**issued, wire.KEY_MAX_REQUEST_BYTES: cp.config.max_request_bytes}


@router.post(wire.ROUTE_RENEW)
async def renew(body: RenewBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    return await cp.registration.renew(node.node_id, body.public_key, body.proof)


@router.post(wire.ROUTE_POLL)
async def poll(body: PollBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    wait = min(max(float(body.wait_seconds), 0.0), cp.config.poll_hold_seconds)
    messages = await cp.channel.poll(node.node_id, list(body.acks), wait)
    return {"messages": messages, wire.KEY_MAX_REQUEST_BYTES: cp.config.max_request_bytes}


@router.post(wire.ROUTE_MESSAGES)
async def messages(body: MessagesBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    """One result per message (accepted, duplicate, rejected with a reason), answered once
    what was stored has committed; ``acked`` for agents that read only that."""
    results = await cp.channel.receive(node.node_id, body.messages)
    return {wire.KEY_ACKED: acked(results), wire.KEY_RESULTS: results}


@router.put(wire.ROUTE_OUTPUT + "/{command_id}/{step_index}/{stream}")
async def upload_output(
    command_id: str, step_index: int, stream: str, request: Request, cp: CP, node: NodeDep
) -> dict[str, Any]:
    """A step's full output (at most 16 MiB), from the node that ran it; idempotent."""
    await cp.commands.invocation(command_id, node.node_id)  # 404 unless it targets this node
    path = cp.blobs.path(command_id, node.node_id, step_index, stream)
    size, digest = await cp.blobs.write(path, request.stream())
    return {"size": size, "sha256": digest}
