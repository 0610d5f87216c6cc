"""How the agent reaches the control plane, chosen by name from one table.

Only the chosen transport's module is imported.  ``auto`` (the default) is the websocket
control channel with the HTTPS long-poll as its fallback; ``websocket`` and ``https`` force
one.  An ``mqtt`` transport plugs in here with the same ``Transport`` protocol and messages.
"""

from __future__ import annotations

import importlib

from agent.errors import ConfigError
from agent.transport.base import Transport, TransportFactory

TRANSPORTS: dict[str, str] = {
    "auto": "agent.transport.auto:AutoTransport",
    "websocket": "agent.transport.websocket:WebSocketTransport",
    "https": "agent.transport.https:HttpsTransport",
}


def load(name: str) -> TransportFactory:
    try:
        target = TRANSPORTS[name]
    except KeyError:
        raise ConfigError(f"unknown transport {name!r}; known: {', '.join(TRANSPORTS)}") from None
    module, _, attr = target.partition(":")
    factory: TransportFactory = getattr(importlib.import_module(module), attr)
    return factory


__all__ = ["TRANSPORTS", "Transport", "TransportFactory", "load"]
