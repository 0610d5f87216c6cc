"""/v1/activations: hybrid activations (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services.activations import DEFAULT_EXPIRY_SECONDS
from control_plane.services.paging import paginate

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
    cp: CP,
    _caller: Annotated[Caller, allow("activations:List", "activation/*")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Activations in the order they were made, a page at a time."""
    page = paginate(
        await cp.activations.list_all(),
        key=lambda a: (a["created_at"], a["activation_id"]),
        limit=limit,
        next_token=next_token,
        shape=(str, str),
    )
    return body("activations", page)


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
