"""Prometheus metrics of the server and its fleet (``GET /metrics``, docs/monitoring.md).

- ``instruments.py``: the server's registry, its live histograms (request latency by route,
  dispatch latency) and the scrape;
- ``fleet.py``: what the database holds, read once per scrape (nodes by status, versions,
  commands and invocations by status, the audit chain, the database's size);
- ``families.py``: those figures as metric families, with their contract names.

The agent exposes nothing on the network: its own figures (outbox depth, workers, RSS) come
with its heartbeat and appear here per node.
"""

from control_plane.services.metrics.instruments import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "Metrics"]
