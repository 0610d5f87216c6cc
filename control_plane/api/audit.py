"""/v1/audit: the audit trail: search, export (JSON Lines), verify, the signing key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.api.paging import DEFAULT, Limit, NextToken
from control_plane.security.audit_chain import public_key_pem
from control_plane.services import paging

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Since = Annotated[float | None, Query(ge=0, le=1e11)]


@router.get("")
async def list_entries(
    cp: CP,
    _caller: Annotated[Caller, allow("audit:List", "audit/*")],
    since: Since = None,
    until: Since = None,
    identity: Annotated[str | None, Query(max_length=256)] = None,
    action: Annotated[str | None, Query(max_length=128)] = None,
    resource: Annotated[str | None, Query(max_length=2048)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    limit: Limit = DEFAULT,
    next_token: NextToken = None,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> dict[str, Any]:
    """Entries newest first, a page at a time (``cursor``/``next_cursor``, the sequence
    number, still work beside ``next_token``)."""
    after = paging.decode(next_token, (int,))
    if after is not None:
        cursor = str(after[0])
    page = await cp.audit.list_entries(
        since=since,
        until=until,
        identity=identity,
        action=action,
        resource=resource,
        outcome=outcome,
        limit=limit,
        cursor=cursor,
    )
    token = None if page.next_cursor is None else paging.encode((int(page.next_cursor),))
    return {"entries": page.entries, "next_token": token, "next_cursor": page.next_cursor}


class JsonLinesResponse(StreamingResponse):
    media_type = "application/jsonl"


@router.get("/export", response_model=None, response_class=JsonLinesResponse)
async def export(
    cp: CP,
    _caller: Annotated[Caller, allow("audit:Export", "audit/*", audit=True)],
    since: Since = None,
    until: Since = None,
) -> StreamingResponse:
    return JsonLinesResponse(cp.audit.export(since, until))


@router.get("/verify")
async def verify(
    cp: CP,
    _caller: Annotated[Caller, allow("audit:Verify", "audit/*")],
    since: Since = None,
    until: Since = None,
) -> dict[str, Any]:
    result = await cp.audit.verify(since, until)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "checkpoints": result.checkpoints,
        "first_bad_seq": result.first_bad_seq,
        "reason": result.reason,
    }


@router.get("/public-key", response_model=None, response_class=PlainTextResponse)
async def public_key(
    cp: CP, _caller: Annotated[Caller, allow("audit:Verify", "audit/*")]
) -> PlainTextResponse:
    """The key that signs checkpoints (``audit.pub``), for ``corral audit verify --file``."""
    key = await cp.audit.signing_key()
    return PlainTextResponse(public_key_pem(key.public_key).decode())
