"""/v1/packages: the agent packages, their signed manifest and signing key; /install.sh.

Who may read the packages routes (docs/install.md "Serving packages"): a node (its access
token), an operator whose policies allow ``packages:Read``, or the install script of a node
about to register, with ``X-Corral-Activation: <activation-id>:<activation-code>`` of a
usable activation (checked, not consumed).  ``/install.sh`` is public: it holds no secret.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from control_plane.api import deps
from control_plane.api.authz import Allow, client_ip, public
from control_plane.api.deps import CP
from control_plane.errors import ActivationInvalid, RateLimited
from control_plane.security.node_tokens import TOKEN_PREFIX as NODE_TOKEN_PREFIX
from control_plane.services.audit import AuditEvent
from control_plane.services.hub import ControlPlane
from control_plane.services.packages.access import HEADER, check_activation
from control_plane.services.packages.install_script import render
from control_plane.services.ratelimit import retry_after

ACTION = "packages:Read"
SIGNATURE_HEADER = "X-Corral-Signature"
SHA256_HEADER = "X-Corral-Sha256"

router = APIRouter(tags=["packages"])


# Response classes name each route's media type in the OpenAPI document.
class ManifestResponse(Response):
    media_type = "application/json"


class PackageBytes(Response):
    media_type = "application/octet-stream"


class ShellScript(PlainTextResponse):
    media_type = "text/x-shellscript"


class PackageReader(Allow):
    """``packages:Read`` for an operator token, or a node's token, or an activation."""

    def __init__(self) -> None:
        super().__init__(ACTION, "*")

    async def __call__(self, request: Request, cp: CP) -> Any:
        header = request.headers.get(HEADER)
        if header is not None:
            return await _activation(request, cp, header)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip().startswith(NODE_TOKEN_PREFIX):
            return await deps.node(request, cp)
        return await super().__call__(request, cp)


async def _activation(request: Request, cp: ControlPlane, header: str) -> str:
    """A usable activation's id; a wrong one is slowed down and audited as a bad token is."""
    ip = client_ip(request)
    wait = cp.rate_limits.auth.check(ip)
    if wait > 0:
        cp.rate_limits.auth.refused(ip)
        raise RateLimited("too many failed authentications from this address", retry_after(wait))
    try:
        activation_id = await check_activation(cp.db, cp.clock(), header)
    except ActivationInvalid as exc:
        cp.rate_limits.auth.failed(ip)
        await cp.audit.record_standalone(
            AuditEvent(
                action=ACTION,
                resource=request.url.path[:200],
                outcome="denied",
                source_ip=ip,
                error=exc.message,
                request_id=request.scope.get("state", {}).get("request_id"),
            )
        )
        raise
    request.state.identity = f"activation/{activation_id}"
    return activation_id


Reader = Annotated[Any, Depends(PackageReader())]


MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["schema", "key_id", "packages"],
    "properties": {
        "schema": {"type": "integer"},
        "key_id": {"type": "string"},
        "packages": {"type": "array", "items": {"type": "object"}},
    },
}


@router.get(
    "/v1/packages/manifest",
    response_class=ManifestResponse,
    responses={200: {"content": {"application/json": {"schema": MANIFEST_SCHEMA}}}},
)
async def manifest(cp: CP, _reader: Reader) -> ManifestResponse:
    """The manifest (canonical JSON), its Ed25519 signature in ``X-Corral-Signature``."""
    body, signature = await cp.packages.manifest()
    return ManifestResponse(body, headers={SIGNATURE_HEADER: signature})


@router.get("/v1/packages/manifest.sig", response_class=PlainTextResponse)
async def manifest_signature(cp: CP, _reader: Reader) -> PlainTextResponse:
    """The manifest's signature alone (base64), for ``openssl pkeyutl -verify``."""
    _body, signature = await cp.packages.manifest()
    return PlainTextResponse(signature + "\n")


@router.get("/v1/packages/signing-key", response_class=PlainTextResponse)
async def signing_key(cp: CP, _reader: Reader) -> PlainTextResponse:
    """The public key (PEM SubjectPublicKeyInfo) the manifest's signature verifies with."""
    return PlainTextResponse(cp.packages.signing_key().public_pem.decode())


@router.get("/v1/packages/files/{file}", response_class=PackageBytes)
async def package_file(file: str, cp: CP, _reader: Reader) -> FileResponse:
    """A package file, streamed, with its sha256 (as in the manifest)."""
    found = await cp.packages.file(file)
    return FileResponse(
        found.path,
        media_type="application/octet-stream",
        filename=found.package.file,
        headers={SHA256_HEADER: found.sha256},
    )


@router.get(
    "/install.sh",
    response_class=ShellScript,
    dependencies=[public("the install script; it holds no secret")],
)
async def install_script(request: Request, cp: CP) -> ShellScript:
    """packaging/install.sh, with this server's URL as its default ``--server``."""
    script = resources.files("control_plane.assets").joinpath("install.sh").read_text("utf-8")
    return ShellScript(render(script, request.headers.get("host", ""), cp.config))
