"""Compliance: items per (node, compliance type, item id), a summary row per (node, type) put,
and the history of every item's status changes (pruned after a retention).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _node_id(primary_key: bool) -> sa.Column[str]:
    return sa.Column(
        "node_id",
        sa.String(20),
        sa.ForeignKey("nodes.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "compliance_items",
        _node_id(True),
        sa.Column("compliance_type", sa.String(100), primary_key=True),
        sa.Column("item_id", sa.String(100), primary_key=True),
        sa.Column("title", sa.String(500), nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("status_since", sa.Float, nullable=False),
    )
    op.create_table(
        "compliance_summaries",
        _node_id(True),
        sa.Column("compliance_type", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("overall_severity", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("execution_id", sa.String(100), nullable=False, server_default=""),
        sa.Column("execution_type", sa.String(50), nullable=False, server_default=""),
        sa.Column("execution_time", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_compliance_summaries_type", "compliance_summaries", ["compliance_type", "node_id"]
    )
    op.create_table(
        "compliance_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _node_id(False),
        sa.Column("compliance_type", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(100), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("old_status", sa.String(16), nullable=True),
        sa.Column("new_status", sa.String(16), nullable=True),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("execution_id", sa.String(100), nullable=False, server_default=""),
        sa.Column("execution_type", sa.String(50), nullable=False, server_default=""),
    )
    op.create_index("ix_compliance_history_node", "compliance_history", ["node_id", "id"])
    op.create_index("ix_compliance_history_time", "compliance_history", ["time"])


def downgrade() -> None:
    op.drop_index("ix_compliance_history_time", table_name="compliance_history")
    op.drop_index("ix_compliance_history_node", table_name="compliance_history")
    op.drop_table("compliance_history")
    op.drop_index("ix_compliance_summaries_type", table_name="compliance_summaries")
    op.drop_table("compliance_summaries")
    op.drop_table("compliance_items")
