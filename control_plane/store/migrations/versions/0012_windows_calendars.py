"""Maintenance Windows and change calendars (issue 11).

maintenance_windows (next_run_at advanced in the transaction that records the run it claims),
window_targets, window_tasks, window_executions (one row per (window, scheduled start): the
unique constraint is what makes a start recorded once), window_task_executions, and
change_calendars.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _window_fk() -> sa.Column[str]:
    return sa.Column(
        "window_id",
        sa.String(20),
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(128), nullable=False, server_default=""),
        sa.Column("schedule", sa.String(256), nullable=False),
        sa.Column("schedule_timezone", sa.String(64), nullable=False),
        sa.Column("schedule_offset", sa.Integer, nullable=True),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("cutoff", sa.Integer, nullable=False),
        sa.Column("start_date", sa.Float, nullable=True),
        sa.Column("end_date", sa.Float, nullable=True),
        sa.Column("allow_unassociated_targets", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("next_run_at", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_maintenance_windows_due", "maintenance_windows", ["enabled", "next_run_at"])
    op.create_table(
        "window_targets",
        sa.Column("id", sa.String(36), primary_key=True),
        _window_fk(),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("owner_information", sa.String(128), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_window_targets_window_id", "window_targets", ["window_id"])
    op.create_table(
        "window_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        _window_fk(),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("document_version", sa.String(64), nullable=True),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("max_concurrency", sa.String(8), nullable=False),
        sa.Column("max_errors", sa.String(8), nullable=False),
        sa.Column("cutoff_behavior", sa.String(16), nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_window_tasks_window_id", "window_tasks", ["window_id"])
    op.create_table(
        "window_executions",
        sa.Column("id", sa.String(36), primary_key=True),
        _window_fk(),
        sa.Column("scheduled_at", sa.Float, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=True),
        sa.Column("cutoff_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("status_details", sa.String(250), nullable=False, server_default=""),
        sa.UniqueConstraint("window_id", "scheduled_at", name="uq_window_executions_slot"),
    )
    op.create_index("ix_window_executions_status", "window_executions", ["status"])
    op.create_table(
        "window_task_executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "window_execution_id",
            sa.String(36),
            sa.ForeignKey("window_executions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("window_id", sa.String(20), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("document_version", sa.String(64), nullable=True),
        sa.Column("targets", sa.JSON, nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("max_concurrency", sa.String(8), nullable=False),
        sa.Column("max_errors", sa.String(8), nullable=False),
        sa.Column("cutoff_behavior", sa.String(16), nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("per_target", sa.Boolean, nullable=False),
        sa.Column("node_ids", sa.JSON, nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("status_details", sa.String(250), nullable=False, server_default=""),
        sa.Column("start_time", sa.Float, nullable=True),
        sa.Column("end_time", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_window_task_executions_window_execution_id",
        "window_task_executions",
        ["window_execution_id"],
    )
    op.create_table(
        "change_calendars",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("calendar_type", sa.String(16), nullable=False),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("ics", sa.Text, nullable=True),
        sa.Column("schedule", sa.String(256), nullable=True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("modified_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("change_calendars")
    op.drop_index(
        "ix_window_task_executions_window_execution_id", table_name="window_task_executions"
    )
    op.drop_table("window_task_executions")
    op.drop_index("ix_window_executions_status", table_name="window_executions")
    op.drop_table("window_executions")
    op.drop_index("ix_window_tasks_window_id", table_name="window_tasks")
    op.drop_table("window_tasks")
    op.drop_index("ix_window_targets_window_id", table_name="window_targets")
    op.drop_table("window_targets")
    op.drop_index("ix_maintenance_windows_due", table_name="maintenance_windows")
    op.drop_table("maintenance_windows")
