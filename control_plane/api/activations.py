"""/v1/activations: hybrid activations (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.services.activations import DEFAULT_EXPIRY_SECONDS

router = APIRouter(prefix="/v1/activations", tags=["activations"])


class CreateActivation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field("", max_length=256)
    description: StrictStr = Field("", max_length=256)
    registration_limit: StrictInt = 1
    expires_in_seconds: StrictInt = DEFAULT_EXPIRY_SECONDS
    tags: dict[StrictStr, StrictStr] = Field(default_factory=dict)


@router.post("", status_code=201)
async def create(
    body: CreateActivation,
    cp: CP,
    _caller: Annotated[Caller, allow("activations:Create", "activation/*")],
) -> dict[str, Any]:
    return await cp.activations.create(**body.model_dump())


@router.get("")
async def list_activations(
    cp: CP, _caller: Annotated[Caller, allow("activations:List", "activation/*")]
) -> dict[str, Any]:
    return {"activations": await cp.activations.list_all()}


@router.get("/{activation_id}")
async def show(
    activation_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("activations:Get", "activation/{activation_id}")],
) -> dict[str, Any]:
    return await cp.activations.get(activation_id)


@router.delete("/{activation_id}")
async def delete(
    activation_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("activations:Delete", "activation/{activation_id}")],
) -> dict[str, Any]:
    await cp.activations.delete(activation_id)
    return {"deleted": activation_id}
