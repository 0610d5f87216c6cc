"""What a service manager is: the seam between "this service, enabled or not, running or
stopped" and the node's init system.  systemd now; launchd (macOS) and the Windows Service
Control Manager later, behind the same Protocol.

A manager speaks its tool's machine formats (``systemctl show`` key=value lines,
``systemctl is-enabled``'s one word) and raises :class:`ServiceError` with a one-line
message when the init system refuses, fails or is not there.
"""

from __future__ import annotations

import re
from typing import Protocol

from agent.errors import AgentError

# systemd.unit(5): letters, digits, ':', '-', '_', '.', '@' and '\' (escapes), at most 255;
# not starting with '-' or '.'.  The document's allowedPattern is the same rule.
SERVICE_NAME = re.compile(r"[A-Za-z0-9_:@\\][A-Za-z0-9_:@.\\-]{0,254}")


class ServiceError(AgentError):
    """The init system refused, failed, or cannot be reached; one line saying which."""


class ServiceManager(Protocol):
    name: str  # "systemd", later "launchd", "windows"

    def enabled(self, service: str) -> bool:
        """Whether the service starts at boot; ServiceError when it cannot be either."""

    def set_enabled(self, service: str, enabled: bool) -> None:
        """Make it start at boot (or not); does not start or stop it."""

    def running(self, service: str) -> bool: ...

    def start(self, service: str) -> None:
        """Start it and check that it runs; ServiceError with the reason when it does not."""

    def stop(self, service: str) -> None: ...

    def restart(self, service: str) -> None:
        """Stop it and start it again (started when stopped); ServiceError when it does not
        run afterwards."""


def check_service_name(name: str) -> str:
    if not SERVICE_NAME.fullmatch(name):
        raise ServiceError(
            f"invalid service name {name[:80]!r}: letters, digits, ':', '-', '_', '.', '@', "
            "at most 255 characters"
        )
    return name
