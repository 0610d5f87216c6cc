"""Packages on the node: the provider seam (base.py), one module per package manager
(apt.py), and the registry choosing the one for this node (registry.py)."""

from __future__ import annotations

from agent.patching.base import PackageError, PackageProvider
from agent.patching.registry import package_provider, provider_name

__all__ = ["PackageError", "PackageProvider", "package_provider", "provider_name"]
