"""Table definitions (SQLAlchemy Core).  Changes here need a migration in ``migrations/``.

Times are seconds since the epoch (float); JSON columns hold small documents only.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("secret_digest", sa.String(64), nullable=False, unique=True),
    # A role (the name of a stored policy) or a policy document of the token's own.
    sa.Column("role", sa.String(32), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("policy", sa.JSON, nullable=True),
    sa.Column("created_by", sa.String(40), nullable=True),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.Float, nullable=False),
)

activations = sa.Table(
    "activations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("code_digest", sa.String(64), nullable=False),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("description", sa.String(256), nullable=False, server_default=""),
    sa.Column("registration_limit", sa.Integer, nullable=False),
    sa.Column("registrations_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("activation_id", sa.String(40), nullable=True),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("credential_expires_at", sa.Float, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    sa.Column("deregistered_at", sa.Float, nullable=True),
    sa.Column("hostname", sa.String(256), nullable=False, server_default=""),
    sa.Column("platform", sa.String(32), nullable=False, server_default=""),
    sa.Column("platform_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("platform_version", sa.String(128), nullable=False, server_default=""),
    sa.Column("agent_version", sa.String(32), nullable=False, server_default=""),
    sa.Column("ip_addresses", sa.JSON, nullable=False),
    sa.Column("boot_time", sa.Float, nullable=True),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=True),
    # The agent's outbox as its last heartbeat told: waiting, and refused (its dead table).
    sa.Column("outbox_depth", sa.Integer, nullable=True),
    sa.Column("outbox_dead", sa.Integer, nullable=True),
)

# What agents report about themselves (agent/state_recovery.py), newest 1,000 per node.
node_events = sa.Table(
    "node_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.String(1024), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Index("ix_node_events_node_id", "node_id", "id"),
)

node_tags = sa.Table(
    "node_tags",
    metadata,
    sa.Column(
        "node_id", sa.String(20), sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Index("ix_node_tags_key_value", "key", "value"),
)

# Server -> agent messages waiting for the agent's acknowledgement (at-least-once delivery).
node_inbox = sa.Table(
    "node_inbox",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("node_id", sa.String(20), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Ids of agent -> server messages already stored: the server is idempotent by message id.
# Keyed per node: one node cannot shadow another's message by reusing its id.
processed_messages = sa.Table(
    "processed_messages",
    metadata,
    sa.Column("node_id", sa.String(20), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)

# Run Command ------------------------------------------------------------------------------
commands = sa.Table(
    "commands",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("document_name", sa.String(128), nullable=False),
    sa.Column("document_version", sa.String(32), nullable=False),
    sa.Column("document_sha256", sa.String(64), nullable=False),
    sa.Column("document_content", sa.JSON, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("comment", sa.String(100), nullable=False, server_default=""),
    sa.Column("max_concurrency", sa.String(8), nullable=False),
    sa.Column("max_errors", sa.String(8), nullable=False),
    sa.Column("execution_timeout", sa.Integer, nullable=False),
    sa.Column("delivery_timeout", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("status_details", sa.String(32), nullable=False),
    sa.Column("target_count", sa.Integer, nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("completed_at", sa.Float, nullable=True),
    sa.Column("cancel_requested_at", sa.Float, nullable=True),
    # Parameter Store references, pinned at send: {"ssm:/a": {"name", "version", "secure"}}.
    sa.Column("parameter_refs", sa.JSON, nullable=True),
)

invocations = sa.Table(
    "invocations",
    metadata,
    sa.Column(
        "command_id",
        sa.String(40),
        sa.ForeignKey("commands.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("node_id", sa.String(20), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    # SSM's detail words, or a reason such as "result rejected: ..." (migration 0011).
    sa.Column("status_details", sa.String(300), nullable=False),
    sa.Column("response_code", sa.Integer, nullable=True),
    sa.Column("message_id", sa.String(64), nullable=True),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("steps", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # When the node's result came after the server had ended the invocation (no report,
    # delivery timed out): the result is stored, the final status is kept.
    sa.Column("late_result_at", sa.Float, nullable=True),
    sa.Index("ix_invocations_node_id", "node_id"),
)

node_groups = sa.Table(
    "node_groups",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.String(256), nullable=False, server_default=""),
    sa.Column("targets", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", sa.String(128), nullable=False),
    sa.Column("secret", sa.String(256), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # The token that made it: deliveries carry only events that token may read (NULL: made
    # before owners were recorded, delivered unfiltered).
    sa.Column("created_by", sa.String(40), nullable=True),
)

# Webhook deliveries wait here until the receiver answers 2xx (retried with backoff).
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "webhook_id",
        sa.String(40),
        sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.String(256), nullable=True),
    sa.Index("ix_webhook_deliveries_next", "next_attempt_at"),
)

# Documents ---------------------------------------------------------------------------------
# User documents only: the built-ins (owner "corral") come from agent.documents, not from here.
# ``last_version`` is the highest number ever given, so a deleted version's number is never
# reused; ``latest_version`` is the highest that still exists.
documents = sa.Table(
    "documents",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("default_version", sa.Integer, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("last_version", sa.Integer, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# A version is immutable: ``content`` is the text as uploaded, ``parsed`` the same content as
# JSON (what the agent gets), ``sha256`` the document's hash.
document_versions = sa.Table(
    "document_versions",
    metadata,
    sa.Column(
        "name",
        sa.String(128),
        sa.ForeignKey("documents.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("version_name", sa.String(128), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("schema_version", sa.String(16), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("format", sa.String(8), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("parsed", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("name", "version_name", name="uq_document_versions_version_name"),
)

# Audit trail -------------------------------------------------------------------------------
# Append-only and hash-chained (the chain is defined in control_plane.security.audit_chain).
# A writer takes ``seq`` and ``prev_hash`` from the one row of ``audit_head`` and updates that
# row in the same transaction: the row lock serialises writers on every database, and finding
# the chain's tail never scans.  ``seq`` is 64-bit, but plain INTEGER on SQLite (the rowid).
AUDIT_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

audit_entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("seq", AUDIT_SEQ, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("identity_type", sa.String(16), nullable=False),
    sa.Column("identity_id", sa.String(128), nullable=True),
    sa.Column("identity_name", sa.String(256), nullable=True),
    sa.Column("source_ip", sa.String(64), nullable=True),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("request", sa.JSON, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.String(512), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_entries_time", "time"),
    sa.Index("ix_audit_entries_identity_id", "identity_id"),
    sa.Index("ix_audit_entries_resource", "resource"),
)

# What else an entry concerns besides its ``resource``, for ``corral audit list --resource``:
# the nodes a command was sent to (``node/mi-...``, from the entry's hashed ``request.nodes``,
# at most 1,000).  An index derived from the chain, not part of it (services.audit).
audit_entry_resources = sa.Table(
    "audit_entry_resources",
    metadata,
    sa.Column("resource", sa.String(256), primary_key=True),
    sa.Column("seq", AUDIT_SEQ, primary_key=True, autoincrement=False),
    sa.Index("ix_audit_entry_resources_seq", "seq"),
)

# Exactly one row (id 1): the seq and hash of the chain's last entry (0 and 64 zeros at first).
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", AUDIT_SEQ, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Signed statements "the chain had this hash at this seq": hourly ("periodic") and, when old
# entries are pruned, a "retention" anchor that the remaining chain starts from.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("seq_upto", AUDIT_SEQ, nullable=False),
    sa.Column("hash_upto", sa.String(64), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("prev_checkpoint_hash", sa.String(64), nullable=False),
    sa.Column("checkpoint_hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
    sa.Index("ix_audit_checkpoints_seq_upto", "seq_upto"),
)

parameters = sa.Table(
    "parameters",
    metadata,
    sa.Column("name", sa.String(1011), primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("tier", sa.String(16), nullable=False),
    sa.Column("data_type", sa.String(32), nullable=False),
    sa.Column("description", sa.String(1024), nullable=False, server_default=""),
    sa.Column("allowed_pattern", sa.String(1024), nullable=True),
    sa.Column("policies", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_modified_at", sa.Float, nullable=False),
    sa.Column("last_modified_by", sa.String(128), nullable=False),
)

# One row per version; a SecureString's value is its envelope (JSON text), never plaintext.
parameter_versions = sa.Table(
    "parameter_versions",
    metadata,
    sa.Column("name", sa.String(1011), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("description", sa.String(1024), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
)

# When each parameter policy fires next (parameter.expired, *_notification); fired_at marks
# it done so a restart does not fire it twice.
parameter_schedule = sa.Table(
    "parameter_schedule",
    metadata,
    sa.Column("name", sa.String(1011), primary_key=True),
    sa.Column("event", sa.String(64), primary_key=True),
    sa.Column("fire_at", sa.Float, nullable=False),
    sa.Column("fired_at", sa.Float, nullable=True),
    sa.Index("ix_parameter_schedule_due", "fired_at", "fire_at"),
)

# Maintenance Windows and change calendars (services/windows/, services/calendars/) ---------

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

# Compliance (services/compliance/) ---------------------------------------------------------
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

# State Manager associations and the scheduler lease (services/associations/, scheduling/) --

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

# Inventory's tables live in their own module, on this metadata.
from control_plane.store import inventory_tables as inventory_tables  # noqa: E402
