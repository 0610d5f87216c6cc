"""The service manager for this node, chosen here and nowhere else (by OS; its module is
imported only when chosen).  systemd is the only one today; launchd (macOS, ``launchctl``)
and the Windows Service Control Manager plug in as ``launchd.py`` / ``windows.py`` beside
``systemd.py`` and one row each in ``MANAGERS``."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Callable

from agent.service_managers.base import ServiceError, ServiceManager

# sys.platform prefix, the tool that must be on PATH, the module holding ``Manager``.
MANAGERS: tuple[tuple[str, str, str], ...] = (
    ("linux", "systemctl", "agent.service_managers.systemd"),
)


def service_manager(
    root: str = "/",
    *,
    timeout: float = 600.0,
    platform: str = sys.platform,
    which: Callable[[str], str | None] = shutil.which,
) -> ServiceManager:
    """The manager of this node's services (unit files under ``root``); each command it runs
    is killed after ``timeout`` seconds."""
    for prefix, tool, module in MANAGERS:
        if platform.startswith(prefix) and which(tool):
            manager: ServiceManager = importlib.import_module(module).Manager(root, timeout=timeout)
            return manager
    raise ServiceError(
        f"no supported service manager on this node ({platform}; Corral knows: systemd)"
    )
