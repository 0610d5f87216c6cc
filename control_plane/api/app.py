"""The FastAPI application: routers, error mapping, request limits, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from agent import __version__, wire
from control_plane.api import (
    activations,
    agent,
    agent_channel,
    api_browser,
    associations,
    audit,
    audit_scope,
    calendars,
    commands,
    compliance,
    documents,
    errors,
    events,
    groups,
    health,
    inventory,
    metrics,
    nodes,
    packages,
    parameters,
    patching,
    sessions,
    tokens,
    webhooks,
    windows,
)
from control_plane.api.audit_scope import AuditMiddleware
from control_plane.api.limits import BodyLimitMiddleware
from control_plane.api.query import known_query_only
from control_plane.api.request_log import RequestLogMiddleware
from control_plane.services.hub import ControlPlane
from control_plane.services.metrics import Metrics

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
                # The periodic tasks end (their connections back in the pool) before the
                # database closes: disposing an engine under a connection still checked out
                # leaves that aiosqlite connection unclosed.
                background.cancel()
                await asyncio.wait([background])
                await cp.stop()

    app = FastAPI(
        title="Corral",
        version=__version__,
        openapi_url="/v1/openapi.json",
        docs_url=None,  # served offline by api_browser
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(known_query_only)],
    )
    app.state.control_plane = cp
    app.state.metrics = Metrics.attach(cp)
    errors.install(app)
    cp.db.before_commit = audit_scope.hook(cp.audit)
    for module in (
        health,
        api_browser,
        activations,
        nodes,
        agent,
        agent_channel,
        commands,
        groups,
        webhooks,
        events,
        tokens,
        audit,
        parameters,
        compliance,
        associations,
        calendars,
        windows,
        inventory,
        sessions,
        metrics,
        packages,
    ):
        app.include_router(module.router)
    for router in patching.routers:
        app.include_router(router)
    app.include_router(documents.router)

    app.add_middleware(AuditMiddleware, db=cp.db)
    app.add_middleware(RequestLogMiddleware, observe=app.state.metrics.observe_request)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=cp.config.max_request_bytes,
        streamed={wire.ROUTE_OUTPUT + "/": wire.OUTPUT_BLOB_MAX_BYTES},
    )
    return app
