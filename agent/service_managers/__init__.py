"""Services on the node: the manager seam (base.py), one module per init system
(systemd.py), and the registry choosing the one for this node (registry.py)."""

from __future__ import annotations

from agent.service_managers.base import ServiceError, ServiceManager
from agent.service_managers.registry import service_manager

__all__ = ["ServiceError", "ServiceManager", "service_manager"]
