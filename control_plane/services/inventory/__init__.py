"""Inventory (docs/inventory.md): what agents gather, stored per node and type with its
history, queried across the fleet."""

from control_plane.services.inventory.ingest import Ingest
from control_plane.services.inventory.service import InventoryService

__all__ = ["Ingest", "InventoryService"]
