"""GET /v1/events: command status changes as Server-Sent Events (operator).

``?command_id=ID`` filters to one command.  A comment line every 15 s keeps proxies from
closing an idle stream.  On server shutdown the stream ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0


@router.get("/v1/events", response_model=None)
async def events(
    cp: CP,
    _caller: Annotated[Caller, allow("events:Subscribe", "*")],
    command_id: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    queue = cp.events.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while not cp.presence.shutting_down.is_set():
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        event = await queue.get()
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if command_id and event.get("command_id") != command_id:
                    continue
                data = json.dumps(event, separators=(",", ":"))
                yield f"event: {event['type']}\ndata: {data}\n\n".encode()
        finally:
            cp.events.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )
