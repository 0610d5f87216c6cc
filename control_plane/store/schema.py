"""Table definitions (SQLAlchemy Core).  Changes here need a migration in ``migrations/``.

Times are seconds since the epoch (float); JSON columns hold small documents only.  The
tables of the identity, nodes, Run Command, documents, audit and Parameter Store are here; each
later capability's are in a module of their own beside it (``*_tables.py``, on the same
``metadata``), re-exported here so ``schema.<table>`` names every table.
"""

from __future__ import annotations

import sqlalchemy as sa

from control_plane.store import inventory_tables as inventory_tables
from control_plane.store import patch_tables as patch_tables
from control_plane.store import session_tables as session_tables
from control_plane.store.association_tables import (
    association_executions as association_executions,
)
from control_plane.store.association_tables import (
    association_targets as association_targets,
)
from control_plane.store.association_tables import (
    association_versions as association_versions,
)
from control_plane.store.association_tables import (
    associations as associations,
)
from control_plane.store.association_tables import (
    node_association_sets as node_association_sets,
)
from control_plane.store.association_tables import (
    scheduler_leases as scheduler_leases,
)
from control_plane.store.compliance_tables import (
    compliance_history as compliance_history,
)
from control_plane.store.compliance_tables import (
    compliance_items as compliance_items,
)
from control_plane.store.compliance_tables import (
    compliance_summaries as compliance_summaries,
)
from control_plane.store.metadata import metadata as metadata
from control_plane.store.window_tables import (
    change_calendars as change_calendars,
)
from control_plane.store.window_tables import (
    maintenance_windows as maintenance_windows,
)
from control_plane.store.window_tables import (
    window_executions as window_executions,
)
from control_plane.store.window_tables import (
    window_targets as window_targets,
)
from control_plane.store.window_tables import (
    window_task_executions as window_task_executions,
)
from control_plane.store.window_tables import (
    window_tasks as window_tasks,
)

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
    # The agent's document workers running and its resident memory, as its last heartbeat
    # told (migration 0018; NULL: an agent that does not send them).
    sa.Column("workers", sa.Integer, nullable=True),
    sa.Column("rss_bytes", sa.BigInteger, nullable=True),
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
    # AWS-RunPatchBaseline: {"snapshot_id", "groups": {node id: patch group}} (services/patching).
    sa.Column("patch", sa.JSON, nullable=True),
    sa.Index("ix_commands_status", "status"),  # /metrics counts by status (migration 0018)
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
    sa.Index("ix_invocations_status", "status"),  # /metrics counts by status (migration 0018)
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
