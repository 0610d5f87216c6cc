"""What the server's refusals mean to the agent, whatever carried them: an HTTP response
(agent/http.py), a refused control-channel upgrade or an ``error`` frame on the channel
(agent/transport/websocket.py).  No HTTP client here: the websocket agent never loads one."""

from __future__ import annotations

import json
from typing import Any

from agent import wire
from agent.errors import CredentialRevoked, ServerRejected, TransportError


def refusal(status: int, body: bytes, reason: str = "") -> TransportError:
    """The error for a non-2xx answer with this status and (JSON error) body."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", reason or f"HTTP {status}"
    return rejection(status, code, message)


def rejection(status: int, code: str, message: str) -> TransportError:
    """5xx and 429 are worth retrying; the node's own credential refused stops the agent;
    any other 4xx is final for what was sent."""
    if status >= 500 or status == 429:
        return TransportError(f"server error {status}: {message}")
    if code in (wire.ERR_NODE_DEREGISTERED, wire.ERR_CREDENTIAL_EXPIRED):
        return CredentialRevoked(message, status, code)
    return ServerRejected(message, status, code)


def frame_error(error: Any) -> TransportError:
    """A channel ``error`` frame's ``{code, message, status}``."""
    info = error if isinstance(error, dict) else {}
    status = info.get("status")
    code = str(info.get("code", "invalid_request"))
    message = str(info.get("message", "refused"))
    if not isinstance(status, int) or not 400 <= status < 600:
        return TransportError(f"server error: {message}")
    return rejection(status, code, message)
