"""Liveness and readiness probes (unauthenticated; they reveal nothing)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from control_plane.api.authz import public
from control_plane.api.deps import CP
from control_plane.api.errors import error_response

router = APIRouter()


@router.get("/healthz", dependencies=[public("liveness probe; reveals nothing")])
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz", response_model=None, dependencies=[public("readiness probe; reveals nothing")]
)
async def readyz(cp: CP) -> dict[str, Any] | JSONResponse:
    if not cp.ready:
        return error_response(503, "not_ready", "server is starting or shutting down")
    try:
        await cp.db.ping()
    except Exception as exc:  # any database failure means "not ready", never a 500
        return error_response(503, "not_ready", f"database unavailable: {type(exc).__name__}")
    failing = cp.supervisor.failing()
    if failing:
        # Names and counts only (the errors are in the server's log): this route is public.
        names = ", ".join(f"{f['loop']} ({f['why']})" for f in failing)
        message = f"background loops failing: {names}"
        body = {"error": {"code": "not_ready", "message": message}, "loops": failing}
        return JSONResponse(body, status_code=503)
    return {"status": "ready"}
