"""Request dependencies: the control plane, and who is calling (operator or node)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control_plane.errors import Unauthorized
from control_plane.security.node_tokens import NodeClaims
from control_plane.services.hub import ControlPlane
from control_plane.services.operators import Operator


async def control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


CP = Annotated[ControlPlane, Depends(control_plane)]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


async def operator(request: Request, cp: CP) -> Operator:
    who = await cp.operators.authenticate(_bearer(request))
    request.state.identity = who.name
    return who


async def node(request: Request, cp: CP) -> NodeClaims:
    claims = cp.registration.authenticate(_bearer(request))
    request.state.identity = claims.node_id
    return claims


OperatorDep = Annotated[Operator, Depends(operator)]
NodeDep = Annotated[NodeClaims, Depends(node)]
