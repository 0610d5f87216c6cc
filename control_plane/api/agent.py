"""/v1/agent/*: the routes agents speak (see agent/wire.py and docs/wire.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from agent import wire
from control_plane.api.deps import CP, NodeDep

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
    model_config = ConfigDict(extra="forbid")
    messages: list[dict[str, Any]] = Field(max_length=wire.MAX_MESSAGES_PER_BATCH)


@router.get(wire.ROUTE_CA)
async def ca(cp: CP) -> Response:
    """The CA certificate, unauthenticated: the caller checks it against its pinned hash."""
    return Response(cp.ca_pem, media_type="application/x-pem-file")


@router.post(wire.ROUTE_REGISTER, status_code=201)
async def register(body: RegisterBody, cp: CP) -> dict[str, Any]:
    return await cp.registration.register(**body.model_dump())


@router.post(wire.ROUTE_CHALLENGE)
async def challenge(body: ChallengeBody, cp: CP) -> dict[str, Any]:
    return cp.registration.challenge(body.node_id)


@router.post(wire.ROUTE_TOKEN)
async def token(body: TokenBody, cp: CP) -> dict[str, Any]:
    return await cp.registration.issue_token(**body.model_dump())


@router.post(wire.ROUTE_RENEW)
async def renew(body: RenewBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    return await cp.registration.renew(node.node_id, body.public_key, body.proof)


@router.post(wire.ROUTE_POLL)
async def poll(body: PollBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    wait = min(max(float(body.wait_seconds), 0.0), cp.config.poll_hold_seconds)
    messages = await cp.channel.poll(node.node_id, list(body.acks), wait)
    return {"messages": messages}


@router.post(wire.ROUTE_MESSAGES)
async def messages(body: MessagesBody, cp: CP, node: NodeDep) -> dict[str, Any]:
    return {"acked": await cp.channel.receive(node.node_id, body.messages)}


@router.put(wire.ROUTE_OUTPUT + "/{command_id}/{step_index}/{stream}")
async def upload_output(
    command_id: str, step_index: int, stream: str, request: Request, cp: CP, node: NodeDep
) -> dict[str, Any]:
    """A step's full output (at most 16 MiB), from the node that ran it; idempotent."""
    await cp.commands.invocation(command_id, node.node_id)  # 404 unless it targets this node
    path = cp.blobs.path(command_id, node.node_id, step_index, stream)
    size, digest = await cp.blobs.write(path, request.stream())
    return {"size": size, "sha256": digest}
