"""The agent's HTTP client: httpx with TLS pinned to the server's CA, honouring proxies.

httpx reads ``HTTPS_PROXY``/``NO_PROXY`` from the environment (``trust_env``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from agent import __version__, wire
from agent.errors import CredentialRevoked, ServerRejected, TransportError

USER_AGENT = f"corral-agent/{__version__}"


def pinned_context(ca_file: Path) -> ssl.SSLContext:
    """Trust exactly the server's CA: no system roots are loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def make_client(
    url: str, verify: ssl.SSLContext | bool, read_timeout: float = 30.0
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        verify=verify,
        timeout=httpx.Timeout(10.0, read=read_timeout),
        headers={"user-agent": USER_AGENT},
        trust_env=True,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
    )


def describe(exc: httpx.HTTPError) -> str:
    reason = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = f"TLS verification failed: {cause.verify_message}"
    return reason


def check_response(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; otherwise the right error from agent.errors."""
    if response.is_success:
        try:
            return response.json()
        except ValueError:
            raise TransportError(
                f"server sent invalid JSON from {response.request.url.path}"
            ) from None
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_" + str(response.status_code), response.reason_phrase
    if response.status_code >= 500 or response.status_code == 429:
        raise TransportError(f"server error {response.status_code}: {message}")
    if code in (wire.ERR_NODE_DEREGISTERED, wire.ERR_CREDENTIAL_EXPIRED):
        raise CredentialRevoked(message, response.status_code, code)
    raise ServerRejected(message, response.status_code, code)
