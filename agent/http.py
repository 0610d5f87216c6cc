"""The agent's HTTP client: httpx with TLS pinned to the server's CA, honouring proxies.

httpx reads ``HTTPS_PROXY``/``NO_PROXY`` from the environment (``trust_env``).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from agent import __version__
from agent.answers import refusal
from agent.errors import TransportError
from agent.tls import pinned_context

__all__ = ["USER_AGENT", "check_response", "describe", "make_client", "pinned_context"]

USER_AGENT = f"corral-agent/{__version__}"


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
    """The JSON body of a 2xx answer; otherwise the right error (agent/answers.py)."""
    if response.is_success:
        try:
            return response.json()
        except ValueError:
            raise TransportError(
                f"server sent invalid JSON from {response.request.url.path}"
            ) from None
    raise refusal(response.status_code, response.content, response.reason_phrase)
