"""Which module gathers which inventory type on which platform: chosen here and nowhere else.

Each row names, per platform, the module whose ``collect(ctx)`` gathers the type; it is
imported only when that type is gathered on that platform.  A type with no module for this
platform is not gathered here (AWS:WindowsUpdate on Linux).  Custom inventory (``Custom:*``)
is read by agent/inventory/custom.py, and AWS:ComplianceItem / AWS:PatchSummary are the
server's own (schema.server_side).
"""

from __future__ import annotations

import importlib
from typing import Final

from agent.inventory import schema
from agent.inventory.base import Collect

_P: Final = "agent.inventory."

SOURCES: Final[dict[str, dict[str, str]]] = {
    schema.INSTANCE_INFORMATION: {
        "Linux": _P + "instance_information",
        "MacOS": _P + "instance_information",
        "Windows": _P + "instance_information",
    },
    schema.APPLICATION: {
        "Linux": _P + "application._linux",
        "MacOS": _P + "application._darwin",
        "Windows": _P + "application._windows",
    },
    schema.AWS_COMPONENT: {
        "Linux": _P + "aws_component",
        "MacOS": _P + "aws_component",
        "Windows": _P + "aws_component",
    },
    schema.FILE: {
        "Linux": _P + "file",
        "MacOS": _P + "file",
        "Windows": _P + "file",
    },
    schema.NETWORK: {
        "Linux": _P + "network._linux",
        "MacOS": _P + "network._darwin",
        "Windows": _P + "network._windows",
    },
    schema.SERVICE: {
        "Linux": _P + "service._linux",
        "MacOS": _P + "service._darwin",
        "Windows": _P + "service._windows",
    },
    schema.INSTANCE_DETAILED_INFORMATION: {
        "Linux": _P + "instance_detailed_information._linux",
        "MacOS": _P + "instance_detailed_information._darwin",
        "Windows": _P + "instance_detailed_information._windows",
    },
    schema.LISTENING_PORT: {
        "Linux": _P + "listening_port",
        "MacOS": _P + "listening_port",
        "Windows": _P + "listening_port",
    },
    schema.USER: {
        "Linux": _P + "user._linux",
        "MacOS": _P + "user._darwin",
        "Windows": _P + "user._windows",
    },
    schema.WINDOWS_UPDATE: {"Windows": _P + "windows_update"},
    schema.WINDOWS_REGISTRY: {"Windows": _P + "windows_registry"},
    schema.WINDOWS_ROLE: {"Windows": _P + "windows_role"},
}


def collector(type_name: str, platform: str) -> Collect | None:
    """The function gathering ``type_name`` on ``platform``; None where it is not gathered."""
    module = SOURCES.get(type_name, {}).get(platform)
    if module is None:
        return None
    found: Collect = importlib.import_module(module).collect
    return found
