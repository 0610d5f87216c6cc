"""State Manager: associations, their versions, executions and per-node state, the set each
node was last sent, and the scheduler's lease (one server acts on schedules at a time).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("renewed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "associations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document_name", sa.String(128), nullable=False),
        sa.Column("document_version", sa.String(32), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("schedule", sa.String(256), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("apply_only_at_cron_interval", sa.Boolean, nullable=False),
        sa.Column("schedule_offset", sa.Integer, nullable=True),
        sa.Column("max_concurrency", sa.String(8), nullable=False),
        sa.Column("max_errors", sa.String(8), nullable=False),
        sa.Column("compliance_severity", sa.String(16), nullable=False),
        sa.Column("sync_compliance", sa.String(8), nullable=False),
        sa.Column("calendars", sa.JSON, nullable=False),
        sa.Column("execution_timeout", sa.Integer, nullable=False),
        sa.Column("anchor", sa.Float, nullable=False),
        sa.Column("next_run_at", sa.Float, nullable=True),
        sa.Column("last_slot", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_associations_next_run_at", "associations", ["next_run_at"])
    op.create_table(
        "association_versions",
        sa.Column("association_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "association_executions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("association_id", sa.String(36), nullable=False),
        sa.Column("association_version", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("slot", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("command_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("detailed_status", sa.String(300), nullable=True),
        sa.Column("synced_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_association_executions_association_id", "association_executions", ["association_id"]
    )
    op.create_index(
        "ix_association_executions_created_at", "association_executions", ["created_at"]
    )
    op.create_table(
        "association_targets",
        sa.Column("association_id", sa.String(36), primary_key=True),
        sa.Column("node_id", sa.String(20), primary_key=True),
        sa.Column("version_applied", sa.Integer, nullable=True),
        sa.Column("last_execution_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detailed_status", sa.String(300), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("last_success_at", sa.Float, nullable=True),
    )
    op.create_index("ix_association_targets_node_id", "association_targets", ["node_id"])
    op.create_table(
        "node_association_sets",
        sa.Column("node_id", sa.String(20), primary_key=True),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_association_sets")
    op.drop_table("association_targets")
    op.drop_table("association_executions")
    op.drop_table("association_versions")
    op.drop_table("associations")
    op.drop_table("scheduler_leases")
