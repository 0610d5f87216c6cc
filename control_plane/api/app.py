"""The FastAPI application: routers, error mapping, request limits, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

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
from control_plane.api.request_log import RequestLogMiddleware
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

    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=cp.config.max_request_bytes,
        streamed={wire.ROUTE_OUTPUT + "/": wire.OUTPUT_BLOB_MAX_BYTES},
    )
    return app
