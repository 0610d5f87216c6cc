"""State Manager's tables and the scheduler lease (services/associations/, services/scheduling/).
On the shared metadata (store/metadata.py); store/schema.py re-exports them."""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store.metadata import metadata

# Who runs the schedules (services/scheduling/lease.py): one row per lease.
scheduler_leases = sa.Table(
    "scheduler_leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("renewed_at", sa.Float, nullable=False),
)

# State Manager: an association (a document, its parameters, targets and schedule) as it is
# now; every version it had is in association_versions.
associations = sa.Table(
    "associations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("document_name", sa.String(128), nullable=False),
    sa.Column("document_version", sa.String(32), nullable=True),  # None: the default, at run
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
    sa.Column("anchor", sa.Float, nullable=False),  # rate(): runs at anchor + k * interval
    sa.Column("next_run_at", sa.Float, nullable=True, index=True),  # None: no schedule
    sa.Column("last_slot", sa.Float, nullable=True),  # the latest scheduled run claimed
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(128), nullable=False),
)

association_versions = sa.Table(
    "association_versions",
    metadata,
    sa.Column("association_id", sa.String(36), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("snapshot", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
)

# One row per run of an association (its id is the command's when it ran); a run that did
# not start (a change calendar was CLOSED, the document is gone) has no command and says why.
association_executions = sa.Table(
    "association_executions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("association_id", sa.String(36), nullable=False, index=True),
    sa.Column("association_version", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # schedule|create|update|targets|run-now
    sa.Column("slot", sa.Float, nullable=True),  # the scheduled time, for trigger schedule
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("command_id", sa.String(40), nullable=True),
    sa.Column("status", sa.String(16), nullable=True),  # set when there is no command
    sa.Column("detailed_status", sa.String(300), nullable=True),
    sa.Column("synced_at", sa.Float, nullable=True),  # every node's result applied
)

# Each association's targets: what last happened there (an association's compliance).
association_targets = sa.Table(
    "association_targets",
    metadata,
    sa.Column("association_id", sa.String(36), primary_key=True),
    sa.Column("node_id", sa.String(20), primary_key=True, index=True),
    sa.Column("version_applied", sa.Integer, nullable=True),  # None: not run there yet
    sa.Column("last_execution_id", sa.String(40), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # Pending|InProgress|Success|Failed|Skipped
    sa.Column("detailed_status", sa.String(300), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("last_success_at", sa.Float, nullable=True),
)

# The association set each node was last sent (the associations message), by revision.
node_association_sets = sa.Table(
    "node_association_sets",
    metadata,
    sa.Column("node_id", sa.String(20), primary_key=True),
    sa.Column("revision", sa.String(64), nullable=False),
    sa.Column("sent_at", sa.Float, nullable=False),
)
