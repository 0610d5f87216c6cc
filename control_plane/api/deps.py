"""Request dependencies: the control plane, and who is calling (operator or node)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control_plane.errors import MissingToken, RateLimited, TokenExpired, Unauthorized
from control_plane.security.node_tokens import NodeClaims
from control_plane.services.audit import AuditEvent
from control_plane.services.hub import ControlPlane
from control_plane.services.ratelimit import retry_after


async def control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


CP = Annotated[ControlPlane, Depends(control_plane)]


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


async def node(request: Request, cp: CP) -> NodeClaims:
    """A node's access token (agent routes), rate-limited per node.  A token that is not
    merely expired (forged, replayed from a deregistered node) is an audit entry."""
    try:
        claims = cp.registration.authenticate(bearer(request))
    except TokenExpired:
        raise
    except Unauthorized as exc:
        ip = request.client.host if request.client else None
        await cp.audit.record_standalone(
            AuditEvent(
                action="agent:Authenticate",
                resource=request.url.path[:200],
                outcome="denied",
                source_ip=ip,
                error=exc.message,
                request_id=request.scope.get("state", {}).get("request_id"),
            )
        )
        raise
    wait = cp.rate_limits.node(claims.node_id)
    if wait > 0:
        raise RateLimited(f"rate limit of node {claims.node_id} exceeded", retry_after(wait))
    request.state.identity = claims.node_id
    return claims


NodeDep = Annotated[NodeClaims, Depends(node)]
