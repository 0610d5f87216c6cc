"""Inventory: the latest items per (node, type, key), each type's content hash, each node's
last gathering, parts in transit, the change history and the custom types' attributes.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _node(primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(
        "node_id",
        sa.String(20),
        sa.ForeignKey("nodes.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "inventory_items",
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
    )
    op.create_index(
        "ix_inventory_items_name", "inventory_items", ["type_name", "name", "version", "node_id"]
    )
    op.create_table(
        "inventory_types",
        _node(True),
        sa.Column("type_name", sa.String(100), primary_key=True),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("schema_version", sa.String(16), nullable=False),
        sa.Column("capture_time", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_inventory_types_type", "inventory_types", ["type_name", "node_id"])
    op.create_table(
        "inventory_nodes",
        _node(True),
        sa.Column("capture_time", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("hashes", sa.JSON, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
    )
    op.create_table(
        "inventory_parts",
        _node(True),
        sa.Column("type_name", sa.String(100), primary_key=True),
        sa.Column("content_hash", sa.String(80), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("schema_version", sa.String(16), nullable=False),
        sa.Column("capture_time", sa.Float, nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_inventory_parts_received_at", "inventory_parts", ["received_at"])
    op.create_table(
        "inventory_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _node(),
        sa.Column("type_name", sa.String(100), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("item_key", sa.String(600), nullable=False),
        sa.Column("old", sa.JSON, nullable=True),
        sa.Column("new", sa.JSON, nullable=True),
    )
    op.create_index("ix_inventory_changes_time", "inventory_changes", ["time"])
    op.create_index("ix_inventory_changes_node", "inventory_changes", ["node_id", "id"])
    op.create_table(
        "inventory_custom_types",
        sa.Column("type_name", sa.String(100), primary_key=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inventory_custom_types")
    op.drop_index("ix_inventory_changes_node", table_name="inventory_changes")
    op.drop_index("ix_inventory_changes_time", table_name="inventory_changes")
    op.drop_table("inventory_changes")
    op.drop_index("ix_inventory_parts_received_at", table_name="inventory_parts")
    op.drop_table("inventory_parts")
    op.drop_table("inventory_nodes")
    op.drop_index("ix_inventory_types_type", table_name="inventory_types")
    op.drop_table("inventory_types")
    op.drop_index("ix_inventory_items_name", table_name="inventory_items")
    op.drop_table("inventory_items")
