"""``GET /v1/agent/connect``: the node's websocket control channel (docs/wire.md).

The upgrade carries the node's access token (``Authorization: Bearer``), or only the node's
id (``x-corral-node-id``) and the node signs in on the channel (challenge, auth, authorized:
no HTTPS request before it).  A refused upgrade is answered as plain HTTP with the API's
error body (401 ``token_expired``, ``node_deregistered``, ...), so an agent reads it exactly
as it reads a refused request.  Then services/agent_link.py serves the channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, WebSocket
from starlette.websockets import WebSocketDisconnect

from agent import wire
from control_plane.api.deps import node_channel
from control_plane.api.errors import error_response
from control_plane.errors import CorralError, RateLimited
from control_plane.security.node_tokens import NodeClaims
from control_plane.services.agent_link import AgentLink, LinkGone
from control_plane.services.audit import AuditEvent
from control_plane.services.hub import ControlPlane

router = APIRouter(tags=["agent"])


@router.websocket(wire.ROUTE_CONNECT)
async def connect(
    websocket: WebSocket, claims: Annotated[NodeClaims | str | CorralError, Depends(node_channel)]
) -> None:
    if isinstance(claims, CorralError):
        refusal = error_response(claims.status, claims.code, claims.message)
        if isinstance(claims, RateLimited):
            refusal.headers["retry-after"] = str(claims.retry_after)
        await websocket.send_denial_response(refusal)
        return
    cp: ControlPlane = websocket.app.state.control_plane
    ticket = cp.openings.enter()
    if ticket is None:  # too many signing in at once: come back later (services/openings.py)
        refusal = error_response(
            503, wire.ERR_SERVER_BUSY, "too many control channels opening; try again later"
        )
        refusal.headers["retry-after"] = str(cp.openings.retry_after())
        await websocket.send_denial_response(refusal)
        return
    try:
        await _serve(websocket, cp, claims, ticket.release)
    finally:
        ticket.release()


async def _serve(
    websocket: WebSocket, cp: ControlPlane, claims: NodeClaims | str, opened: Callable[[], None]
) -> None:
    await websocket.accept()

    async def send(text: str) -> None:
        try:
            await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkGone from exc

    async def close(code: int, reason: str) -> None:
        try:
            await websocket.close(code, reason)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkGone from exc

    async def denied(reason: str) -> None:  # a forged or replayed proof, as POST token
        node_id = claims if isinstance(claims, str) else claims.node_id
        await cp.audit.record_standalone(
            AuditEvent(
                action="agent:Authenticate",
                resource=f"node/{node_id}",
                outcome="denied",
                source_ip=websocket.client.host if websocket.client else None,
                error=reason,
            )
        )

    link = AgentLink(
        claims=claims,
        denied=denied,
        channel=cp.channel,
        presence=cp.presence,
        registration=cp.registration,
        rate_limits=cp.rate_limits,
        clock=cp.clock,
        send=send,
        close=close,
        max_request_bytes=cp.config.max_request_bytes,
        opened=opened,
    )
    await link.run(_frames(websocket, link))


async def _frames(websocket: WebSocket, link: AgentLink) -> AsyncIterator[str]:
    """The text frames the agent sends, until it leaves; a binary frame closes the channel."""
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await link.refuse("frame refused: binary frames are not accepted (JSON text only)")
            return
        yield text
