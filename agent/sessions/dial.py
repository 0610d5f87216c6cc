"""The agent's end of a session dials the server's relay: a websocket to
``wss://<server>/v1/agent/sessions/{session_id}/stream`` with the node's token, the server's
pinned CA, frames of at most datachannel.MAX_FRAME bytes, no compression.

A refused upgrade says whether dialling again can help: 401 (the token expired or was
revoked) drops the cached token and dials again; 403 (not this node's session) and 404/410
(no such live session) are final, as the relay's close codes for the same are.  websockets is
imported on the first dial: an agent that never opens a session never loads it.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from agent import __version__, wire
from agent.errors import AgentError
from agent.sessions import datachannel as dc
from agent.sessions.endpoint import Connection, ConnectionGone, Dial

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.credentials import Credentials

OPEN_TIMEOUT_SECONDS: Final = 10.0
PING_SECONDS: Final = 20.0


def session_url(server_url: str, session_id: str) -> str:
    """The agent's stream URL of a session (the server's https:// URL as wss://)."""
    base = server_url.rstrip("/")
    return (
        "wss://" + base.split("://", 1)[1] + wire.ROUTE_AGENT_SESSION.format(session_id=session_id)
    )


def agent_dial(config: AgentConfig, credentials: Credentials, session_id: str) -> Dial:
    """How the daemon's sessions dial: the registration's server, its pinned CA, the node token."""
    from agent.tls import pinned_context

    url = session_url(credentials.registration.url, session_id)
    return websocket_dial(
        url,
        token=credentials.token,
        invalidate=credentials.invalidate,
        ssl_context=lambda: pinned_context(config.ca_file),
    )


def websocket_dial(
    url: str,
    *,
    token: Callable[[], Awaitable[str]] | None = None,
    invalidate: Callable[[], None] | None = None,
    ssl_context: Callable[[], ssl.SSLContext] | None = None,
) -> Dial:
    """A Dial for ``url`` (ws:// for tests on loopback; then no ``ssl_context``)."""

    async def dial() -> Connection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        try:
            headers = {"Authorization": f"Bearer {await token()}"} if token else {}
        except AgentError as exc:  # no token to be had now (server away): dial again later
            raise ConnectionGone(None, f"no node token: {exc.message}") from None
        try:
            return await connect(
                url,
                ssl=ssl_context() if ssl_context else None,
                additional_headers=headers,
                user_agent_header=f"corral-agent/{__version__}",
                open_timeout=OPEN_TIMEOUT_SECONDS,
                max_size=dc.MAX_FRAME,
                compression=None,
                ping_interval=PING_SECONDS,
                ping_timeout=PING_SECONDS,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401 and invalidate is not None:
                invalidate()
            raise refusal(status) from None
        except InvalidHandshake as exc:
            raise ConnectionGone(None, f"no session stream at {url}: {exc}") from None

    return dial


def refusal(status: int) -> ConnectionGone:
    """A refused upgrade as the endpoint reads it (final or not by its code)."""
    if status == 403:
        return ConnectionGone(
            wire.CLOSE_SESSION_FORBIDDEN, "the server refused this node the session (HTTP 403)"
        )
    if status in (404, 410):
        return ConnectionGone(
            wire.CLOSE_SESSION_UNKNOWN, f"the server knows no such live session (HTTP {status})"
        )
    if status == 401:
        return ConnectionGone(None, "the server refused the node's token (HTTP 401)")
    return ConnectionGone(None, f"the server refused the session's stream (HTTP {status})")


def describe_close(exc: Exception) -> ConnectionGone:
    """A websocket failure as the endpoint's ConnectionGone (with the relay's close code)."""
    from websockets.exceptions import ConnectionClosed

    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return ConnectionGone(exc.rcvd.code, exc.rcvd.reason)
    return ConnectionGone(None, str(exc) or type(exc).__name__)
