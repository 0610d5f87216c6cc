"""/v1/docs: the API browser (Swagger UI), served whole by the server so that it works on a
site without internet.

Swagger UI's script and style sheet come from the ``fastapi-offline`` package, which ships
the current Swagger UI 5 assets (FastAPI's own page loads them from a public CDN, which
leaves a blank page offline).  The page and its assets are public, as the OpenAPI document
is: the browser sends each request's token itself (the Authorize button).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from control_plane import __version__
from control_plane.api.authz import public
from control_plane.errors import NotFound

router = APIRouter(include_in_schema=False)

PAGE = "/v1/docs"
ASSETS = PAGE + "/assets"
OPENAPI = "/v1/openapi.json"
_STATIC = Path(fastapi_offline.__file__).parent / "static"
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


@router.get(PAGE, dependencies=[public("the API browser page; the API it shows is public")])
async def page(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{OPENAPI}",
        title=f"Corral {__version__} API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
    )


@router.get(
    ASSETS + "/{name}", dependencies=[public("Swagger UI's script, style sheet and icon")]
)
async def asset(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    if media_type is None:
        raise NotFound(f"no asset {name[:64]!r}")
    return FileResponse(
        _STATIC / name, media_type=media_type, headers={"cache-control": "public, max-age=86400"}
    )
