"""/v1/webhooks (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr = Field(max_length=2048)
    events: StrictStr = Field("command.*", max_length=128)
    secret: StrictStr | None = Field(None, max_length=256)


@router.post("", status_code=201)
async def create(
    body: CreateWebhook, cp: CP, caller: Annotated[Caller, allow("webhooks:Create", "webhook/*")]
) -> dict[str, Any]:
    """Events are delivered as the caller's token: only those it may read."""
    return await cp.webhooks.create(
        body.url, body.events, body.secret, created_by=caller.operator.token_id
    )


@router.get("")
async def list_webhooks(
    cp: CP, _caller: Annotated[Caller, allow("webhooks:List", "webhook/*")]
) -> dict[str, Any]:
    return {"webhooks": await cp.webhooks.list_all()}


@router.delete("/{webhook_id}")
async def delete(
    webhook_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("webhooks:Delete", "webhook/{webhook_id}")],
) -> dict[str, Any]:
    await cp.webhooks.delete(webhook_id)
    return {"deleted": webhook_id}
