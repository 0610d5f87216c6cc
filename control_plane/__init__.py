"""Corral control plane: HTTP API, scheduler and storage (``pip install 'corral[server]'``)."""

from agent import __version__

__all__ = ["__version__"]
