"""``GET /metrics``: the server's and the fleet's figures in Prometheus' text format.

Authorized like every route: a token whose policy allows ``metrics:Read`` (docs/monitoring.md
shows a scraper's); a scrape is a read, so it is not an audit entry.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from control_plane.api.authz import Caller, allow
from control_plane.services.metrics import CONTENT_TYPE, Metrics

router = APIRouter()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, _caller: Annotated[Caller, allow("metrics:Read")]) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(await registry.render(), media_type=CONTENT_TYPE)
