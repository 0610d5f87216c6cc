"""/v1/webhooks (operator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken, body
from control_plane.services.paging import paginate

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
    cp: CP,
    _caller: Annotated[Caller, allow("webhooks:List", "webhook/*")],
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
) -> dict[str, Any]:
    """Webhooks in the order they were made, a page at a time."""
    page = paginate(
        await cp.webhooks.list_all(),
        key=lambda w: (w["created_at"], w["webhook_id"]),
        limit=limit,
        next_token=next_token,
        shape=(str, str),
    )
    return body("webhooks", page)


@router.delete("/{webhook_id}")
async def delete(
    webhook_id: str,
    cp: CP,
    _caller: Annotated[Caller, allow("webhooks:Delete", "webhook/{webhook_id}")],
) -> dict[str, Any]:
    await cp.webhooks.delete(webhook_id)
    return {"deleted": webhook_id}
