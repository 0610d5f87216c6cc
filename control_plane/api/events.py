"""GET /v1/events: command status changes as Server-Sent Events (operator).

``?command_id=ID`` filters to one command.  A subscriber sees the events it may read
(``events.read_permission``: ``commands:Get`` on the command, ``parameters:List`` on the
parameter; decided once per resource and stream); events carry statuses, never output.
A comment line after 15 s without an event for this subscriber keeps proxies from closing an
idle stream (and tells a follower to catch up on what a full queue may have dropped).  On
server shutdown the stream ends.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from control_plane.api.authz import Caller, allow
from control_plane.api.deps import CP
from control_plane.services.events import read_permission

router = APIRouter(tags=["events"])

KEEPALIVE_SECONDS = 15.0
REMEMBERED = 1000


@router.get("/v1/events", response_model=None)
async def events(
    cp: CP,
    caller: Annotated[Caller, allow("events:Subscribe", "*")],
    command_id: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    if command_id is not None:
        await caller.require("commands:Get", f"command/{command_id}")
    visible = _Visibility(caller)
    queue = cp.events.subscribe()

    async def stream() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        try:
            yield b": connected\n\n"
            last = loop.time()
            while not cp.presence.shutting_down.is_set():
                try:
                    async with asyncio.timeout_at(last + KEEPALIVE_SECONDS):
                        event = await queue.get()
                except TimeoutError:  # nothing for this subscriber for a while
                    yield b": keepalive\n\n"
                    last = loop.time()
                    continue
                if command_id and event.get("command_id") != command_id:
                    continue
                if not visible(event):
                    continue
                data = json.dumps(event, separators=(",", ":"))
                yield f"event: {event['type']}\ndata: {data}\n\n".encode()
                last = loop.time()
        finally:
            cp.events.unsubscribe(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
    )


class _Visibility:
    """May this subscriber see an event (decisions remembered for the most recent resources,
    so a busy stream evaluates each command's policy once)."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self._seen: OrderedDict[tuple[str, str], bool] = OrderedDict()

    def __call__(self, event: dict[str, Any]) -> bool:
        needed = read_permission(event)
        if needed is None:
            return False
        allowed = self._seen.get(needed)
        if allowed is None:
            allowed = self._caller.allowed(*needed)
            self._seen[needed] = allowed
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        return allowed
