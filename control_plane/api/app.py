"""The FastAPI application: routers, error mapping, request limits, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, Response

from agent import __version__, wire
from control_plane.api import (
    activations,
    agent,
    commands,
    documents,
    errors,
    events,
    groups,
    health,
    nodes,
    webhooks,
)
from control_plane.api.limits import BodyLimitMiddleware
from control_plane.services.hub import ControlPlane

log = logging.getLogger("corral.api")


def create_app(cp: ControlPlane) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await cp.start()
        async with asyncio.TaskGroup() as tg:
            background = tg.create_task(cp.run_background(), name="control-plane-background")
            try:
                yield
            finally:
                background.cancel()
                await cp.stop()

    app = FastAPI(
        title="Corral",
        version=__version__,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.control_plane = cp
    errors.install(app)
    for module in (health, activations, nodes, agent, commands, groups, webhooks, events):
        app.include_router(module.router)
    app.include_router(documents.router)

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        path = request.url.path
        level = (
            logging.DEBUG
            if path.startswith("/v1/agent/") or path in ("/healthz", "/readyz")
            else logging.INFO
        )
        log.log(
            level,
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                "identity": getattr(request.state, "identity", None),
            },
        )
        return response

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=cp.config.max_request_bytes,
        streamed={wire.ROUTE_OUTPUT + "/": wire.OUTPUT_BLOB_MAX_BYTES},
    )
    return app
