"""Query parameters a route does not take are refused (400, naming the parameter), as SSM
refuses unknown parameters: ``limit=10`` misspelt ``limt=10`` must not silently return a
default page."""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from control_plane.errors import InvalidRequest


def _accepted(route: APIRoute) -> frozenset[str]:
    """Computed once per route and kept on it."""
    accepted: frozenset[str] | None = getattr(route, "_corral_query_names", None)
    if accepted is None:
        accepted = frozenset(_names(route.dependant))
        route._corral_query_names = accepted  # type: ignore[attr-defined]
    return accepted


def _names(dependant: Dependant) -> set[str]:
    """The query parameters of a route and of every dependency it has."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _names(sub)
    return names


async def known_query_only(request: HTTPConnection) -> None:
    """App-wide dependency: every query parameter must be one the route declares."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    accepted = _accepted(route)
    unknown = [name for name in request.query_params if name not in accepted]
    if unknown:
        takes = ", ".join(sorted(accepted)) or "none"
        raise InvalidRequest(f"unknown query parameter {unknown[0][:64]!r} (this takes: {takes})")
