"""Every route declares who may call it: an action and resource (Allow), a node's token, or
why it is public.  A new route that declares nothing fails here, so it cannot ship
unauthorized."""

from __future__ import annotations

from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from agent import wire
from control_plane.api import authz, deps
from control_plane.api.app import create_app
from control_plane.api.authz import Allow, Public
from control_plane.api.query import known_query_only
from control_plane.config import load_config
from control_plane.security.actions import ACTIONS
from control_plane.services.hub import ControlPlane
from tests.unit.conftest import ServerDir

# Reads that take a body (nothing changes, so nothing to audit).
READS_BY_POST = {"/v1/policies/simulate"}
# Public routes outside /v1/agent/: health, and the install script (it holds no secret).
PUBLIC_PATHS = {"/healthz", "/readyz", "/install.sh"}
# FastAPI's own route: the OpenAPI document (public by design).
FRAMEWORK_PATHS = {"/v1/openapi.json"}


def _declarations(dependant: Dependant) -> list[Any]:
    found: list[Any] = []
    for sub in dependant.dependencies:
        call = sub.call
        if isinstance(call, Allow | Public) or call in (
            deps.node,
            deps.node_channel,
            authz.socket_caller,
        ):
            found.append(call)
        found.extend(_declarations(sub))
    return found


def _walk(routes: list[Any], prefix: str = "", sockets: list[Any] | None = None) -> list[APIRoute]:
    """Every API route, through included routers (newer FastAPI keeps them nested);
    websocket routes go to ``sockets`` when given."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif isinstance(route, APIWebSocketRoute):
            if sockets is not None:
                sockets.append(route)
        elif hasattr(route, "original_router"):  # an included router
            context = route.include_context
            extra = [d for d in context.dependencies if d.dependency is not known_query_only]
            assert not extra, "declare authorization on routes, not routers"
            found.extend(_walk(route.original_router.routes, prefix + context.prefix, sockets))
        else:
            assert getattr(route, "path", "") in FRAMEWORK_PATHS, route
    return found


def _routes(server_dir: ServerDir) -> list[APIRoute]:
    app = create_app(ControlPlane(load_config(server_dir.path)))
    return _walk(list(app.routes))


def test_every_route_declares_its_authorization(server_dir: ServerDir) -> None:
    routes = _routes(server_dir)
    assert len(routes) > 40
    undeclared = []
    for route in routes:
        found = _declarations(route.dependant)
        if len(found) != 1:
            undeclared.append(f"{sorted(route.methods)} {route.path}: {found}")
    assert not undeclared, "routes without exactly one authorization declaration:\n" + "\n".join(
        undeclared
    )


def test_declared_actions_are_in_the_catalog_and_writes_are_audited(
    server_dir: ServerDir,
) -> None:
    for route in _routes(server_dir):
        for decl in _declarations(route.dependant):
            if isinstance(decl, Allow):
                assert decl.action in ACTIONS
                if route.methods & {"POST", "PUT", "DELETE", "PATCH"}:
                    reads = route.path in READS_BY_POST
                    assert decl.audited or reads, f"{route.path} changes something, not audited"
            if isinstance(decl, Public):
                assert decl.reason


def test_agent_routes_use_node_tokens_or_are_public(server_dir: ServerDir) -> None:
    for route in _routes(server_dir):
        if route.path.startswith("/v1/agent/"):
            (decl,) = _declarations(route.dependant)
            assert decl is deps.node or isinstance(decl, Public), route.path
        elif route.path not in PUBLIC_PATHS and not route.path.startswith("/v1/docs"):
            (decl,) = _declarations(route.dependant)
            assert isinstance(decl, Allow), route.path


def test_websocket_routes_authenticate_the_node(server_dir: ServerDir) -> None:
    app = create_app(ControlPlane(load_config(server_dir.path)))
    sockets: list[APIWebSocketRoute] = []
    _walk(list(app.routes), sockets=sockets)
    paths = sorted(s.path for s in sockets)
    assert paths == sorted(
        ["/v1/agent/connect", wire.ROUTE_AGENT_SESSION, wire.ROUTE_SESSION_STREAM]
    )
    for socket in sockets:
        # The node's websockets take its token; a session's client end, an operator's.
        expected = (
            authz.socket_caller if socket.path == wire.ROUTE_SESSION_STREAM else (deps.node_channel)
        )
        assert _declarations(socket.dependant) == [expected], socket.path


def test_only_asking_who_you_are_is_every_tokens_right(server_dir: ServerDir) -> None:
    """An implicit action skips policy evaluation: only identity:WhoAmI is one, and only the
    routes that answer with the caller's own identity declare it."""
    assert {name for name, action in ACTIONS.items() if action.implicit} == {"identity:WhoAmI"}
    implicit = {
        (method, route.path)
        for route in _routes(server_dir)
        for decl in _declarations(route.dependant)
        if isinstance(decl, Allow) and decl.implicit
        for method in route.methods
    }
    assert implicit == {("GET", "/v1/whoami"), ("POST", "/v1/login")}
