"""Maintenance Windows' and change calendars' tables (services/windows/, services/calendars/).
On the shared metadata (store/metadata.py); store/schema.py re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata

# A maintenance window (SSM's CreateMaintenanceWindow); next_run_at: its next start, advanced
# in the transaction that records the execution it claims (None: disabled or no more runs).
maintenance_windows = sa.Table(
    "maintenance_windows",
    metadata,
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
    sa.Index("ix_maintenance_windows_due", "enabled", "next_run_at"),
)

# RegisterTargetWithMaintenanceWindow: target specs (as Run Command's) under a target id.
window_targets = sa.Table(
    "window_targets",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "window_id",
        sa.String(20),
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("name", sa.String(128), nullable=False, server_default=""),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("owner_information", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

# RegisterTaskWithMaintenanceWindow (RUN_COMMAND): targets are specs or window-target:ID.
window_tasks = sa.Table(
    "window_tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "window_id",
        sa.String(20),
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
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

# One run of a window; (window_id, scheduled_at) unique: a start is recorded once, whoever
# claims it (the claim and this row are one transaction).
window_executions = sa.Table(
    "window_executions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "window_id",
        sa.String(20),
        sa.ForeignKey("maintenance_windows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("scheduled_at", sa.Float, nullable=False),
    sa.Column("start_time", sa.Float, nullable=False),
    sa.Column("end_time", sa.Float, nullable=True),
    sa.Column("cutoff_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("status_details", sa.String(250), nullable=False, server_default=""),
    sa.UniqueConstraint("window_id", "scheduled_at", name="uq_window_executions_slot"),
    sa.Index("ix_window_executions_status", "status"),
)

# One task of one window run, a snapshot of the task as registered when the run started; its
# command id is its own id (or, with {{TARGET_ID}}, one derived per node from it).
window_task_executions = sa.Table(
    "window_task_executions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column(
        "window_execution_id",
        sa.String(36),
        sa.ForeignKey("window_executions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
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

# A change calendar (SSM's ChangeCalendar document): DEFAULT_OPEN (events close it) or
# DEFAULT_CLOSED (events open it); events from an iCalendar text or a schedule + duration.
change_calendars = sa.Table(
    "change_calendars",
    metadata,
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
