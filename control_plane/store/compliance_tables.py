"""Compliance's tables (services/compliance/).
On the shared metadata (store/metadata.py); store/schema.py re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata

# Items per (node, compliance type, item id), as SSM's PutComplianceItems leaves them: a put
# replaces every item of its type on its node.
compliance_items = sa.Table(
    "compliance_items",
    metadata,
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("compliance_type", sa.String(100), primary_key=True),
    sa.Column("item_id", sa.String(100), primary_key=True),
    sa.Column("title", sa.String(500), nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    # When the item took its current status (it appeared, or its status changed).
    sa.Column("status_since", sa.Float, nullable=False),
)

# One row per (node, compliance type) put: its execution summary and counts, so summaries
# never scan items (a put of no items leaves a row: the type is there, and compliant).
compliance_summaries = sa.Table(
    "compliance_summaries",
    metadata,
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("compliance_type", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("overall_severity", sa.String(16), nullable=False),
    # {"COMPLIANT": {"CRITICAL": n, ...}, "NON_COMPLIANT": {...}}: item counts.
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("execution_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("execution_type", sa.String(50), nullable=False, server_default=""),
    sa.Column("execution_time", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_compliance_summaries_type", "compliance_type", "node_id"),
)

# Every change of an item: it appeared (old_status NULL), its status changed, it went away
# (new_status NULL).  Kept for server.compliance_history_retention, then pruned.
compliance_history = sa.Table(
    "compliance_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("compliance_type", sa.String(100), nullable=False),
    sa.Column("item_id", sa.String(100), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("old_status", sa.String(16), nullable=True),
    sa.Column("new_status", sa.String(16), nullable=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("execution_id", sa.String(100), nullable=False, server_default=""),
    sa.Column("execution_type", sa.String(50), nullable=False, server_default=""),
    sa.Index("ix_compliance_history_node", "node_id", "id"),
    sa.Index("ix_compliance_history_time", "time"),
)
