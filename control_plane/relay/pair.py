"""One session's two ends, relayed.

Each end's websocket is served by ``Pair.serve`` until it drops; a frame from one end is shown
to ``watch`` (the session service records and times it) and passed to the other end, or
dropped while that end is away: the ends keep what they sent until it is acknowledged and
resend it after a reconnect (agent/sessions/endpoint.py), so the relay keeps nothing.  The
relay holds one frame per direction at most: sending to an end that does not read waits (the
websocket's write buffer is bounded), so the relay stops reading the other end, whose window
then fills and whose source (the PTY) stops being read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from agent import wire
from agent.sessions import datachannel as dc

log = logging.getLogger("corral.relay")

AGENT: Final = "agent"
CLIENT: Final = "client"
SIDES: Final = (AGENT, CLIENT)


class LinkClosed(Exception):
    """The websocket is gone."""


class Link(Protocol):
    async def send(self, data: bytes) -> None:
        """Send one binary message; LinkClosed if the websocket is gone."""

    async def receive(self) -> bytes | None:
        """The next binary message; None when the websocket closed; LinkClosed for text."""

    async def close(self, code: int, reason: str) -> None: ...


# (side, frame) -> the reason to end the session once the frame is passed on, or None.
Watch = Callable[[str, dc.Frame], Awaitable[str | None]]


def peer(side: str) -> str:
    return CLIENT if side == AGENT else AGENT


class Pair:
    def __init__(self, session_id: str, watch: Watch) -> None:
        self.session_id = session_id
        self.links: dict[str, Link | None] = {AGENT: None, CLIENT: None}
        self._watch = watch
        self.closed = False
        self.changed = asyncio.Event()  # an end attached or left

    def attached(self, side: str) -> bool:
        return self.links[side] is not None

    async def serve(self, side: str, link: Link) -> str | None:
        """Attach ``link`` as this end (a previous connection of it is closed), then relay."""
        await self.attach(side, link)
        return await self.relay(side, link)

    async def attach(self, side: str, link: Link) -> None:
        if self.closed:
            await _close(link, wire.CLOSE_SESSION_UNKNOWN, "the session has ended")
            return
        old, self.links[side] = self.links[side], link
        self.changed.set()
        if old is not None:
            await _close(old, wire.CLOSE_SESSION_REPLACED, "a newer connection of this end")

    async def relay(self, side: str, link: Link) -> str | None:
        """Relay what ``link`` sends until it drops; the reason the session ended, if a frame
        of this end (or the relay) ended it, else None (the end may come back)."""
        try:
            while not self.closed:
                try:
                    data = await link.receive()
                except LinkClosed:
                    await _close(link, wire.CLOSE_BAD_FRAME, "session frames are binary")
                    return None
                if data is None:
                    return None
                try:
                    frame = dc.decode(data)
                except dc.ProtocolError as exc:
                    await _close(link, wire.CLOSE_BAD_FRAME, str(exc)[:120])
                    return None
                if frame.type == dc.TERMINATE:
                    await _close(link, wire.CLOSE_BAD_FRAME, "only the relay may terminate")
                    return None
                ended = await self._watch(side, frame)
                other = self.links[peer(side)]
                if other is not None:
                    with contextlib.suppress(LinkClosed):
                        await other.send(data)
                if ended is not None:
                    await self.close(ended, notify=False)
                    return ended
            return None
        finally:
            if self.links[side] is link:
                self.links[side] = None
                self.changed.set()

    async def close(self, reason: str, *, notify: bool = True) -> None:
        """End the session: tell both ends (TERMINATE, unless the end's own frame ended it)
        and close their websockets."""
        if self.closed:
            return
        self.closed = True
        payload = json.dumps({"reason": reason[:500]}).encode()
        for side in SIDES:
            link = self.links[side]
            if link is None:
                continue
            if notify:
                with contextlib.suppress(LinkClosed, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await link.send(dc.Frame(dc.TERMINATE, payload).encode())
                    # (a TimeoutError: an end that does not read is closed all the same)
            await _close(link, wire.CLOSE_SESSION_ENDED, reason[:100])
        self.changed.set()


async def _close(link: Link, code: int, reason: str) -> None:
    with contextlib.suppress(LinkClosed, TimeoutError):
        async with asyncio.timeout(2.0):
            await link.close(code, reason)
