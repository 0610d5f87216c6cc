"""The server's metrics: live instruments (request and dispatch latency), the process's own
figures, and the fleet read at scrape time, in a registry this server owns (several servers
in one process, as in the tests, never share one).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from control_plane.services.metrics.families import Live, families, per_node_text
from control_plane.services.metrics.fleet import Fleet, SharedRead

if TYPE_CHECKING:
    from collections.abc import Iterator

    from control_plane.services.hub import ControlPlane

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "<unmatched>"  # a request no route matched (404s): one label, whatever the URL
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Long-polls are held ~20 s: the top buckets keep them apart from slow requests.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From a command's creation to its delivery: rate control and offline nodes make it long.
DISPATCH_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip


class _Snapshot:
    """A collector of one scrape's families (made per scrape: nothing shared between two)."""

    def __init__(self, items: list[Metric]) -> None:
        self._items = items

    def collect(self) -> Iterator[Metric]:
        return iter(self._items)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.request_duration = Histogram(
            "corral_http_request_duration_seconds",
            "HTTP requests by method, route template and status.",
            ("method", "route", "status"),
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "corral_dispatch_latency_seconds",
            "Seconds from a command's creation to its delivery to each target node.",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self._fleet = SharedRead(cp.db, cp.presence, cp.clock)

    @classmethod
    def attach(cls, cp: ControlPlane) -> Metrics:
        """The metrics of ``cp``, wired into the services that feed them."""
        metrics = cls(cp)
        cp.dispatcher.on_delivered = metrics.dispatch_latency.observe
        return metrics

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """``route``: the matched route's path template (``/v1/nodes/{node_id}``), never the
        URL, so the label's values are bounded by the routes."""
        method = method if method in METHODS else "OTHER"
        labels = self.request_duration.labels(method, route or UNMATCHED, str(status))
        labels.observe(seconds)

    async def fleet(self) -> Fleet:
        return await self._fleet.read()

    def live(self) -> Live:
        cp = self._cp
        limits = cp.rate_limits
        return Live(
            polls=cp.channel.polls_held,
            websockets=cp.presence.connected(),
            refusals={**limits.refusals, "auth": limits.auth.refused_total},
            sign_interval=cp.config.audit_sign_interval_seconds,
        )

    async def render(self) -> bytes:
        """The exposition (Prometheus text format 0.0.4), written in a thread: with 10,000
        nodes it is some 40,000 lines, which the event loop's held polls need not wait for."""
        fleet = await self.fleet()
        return await asyncio.to_thread(self._exposition, fleet, self.live())

    def _exposition(self, fleet: Fleet, live: Live) -> bytes:
        scrape = CollectorRegistry()
        scrape.register(_Snapshot(list(families(fleet, live))))
        text = generate_latest(self.registry) + generate_latest(scrape)
        return text + per_node_text(fleet).encode()
