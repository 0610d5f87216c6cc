"""One scrape's figures as Prometheus metric families (the names are a contract:
docs/monitoring.md, packaging/grafana/, packaging/prometheus/ use them).

Statuses an operator alerts on are always present, at 0 when nothing is in them, so a rate
or an alert sees the series from its first scrape, not from the first failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent import __version__, wire
from control_plane.services.metrics.fleet import Fleet

NODE_STATUSES = ("Online", "ConnectionLost", "Deregistered")
# Invocation and command statuses (steps alone are Skipped).
STATUSES = (
    wire.ST_PENDING,
    wire.ST_IN_PROGRESS,
    wire.ST_DELAYED,
    wire.ST_SUCCESS,
    wire.ST_FAILED,
    wire.ST_CANCELLED,
    wire.ST_TIMED_OUT,
    wire.ST_UNDELIVERABLE,
)
FINAL_STATUSES = tuple(s for s in STATUSES if s in wire.TERMINAL_STATUSES)


@dataclass(frozen=True, slots=True)
class Live:
    """What this server process holds in memory (not in the database)."""

    polls: int  # long-polls held open
    websockets: int  # control channels open
    refusals: dict[str, int]  # rate-limit refusals by limit (operator, node, auth)
    sign_interval: float  # the audit checkpoint interval of the config


def families(fleet: Fleet, live: Live) -> Iterator[Metric]:
    info = GaugeMetricFamily("corral_build_info", "This server's version.", labels=("version",))
    info.add_metric((__version__,), 1)
    yield info
    nodes = GaugeMetricFamily(
        "corral_nodes", "Nodes by status and platform.", labels=("status", "platform")
    )
    platforms = {platform for _, platform in fleet.nodes} or {"Linux"}
    for platform in sorted(platforms):
        for status in NODE_STATUSES:
            nodes.add_metric((status, platform), fleet.nodes.get((status, platform), 0))
    for (status, platform), count in sorted(fleet.nodes.items()):
        if status not in NODE_STATUSES:  # pragma: no cover - presence knows no other
            nodes.add_metric((status, platform), count)
    yield nodes
    yield _labelled(
        "corral_agent_versions",
        "Registered nodes by the agent version of their last heartbeat.",
        "version",
        fleet.versions,
    )
    yield _labelled(
        "corral_commands", "Commands by current status.", "status", _with(fleet.commands, STATUSES)
    )
    yield _labelled(
        "corral_invocations",
        "Invocations (one per command and node) by current status.",
        "status",
        _with(fleet.invocations, STATUSES),
    )
    final = CounterMetricFamily(
        "corral_invocations_total",
        "Invocations that reached a final status, by that status (a final status never "
        "changes: this only grows).",
        labels=("status",),
    )
    for status in FINAL_STATUSES:
        final.add_metric((status,), fleet.invocations.get(status, 0))
    yield final
    connections = GaugeMetricFamily(
        "corral_agent_connections",
        "Agent connections held open by this server, by transport.",
        labels=("transport",),
    )
    connections.add_metric(("poll",), live.polls)
    connections.add_metric(("websocket",), live.websockets)
    yield connections
    refused = CounterMetricFamily(
        "corral_rate_limited_total",
        "Requests refused by a rate limit (429) since this server started, by limit.",
        labels=("limit",),
    )
    for limit, count in sorted(live.refusals.items()):
        refused.add_metric((limit,), count)
    yield refused
    yield from _audit(fleet, live)
    if fleet.database_bytes is not None:
        yield GaugeMetricFamily(
            "corral_database_size_bytes", "Size of the database.", value=fleet.database_bytes
        )


def _audit(fleet: Fleet, live: Live) -> Iterator[Metric]:
    audit = fleet.audit
    yield GaugeMetricFamily(
        "corral_audit_chain_length",
        "Entries ever appended to the audit chain (its head's sequence number).",
        value=audit.chain_length,
    )
    anchor = audit.last_checkpoint_at
    if anchor is None:
        anchor = audit.first_entry_at
    age = max(0.0, fleet.now - anchor) if anchor is not None else 0.0
    yield GaugeMetricFamily(
        "corral_audit_last_checkpoint_age_seconds",
        "Seconds since the last signed audit checkpoint (with none yet: since the oldest "
        "entry; with no entries: 0).",
        value=age,
    )
    yield GaugeMetricFamily(
        "corral_audit_unsigned_entries",
        "Audit entries after the last signed checkpoint.",
        value=max(0, audit.chain_length - audit.signed_upto),
    )
    yield GaugeMetricFamily(
        "corral_audit_sign_interval_seconds",
        "How often the server signs a checkpoint (audit_sign_interval_seconds).",
        value=live.sign_interval,
    )


PER_NODE = (
    ("corral_node_outbox_depth", "outbox_depth", "Messages waiting in the agent's outbox."),
    ("corral_node_outbox_dead", "outbox_dead", "Messages the server refused, kept aside."),
    ("corral_node_workers", "workers", "Document workers the agent runs."),
    ("corral_node_rss_bytes", "rss_bytes", "The agent's resident memory."),
)


def per_node_text(fleet: Fleet) -> str:
    """The per-node gauges (one series per registered node that sent the figure), written
    straight in the text format: with 10,000 nodes they are 40,000 lines, and building a
    library sample object for each took most of a scrape's time.  Node ids are ``mi-`` and
    hex; they are escaped all the same."""
    out: list[str] = []
    for name, attribute, text in PER_NODE:
        out.append(f"# HELP {name} {text} (its last heartbeat; registered nodes)\n")
        out.append(f"# TYPE {name} gauge\n")
        for row in fleet.live:
            value = getattr(row, attribute)
            if value is not None:
                out.append(f'{name}{{node_id="{_escape(row.node_id)}"}} {int(value)}\n')
    return "".join(out)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _with(counts: dict[str, int], statuses: Iterable[str]) -> dict[str, int]:
    return {**dict.fromkeys(statuses, 0), **counts}


def _labelled(name: str, text: str, label: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=(label,))
    for value, count in sorted(counts.items()):
        family.add_metric((value,), count)
    return family
