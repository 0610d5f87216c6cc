"""Request dependencies: the control plane, and who is calling (operator or node)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket
from starlette.requests import HTTPConnection

from agent import wire
from control_plane.errors import (
    CorralError,
    MissingToken,
    RateLimited,
    TokenExpired,
    Unauthorized,
)
from control_plane.security.node_tokens import NodeClaims
from control_plane.services.audit import AuditEvent
from control_plane.services.hub import ControlPlane
from control_plane.services.ratelimit import retry_after


async def control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


CP = Annotated[ControlPlane, Depends(control_plane)]


def bearer(request: HTTPConnection) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


async def node(request: Request, cp: CP) -> NodeClaims:
    """A node's access token (agent routes), rate-limited per node.  A token that is not
    merely expired (forged, replayed from a deregistered node) is an audit entry."""
    claims = await _node_claims(request, cp)
    request.state.identity = claims.node_id
    return claims


async def node_channel(websocket: WebSocket) -> NodeClaims | str | CorralError:
    """Who opens a control channel (``/v1/agent/connect``): the claims of its access token
    (checked as ``node`` checks them), or, with no token but the node's id in the
    ``x-corral-node-id`` header, that id (a registered node that may sign in on the channel;
    rate-limited the same).  A refusal is returned (the route answers it as HTTP), not
    raised."""
    cp: ControlPlane = websocket.app.state.control_plane
    node_id = websocket.headers.get(wire.HEADER_NODE_ID)
    try:
        if node_id is None or "authorization" in websocket.headers:
            return await _node_claims(websocket, cp)
        cp.registration.check_node(node_id)
        wait = cp.rate_limits.node(node_id)
        if wait > 0:
            raise RateLimited(f"rate limit of node {node_id} exceeded", retry_after(wait))
        return node_id
    except CorralError as exc:
        return exc


async def _node_claims(conn: HTTPConnection, cp: ControlPlane) -> NodeClaims:
    try:
        claims = cp.registration.authenticate(bearer(conn))
    except TokenExpired:
        raise
    except Unauthorized as exc:
        ip = conn.client.host if conn.client else None
        await cp.audit.record_standalone(
            AuditEvent(
                action="agent:Authenticate",
                resource=conn.url.path[:200],
                outcome="denied",
                source_ip=ip,
                error=exc.message,
                request_id=conn.scope.get("state", {}).get("request_id"),
            )
        )
        raise
    wait = cp.rate_limits.node(claims.node_id)
    if wait > 0:
        raise RateLimited(f"rate limit of node {claims.node_id} exceeded", retry_after(wait))
    return claims


NodeDep = Annotated[NodeClaims, Depends(node)]
