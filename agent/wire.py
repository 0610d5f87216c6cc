"""The wire contract: the one vocabulary the agent and the control plane share.

JSON over HTTPS under ``/v1/``; agent routes live under ``/v1/agent/``.  Every message carries
an id; delivery is at-least-once both ways and receivers are idempotent by id.

Messages are plain JSON objects ``{"id", "type", "body", "created_at"}``.  Message *types* are
listed here; their bodies are documented in docs/wire.md.  New work (run command, cancel,
associations changed, start session, ...) adds a type here, never a new channel.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from typing import Any, Final, NotRequired, TypedDict

API_PREFIX: Final = "/v1"
AGENT_PREFIX: Final = "/v1/agent"

# Agent routes.
ROUTE_CA: Final = f"{AGENT_PREFIX}/ca"
ROUTE_REGISTER: Final = f"{AGENT_PREFIX}/register"
ROUTE_CHALLENGE: Final = f"{AGENT_PREFIX}/challenge"
ROUTE_TOKEN: Final = f"{AGENT_PREFIX}/token"
ROUTE_RENEW: Final = f"{AGENT_PREFIX}/renew"
ROUTE_POLL: Final = f"{AGENT_PREFIX}/poll"
ROUTE_MESSAGES: Final = f"{AGENT_PREFIX}/messages"
# The websocket control channel (docs/wire.md, "The control channel"): the same messages,
# pushed both ways on one connection; long-polling is the fallback.
ROUTE_CONNECT: Final = f"{AGENT_PREFIX}/connect"

# How long the server holds a poll open when nothing is waiting, and the agent's own limit.
POLL_HOLD_SECONDS: Final = 20.0
POLL_HOLD_MAX_SECONDS: Final = 30.0
HEARTBEAT_INTERVAL_SECONDS: Final = 300.0
# A node is Online while it is polling; after this long without contact it is ConnectionLost
# (three missed long-polls).
CONNECTION_LOST_AFTER_SECONDS: Final = 3 * POLL_HOLD_SECONDS + 10.0

MAX_REQUEST_BYTES: Final = 1024 * 1024
MAX_MESSAGES_PER_BATCH: Final = 100
# The server tells its request limit (in bytes) under this key: in the registration answer,
# the control channel's hello frame and every long-poll answer.  The agent keeps each batch's
# JSON body under REQUEST_FILL of the latest value told (MAX_REQUEST_BYTES if never told).
KEY_MAX_REQUEST_BYTES: Final = "max_request_bytes"
REQUEST_FILL: Final = 0.75
# One agent message, JSON-encoded with every non-ASCII character escaped (the largest form
# either side writes), is at most this long: whatever can grow is cut where it is made.
MAX_MESSAGE_BYTES: Final = 256 * 1024
# Step records in one invocation_update (the server keeps no more); the last one says how
# many more there were (agent/execution/bounds.py).
MAX_REPORTED_STEPS: Final = 100
# The per-message answer to POST ROUTE_MESSAGES (and to a ``messages`` frame):
# ``{"acked": [ids], "results": [{"id", "status", "reason"?}]}``, results in batch order,
# acked = accepted + duplicate (for agents that read only acked).  The agent removes acked
# messages, moves rejected ones to its dead table with the reason, keeps the rest to retry.
KEY_ACKED: Final = "acked"
KEY_RESULTS: Final = "results"
RESULT_ACCEPTED: Final = "accepted"
RESULT_DUPLICATE: Final = "duplicate"
RESULT_REJECTED: Final = "rejected"

# Control channel frames: JSON text, {"type": ..., ...}.
# server: node_id, max_frame_bytes, max_messages_per_batch, max_request_bytes
FRAME_HELLO: Final = "hello"
FRAME_DELIVER: Final = "deliver"  # server: messages (acknowledge each with an ack frame)
FRAME_ACK: Final = "ack"  # agent: ids of delivered messages it has made durable
FRAME_MESSAGES: Final = "messages"  # agent: req, messages (as POST ROUTE_MESSAGES)
FRAME_ACKED: Final = "acked"  # server: req, ids stored, results (as POST ROUTE_MESSAGES)
FRAME_ERROR: Final = "error"  # server: req, error {code, message}: that frame was refused
FRAME_TOKEN: Final = "token"  # agent: token (a renewed access token for the open channel)
# Signing in on the channel itself (no token bought over HTTPS first): the upgrade names the
# node (HEADER_NODE_ID, no Authorization); the server sends a challenge, the agent answers
# auth (its key's signature, as POST ROUTE_TOKEN), the server sends authorized (the token the
# channel now holds, usable over HTTPS too).  Before that token expires the agent sends renew
# and the same exchange follows on the open channel.
HEADER_NODE_ID: Final = "x-corral-node-id"
FRAME_CHALLENGE: Final = "challenge"  # server: nonce, expires_at
FRAME_AUTH: Final = "auth"  # agent: nonce, timestamp, signature (token_signing_payload)
FRAME_AUTHORIZED: Final = "authorized"  # server: token, expires_at
FRAME_RENEW: Final = "renew"  # agent: asks for a challenge, to renew the channel's token
AUTH_SECONDS: Final = 10.0  # the server waits this long for auth, then closes (4401)
MAX_FRAME_BYTES: Final = MAX_REQUEST_BYTES + 64 * 1024
# Close codes the agent acts on (4000-4999 are the application's).
CLOSE_UNAUTHORIZED: Final = 4401  # the token expired, or the proof failed: reconnect
CLOSE_DEREGISTERED: Final = 4403  # the node was deregistered or revoked: stop (exit 3)
CLOSE_REPLACED: Final = 4409  # a newer channel of this node took over
CLOSE_TOO_SLOW: Final = 4408  # too much left unacknowledged: reconnect, it comes again
CLOSE_BAD_FRAME: Final = 4400  # a frame that is not a JSON object of a known type
CLOSE_SHUTDOWN: Final = 1012  # the server is restarting: reconnect with backoff

# Server -> agent message types.
MSG_PING: Final = "ping"
MSG_RUN_COMMAND: Final = "run_command"
MSG_CANCEL_COMMAND: Final = "cancel_command"
# State Manager: the associations that apply to this node, in full (AssociationsBody); each
# one replaces the last.  The agent keeps them in its state dir and runs a scheduled one by
# itself when the server cannot reach it at the due time (docs/state-manager.md).
MSG_ASSOCIATIONS: Final = "associations"
# Inventory: the server does not hold these types of this node with the hash the node last
# reported (InventoryResyncBody): the node forgets their hashes, so its next gathering
# uploads them whole.
MSG_INVENTORY_RESYNC: Final = "inventory_resync"
# Session Manager (docs/sessions.md): open this session's side (StartSessionBody: the agent
# dials ROUTE_AGENT_SESSION and runs the shell, the command or the port forwarding there), or
# end it (TerminateSessionBody: the process group is killed).
MSG_START_SESSION: Final = "start_session"
MSG_TERMINATE_SESSION: Final = "terminate_session"
# Agent -> server message types.
MSG_HEARTBEAT: Final = "heartbeat"
MSG_PONG: Final = "pong"
MSG_INVOCATION_UPDATE: Final = "invocation_update"
MSG_OUTPUT_UPLOADED: Final = "output_uploaded"
# Something happened on the node that its operator must hear of (a state file found
# unreadable and moved aside, ...): body ``code``, ``severity``, ``message``, ``time`` and
# fields of the code's own (``file``, ``moved_to``, ``command_id``).
MSG_NODE_EVENT: Final = "node_event"
# Inventory (docs/inventory.md): a gathering's summary (InventoryBody, always sent: one small
# message when nothing changed) and, before it, each changed type's content in parts
# (InventoryPartBody).
MSG_INVENTORY: Final = "inventory"
MSG_INVENTORY_PART: Final = "inventory_part"

AGENT_TO_SERVER_TYPES: Final = frozenset(
    {
        MSG_HEARTBEAT,
        MSG_PONG,
        MSG_INVOCATION_UPDATE,
        MSG_OUTPUT_UPLOADED,
        MSG_NODE_EVENT,
        MSG_INVENTORY,
        MSG_INVENTORY_PART,
    }
)
NODE_EVENT_SEVERITIES: Final = ("info", "warning", "error")
EVENT_STATE_FILE_CORRUPT: Final = "state_file_corrupt"
EVENT_JOURNAL_ENTRY_CORRUPT: Final = "journal_entry_corrupt"
EVENT_MESSAGE_FAILED: Final = "message_failed"  # handling a server message raised
EVENT_OUTBOX_ROW_CORRUPT: Final = "outbox_row_corrupt"  # moved to the dead table
# Texts the agent writes into a message (a reason, a node_event's message): at most this long.
MAX_REASON_CHARS: Final = 2_000
SERVER_TO_AGENT_TYPES: Final = frozenset(
    {
        MSG_PING,
        MSG_RUN_COMMAND,
        MSG_CANCEL_COMMAND,
        MSG_ASSOCIATIONS,
        MSG_INVENTORY_RESYNC,
        MSG_START_SESSION,
        MSG_TERMINATE_SESSION,
    }
)

# Session Manager ------------------------------------------------------------------------
# Each end of a session dials the server's relay: the agent here (its node token as Bearer),
# the operator's client at ROUTE_SESSION_STREAM (its operator token); both then speak the
# data channel of agent/sessions/datachannel.py in binary websocket messages.
ROUTE_AGENT_SESSION: Final = f"{AGENT_PREFIX}/sessions/{{session_id}}/stream"
ROUTE_SESSION_STREAM: Final = f"{API_PREFIX}/sessions/{{session_id}}/stream"
SESSION_ID_RE: Final = re.compile(r"^s-[0-9a-f]{20}$")
SESSION_TYPE_SHELL: Final = "Standard_Stream"
SESSION_TYPE_INTERACTIVE: Final = "InteractiveCommands"
SESSION_TYPE_NON_INTERACTIVE: Final = "NonInteractiveCommands"
SESSION_TYPE_PORT: Final = "Port"
SESSION_TYPES: Final = (
    SESSION_TYPE_SHELL,
    SESSION_TYPE_INTERACTIVE,
    SESSION_TYPE_NON_INTERACTIVE,
    SESSION_TYPE_PORT,
)
# The relay closes a session's websocket with these codes; an end does not dial again.
CLOSE_SESSION_UNKNOWN: Final = 4404  # no such live session (ended, or never started)
CLOSE_SESSION_FORBIDDEN: Final = 4403  # not this caller's session (or its node's)
CLOSE_SESSION_REPLACED: Final = 4409  # the same end dialled again; the newer connection wins
CLOSE_SESSION_ENDED: Final = 1000  # the session ended (CLOSED or TERMINATE went through)


class StartSessionBody(TypedDict):
    session_id: str
    session_type: str  # one of SESSION_TYPES
    # Standard_Stream: the shell profile (commands typed into the shell first, may be "");
    # InteractiveCommands / NonInteractiveCommands: the command line (run by /bin/sh -c).
    command: str
    run_as: str | None  # a user of the node; None: the agent's own user (root)
    port: int | None  # Port: where the node connects, for every stream
    host: str | None  # Port: None = localhost
    cols: int
    rows: int
    expires_at: float  # a start_session delivered after this (node was away) is ignored
    window: int  # bytes each end may leave unacknowledged


class TerminateSessionBody(TypedDict):
    session_id: str
    reason: str


# Run Command ------------------------------------------------------------------------------
# Output kept in the command record per step (as SSM), and the full output per step kept in
# the server's blob store (uploaded with PUT ROUTE_OUTPUT/{command_id}/{step_index}/{stream}).
STDOUT_RECORD_CHARS: Final = 24_000
STDERR_RECORD_CHARS: Final = 8_000
OUTPUT_BLOB_MAX_BYTES: Final = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES: Final = 64 * 1024
# Parameter Store values sent with one run_command (``ssm_values``): at most this many
# references, and this many bytes of references and values together (UTF-8).
MAX_SSM_VALUES: Final = 100
MAX_SSM_VALUES_BYTES: Final = 64 * 1024
# A key of ``ssm_values``: a Parameter Store reference as a document writes it, without braces
# (the documents library's reference syntax).
SSM_REFERENCE_RE: Final = re.compile(r"ssm(?:-secure)?:[^\s{}]+")
SSM_SECURE_PREFIX: Final = "ssm-secure:"
ROUTE_OUTPUT: Final = f"{AGENT_PREFIX}/output"

# Invocation (per node) statuses, as SSM's Status; details as SSM's StatusDetails.
ST_PENDING: Final = "Pending"
ST_IN_PROGRESS: Final = "InProgress"
ST_DELAYED: Final = "Delayed"
ST_SUCCESS: Final = "Success"
ST_FAILED: Final = "Failed"
ST_CANCELLED: Final = "Cancelled"
ST_TIMED_OUT: Final = "TimedOut"
ST_UNDELIVERABLE: Final = "Undeliverable"
ST_SKIPPED: Final = "Skipped"  # steps only
TERMINAL_STATUSES: Final = frozenset(
    {ST_SUCCESS, ST_FAILED, ST_CANCELLED, ST_TIMED_OUT, ST_UNDELIVERABLE}
)
DETAIL_DELIVERY_TIMED_OUT: Final = "DeliveryTimedOut"
DETAIL_EXECUTION_TIMED_OUT: Final = "ExecutionTimedOut"
DETAIL_TERMINATED: Final = "Terminated"
DETAIL_INTERRUPTED: Final = "Interrupted"


class RunCommandBody(TypedDict):
    """``run_command``: run one document on this node.  At-least-once: the agent journals
    ``command_id`` before starting and never starts the same command twice."""

    command_id: str
    document_name: str
    document_version: str
    document: dict[str, Any]  # the parsed document content (JSON object)
    parameters: dict[str, Any]  # validated by the server, defaults applied
    execution_timeout_seconds: int
    # The Parameter Store values the document references, resolved by the server when it
    # delivers the command: each reference as written without braces ("ssm:/app/db-url",
    # "ssm-secure:/app/db-pass:3") -> its plaintext.  Absent when there are none.  The agent
    # keeps them in memory only (never in its journal, outbox, logs or state dir) and hands
    # them to the worker's interpolation; at most MAX_SSM_VALUES / MAX_SSM_VALUES_BYTES.
    ssm_values: NotRequired[dict[str, str]]
    # Patch Manager (docs/patching.md): the baselines an AWS-RunPatchBaseline command runs
    # against, resolved by the server when the command was sent (its snapshot); absent for
    # other documents.
    patch: NotRequired[PatchDelivery]


class PatchDelivery(TypedDict):
    """The node's patch group and, per baseline OperatingSystem, the baseline it is patched
    against (GetPatchBaseline's JSON, BaselineId included); the agent uses the one for its
    own operating system."""

    snapshot_id: str
    patch_group: str
    baselines: dict[str, dict[str, Any]]


class CancelCommandBody(TypedDict):
    command_id: str


# Compliance (docs/compliance.md): AWS's values and limits (PutComplianceItems).  A step of
# ``corral:putComplianceItems`` reports its items in its StepResult (``compliance``); the
# server replaces that type's items on the node with them.
COMPLIANCE_STATUSES: Final = ("COMPLIANT", "NON_COMPLIANT")
COMPLIANCE_SEVERITIES: Final = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNSPECIFIED")
COMPLIANCE_CUSTOM_TYPE_RE: Final = re.compile(r"^Custom:[A-Za-z0-9_\-]\w+$")
COMPLIANCE_TYPE_MAX_CHARS: Final = 100
COMPLIANCE_ITEM_ID_MAX_CHARS: Final = 100
COMPLIANCE_TITLE_MAX_CHARS: Final = 500
COMPLIANCE_DETAILS_MAX_ENTRIES: Final = 20
COMPLIANCE_DETAIL_KEY_MAX_CHARS: Final = 64
COMPLIANCE_DETAIL_VALUE_MAX_CHARS: Final = 4096
# One step's items: at most this many, and this many bytes as JSON; one invocation_update
# carries at most COMPLIANCE_REPORT_MAX_BYTES of them (the worker keeps the last per type).
COMPLIANCE_STEP_MAX_ITEMS: Final = 100
COMPLIANCE_STEP_MAX_BYTES: Final = 32 * 1024
COMPLIANCE_REPORT_MAX_BYTES: Final = 64 * 1024


class ComplianceItem(TypedDict):
    id: str
    title: str
    severity: str  # one of COMPLIANCE_SEVERITIES
    status: str  # COMPLIANT | NON_COMPLIANT
    details: dict[str, str]


class StepCompliance(TypedDict):
    compliance_type: str  # Custom:NAME
    items: list[ComplianceItem]


class StepResult(TypedDict, total=False):
    name: str
    action: str
    status: str  # Success | Failed | Cancelled | TimedOut | Skipped | InProgress
    status_details: str
    response_code: int | None
    started_at: float | None
    ended_at: float | None
    stdout: str  # at most STDOUT_RECORD_CHARS
    stderr: str  # at most STDERR_RECORD_CHARS
    stdout_bytes: int  # full size written by the step (the blob holds up to 16 MiB)
    stderr_bytes: int
    compliance: StepCompliance  # corral:putComplianceItems only


class InvocationUpdateBody(TypedDict, total=False):
    """``invocation_update``: the node's status for one command.  Sent when it starts
    (InProgress) and when it ends (a terminal status, with every step's result)."""

    command_id: str
    status: str
    status_details: str
    response_code: int | None
    started_at: float | None
    ended_at: float | None
    steps: list[StepResult]


# State Manager ----------------------------------------------------------------------------
# A scheduled association run is a command whose id both sides derive from the association
# and the run's scheduled time, so the run the server sends and the run an agent made by itself
# while the server was out of reach are the same command: journaled once, run once.
MAX_NODE_ASSOCIATIONS: Final = 100  # associations one node is sent (the rest: server-only)


ASSOCIATION_RUN_NAMESPACE: Final = uuid.UUID("6f1c4b1e-7c0a-5d0e-9a55-636f7272616c")


def association_command_id(association_id: str, slot: float) -> str:
    """The command id (a UUID, as every execution id) of ``association_id``'s run scheduled
    at ``slot`` (epoch seconds): the same on the server and on every node."""
    return str(uuid.uuid5(ASSOCIATION_RUN_NAMESPACE, f"{association_id}/{int(slot)}"))


class LocalAssociation(TypedDict):
    """One association as the agent keeps it (``associations`` message)."""

    association_id: str
    name: str
    version: int
    document_name: str
    document_version: str
    document: dict[str, Any]  # the content, nested documents embedded, as run_command's
    parameters: dict[str, Any]  # validated by the server, defaults applied
    schedule: str | None  # an association schedule expression (agent.schedules); None: none
    timezone: str  # IANA zone of a cron schedule
    schedule_offset: int  # days (cron only), 0: none
    anchor: float  # rate(): runs at anchor + k * interval, k >= 1
    execution_timeout_seconds: int
    # False: only the server may start it (it needs Parameter Store values or a change
    # calendar the agent cannot check): the agent keeps it for `corral-agent status` only.
    offline: bool


class AssociationsBody(TypedDict):
    revision: str  # changes whenever the set changes; the agent logs and keeps it
    associations: list[LocalAssociation]


# Inventory --------------------------------------------------------------------------------
# Each type's content is hashed (INVENTORY_HASH_PREFIX + hex SHA-256 of its items as canonical
# JSON: keys sorted, no spaces, items sorted); a type whose hash equals the one the node last
# queued is not sent again.


class InventoryPartBody(TypedDict):
    """``inventory_part``: part ``part`` (0-based) of ``parts`` of one type's whole content;
    the server replaces the type on the node once it holds every part of ``content_hash``."""

    type_name: str
    schema_version: str
    content_hash: str
    capture_time: float
    part: int
    parts: int
    items: list[dict[str, str]]


class InventoryError(TypedDict):
    source: str  # a type name, or a custom inventory file's name
    reason: str


class InventoryBody(TypedDict):
    """``inventory``: what one gathering found: every gathered type's hash (sent or not).
    ``custom_complete``: the Custom:* types listed are all this node has (the server drops
    the others); false when custom inventory was not gathered."""

    capture_time: float
    hashes: dict[str, str]
    custom_complete: bool
    errors: list[InventoryError]
    # True: only the types listed were gathered (Patch Manager's AWS:PatchSummary and
    # Corral:Patch); the node's other types, its errors and capture time stay as they are.
    partial: NotRequired[bool]


class InventoryResyncBody(TypedDict):
    types: list[str]


INVENTORY_HASH_PREFIX: Final = "sha256:"
INVENTORY_MAX_ERRORS: Final = 50


class OutputUploadedBody(TypedDict):
    """``output_uploaded``: the full output of a step is in the blob store."""

    command_id: str
    step_index: int
    stream: str  # stdout | stderr
    size: int
    sha256: str


NODE_ID_RE: Final = re.compile(r"^mi-[0-9a-f]{17}$")
MESSAGE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

# Signed-challenge domain separator: a signature made for a token can be used for nothing else.
TOKEN_SIGNING_CONTEXT: Final = b"corral-node-token-v1"
RENEW_SIGNING_CONTEXT: Final = b"corral-node-renew-v1"

# Stable error codes that cross the wire (``{"error": {"code", "message"}}``).
ERR_UNAUTHORIZED: Final = "unauthorized"
ERR_NODE_DEREGISTERED: Final = "node_deregistered"
ERR_TOKEN_EXPIRED: Final = "token_expired"
ERR_ACTIVATION_INVALID: Final = "activation_invalid"
ERR_CREDENTIAL_EXPIRED: Final = "credential_expired"
ERR_SERVER_BUSY: Final = "server_busy"  # 503: too many channels opening; retry after backoff


class Message(TypedDict):
    id: str
    type: str
    body: dict[str, Any]
    created_at: float


class HeartbeatBody(TypedDict):
    agent_version: str
    hostname: str
    platform: str
    platform_name: str
    platform_version: str
    ip_addresses: list[str]
    boot_time: float


def new_message_id() -> str:
    """A sortable, unique message id: milliseconds since the epoch, then randomness."""
    return f"{int(time.time() * 1000):013x}{secrets.token_hex(8)}"


def make_message(msg_type: str, body: dict[str, Any]) -> Message:
    return Message(id=new_message_id(), type=msg_type, body=body, created_at=time.time())


def ca_pin(pem: str) -> str:
    """How a CA is pinned: ``sha256:`` + hex SHA-256 of the certificate's DER encoding.

    Raises ValueError if ``pem`` is not one PEM certificate."""
    import ssl  # not at import time: the fork server, forked before TLS is loaded, needs none

    der = ssl.PEM_cert_to_DER_cert(pem.strip())
    return "sha256:" + hashlib.sha256(der).hexdigest()


def token_signing_payload(node_id: str, nonce: str, timestamp: int) -> bytes:
    return b"\n".join(
        [TOKEN_SIGNING_CONTEXT, node_id.encode(), nonce.encode(), str(timestamp).encode()]
    )


def renew_signing_payload(node_id: str, public_key_b64: str) -> bytes:
    return b"\n".join([RENEW_SIGNING_CONTEXT, node_id.encode(), public_key_b64.encode()])
