"""Inventory's tables (services/inventory/), on the shared metadata (store/metadata.py).

- ``inventory_items``: the latest item of every (node, type, item key); ``name``,
  ``version``, ``manager`` and ``version_key`` copy the attributes filters and summaries use
  most (indexed), ``data`` holds the whole item.
- ``inventory_types``: per (node, type): the content hash the items are, when captured.
- ``inventory_nodes``: each node's last gathering: every type's hash, its errors.
- ``inventory_parts``: parts of a type's content until every part is in.
- ``inventory_changes``: what was added, removed, changed (and when), kept for a retention.
- ``inventory_custom_types``: the attributes seen in each custom type (for the schema).
"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata


def _node(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "node_id",
        sa.String(20),
        sa.ForeignKey("nodes.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


inventory_items = sa.Table(
    "inventory_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _node(),
    sa.Column("type_name", sa.String(100), nullable=False),
    sa.Column("item_key", sa.String(600), nullable=False),
    sa.Column("name", sa.String(256), nullable=True),
    sa.Column("version", sa.String(256), nullable=True),
    sa.Column("manager", sa.String(16), nullable=True),
    sa.Column("version_key", sa.LargeBinary, nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
    sa.UniqueConstraint("node_id", "type_name", "item_key", name="uq_inventory_items_key"),
    # Name filters and Name/Version summaries; a version comparison rides on a Name filter
    # (alone, it reads the type's rows: no index of its own, which would cost ~40 bytes/row).
    sa.Index("ix_inventory_items_name", "type_name", "name", "version", "node_id"),
)

inventory_types = sa.Table(
    "inventory_types",
    metadata,
    _node(True),
    sa.Column("type_name", sa.String(100), primary_key=True),
    sa.Column("content_hash", sa.String(80), nullable=False),
    sa.Column("schema_version", sa.String(16), nullable=False),
    sa.Column("capture_time", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Index("ix_inventory_types_type", "type_name", "node_id"),
)

inventory_nodes = sa.Table(
    "inventory_nodes",
    metadata,
    _node(True),
    sa.Column("capture_time", sa.Float, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("hashes", sa.JSON, nullable=False),
    sa.Column("errors", sa.JSON, nullable=False),
)

inventory_parts = sa.Table(
    "inventory_parts",
    metadata,
    _node(True),
    sa.Column("type_name", sa.String(100), primary_key=True),
    sa.Column("content_hash", sa.String(80), primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("parts", sa.Integer, nullable=False),
    sa.Column("schema_version", sa.String(16), nullable=False),
    sa.Column("capture_time", sa.Float, nullable=False),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)

inventory_changes = sa.Table(
    "inventory_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    _node(),
    sa.Column("type_name", sa.String(100), nullable=False),
    sa.Column("time", sa.Float, nullable=False, index=True),
    # added | removed | changed | captured (a type's first content) | deleted (the type went)
    sa.Column("change", sa.String(16), nullable=False),
    sa.Column("item_key", sa.String(600), nullable=False),
    sa.Column("old", sa.JSON, nullable=True),
    sa.Column("new", sa.JSON, nullable=True),
    sa.Index("ix_inventory_changes_node", "node_id", "id"),
)

inventory_custom_types = sa.Table(
    "inventory_custom_types",
    metadata,
    sa.Column("type_name", sa.String(100), primary_key=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
