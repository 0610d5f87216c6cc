"""bench/poll_capacity.py's budgets, its per-step results and the report of them."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field

from _common import (
    MB,
    mb,
    median,
    percentile,
    print_table,
    verdict,
)

BUDGET_NODES = 10_000
BUDGET_P99_SECONDS = 1.0
BUDGET_RSS_MB = 1536
BUDGET_IDLE_CPU_PERCENT = 10.0
BUDGET_BACK_SECONDS = 60.0


@dataclass
class StormResult:
    """A server restart with the fleet connected (websocket)."""

    nodes: int
    away_seconds: float = 0.0  # stop until /readyz
    back_seconds: float = float("inf")  # stop until every agent is connected again
    back: int = 0
    peak_cpu_percent: float = 0.0
    peak_rss: int = 0
    errors: int = 0


@dataclass
class StepResult:
    nodes: int
    register_seconds: float = 0.0
    connect_seconds: float = 0.0
    connected: int = 0
    online: int = 0
    hold_seconds: float = 0.0
    server_rss: list[int] = field(default_factory=list)
    server_cpu_percent: float = 0.0
    client_cpu_percent: float = 0.0
    polls_per_second: float = 0.0
    server_cpu_ms_per_poll: float = 0.0
    server_base_rss: int = 0
    client_errors: int = 0
    ping_wall_ms: list[float] = field(default_factory=list)
    ping_rtt_ms: list[float] = field(default_factory=list)
    ping_failures: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def p99_wall_seconds(self) -> float:
        return percentile(self.ping_wall_ms, 99) / 1000 if self.ping_wall_ms else float("inf")


def report(results: list[StepResult], args: argparse.Namespace, transport: str) -> None:
    def ms(values: list[float], pct: float) -> str:
        return f"{percentile(values, pct):.0f}" if values else "-"

    rows: list[list[object]] = []
    prev_nodes, prev_rss = 0, float(results[0].server_base_rss) if results else 0.0
    for r in results:
        # Server memory each added node costs: RSS growth since the previous step (or since
        # the server started, for the first step) over the nodes added.
        kb_per_node = "-"
        if r.server_rss:
            rss = median(r.server_rss)
            kb_per_node = f"{(rss - prev_rss) / 1024 / (r.nodes - prev_nodes):.0f}"
            prev_nodes, prev_rss = r.nodes, rss
        ms_per_poll = r.server_cpu_ms_per_poll
        rows.append(
            [
                r.nodes,
                f"{r.register_seconds:.1f}",
                f"{r.connect_seconds:.1f}",
                f"{r.connected}/{r.online}",
                mb(median(r.server_rss)) if r.server_rss else "-",
                mb(max(r.server_rss)) if r.server_rss else "-",
                kb_per_node,
                f"{r.server_cpu_percent:.1f}" if r.hold_seconds else "-",
                f"{r.client_cpu_percent:.1f}" if r.hold_seconds else "-",
                f"{r.polls_per_second:.0f}" if r.hold_seconds else "-",
                f"{ms_per_poll:.1f}" if r.hold_seconds and not math.isnan(ms_per_poll) else "-",
                ms(r.ping_wall_ms, 50),
                ms(r.ping_wall_ms, 99),
                ms(r.ping_rtt_ms, 50),
                ms(r.ping_rtt_ms, 99),
                f"{len(r.ping_wall_ms)}/{len(r.ping_wall_ms) + len(r.ping_failures)}",
                r.client_errors,
            ]
        )
    print_table(
        f"[{transport}] capacity, one server on SQLite, {os.cpu_count()} CPUs, {args.procs} client "
        f"process(es); idle hold {args.hold:g} s; {args.pings} pings per step "
        f"(half sequential, half in bursts of {args.ping_concurrency})",
        [
            "nodes",
            "register s",
            "connect s",
            "connected/Online",
            "srv RSS med MB",
            "srv RSS max MB",
            "srv KB/added node",
            "srv CPU %",
            "client CPU %",
            "polls/s",
            "srv CPU ms/poll",
            "ping p50 ms",
            "ping p99 ms",
            "rtt p50 ms",
            "rtt p99 ms",
            "pings ok",
            "client errs",
        ],
        rows,
    )
    for r in results:
        if r.problem:
            print(f"stopped growing at {r.nodes} nodes: {r.problem}")
    at_budget = [r for r in results if r.nodes == BUDGET_NODES]
    if at_budget:
        r = at_budget[0]
        rss_mb = max(r.server_rss) / MB if r.server_rss else float("inf")
        checks = [
            (f"ping p99 < {BUDGET_P99_SECONDS:g} s", f"{r.p99_wall_seconds * 1000:.0f} ms",
             not r.problem and r.p99_wall_seconds < BUDGET_P99_SECONDS),
            (f"server RSS <= {BUDGET_RSS_MB} MB", f"{rss_mb:.0f} MB", rss_mb <= BUDGET_RSS_MB),
            (f"idle server CPU < {BUDGET_IDLE_CPU_PERCENT:g} %", f"{r.server_cpu_percent:.1f} %",
             r.hold_seconds > 0 and r.server_cpu_percent < BUDGET_IDLE_CPU_PERCENT),
        ]  # fmt: skip
        for what, value, ok in checks:
            print(f"budget at {BUDGET_NODES} nodes, {what}: {value} {verdict(ok)}")
    else:
        print(f"budget: {BUDGET_NODES} nodes not measured (add it to --nodes)")
    print("(CPU % is of one core, averaged over the idle hold; 1 MB = 1048576 bytes)")


def report_storms(storms: list[StormResult]) -> None:
    print_table(
        "[websocket] server restart with the fleet connected (SIGTERM, start again; the agents "
        "back off with full jitter, 1 s base, 60 s cap)",
        ["nodes", "server away s", "all back after s", "back", "peak srv CPU %",
         "peak srv RSS MB", "connect errors", "budget"],
        [
            [s.nodes, f"{s.away_seconds:.1f}", f"{s.back_seconds:.1f}", f"{s.back}/{s.nodes}",
             f"{s.peak_cpu_percent:.0f}", mb(s.peak_rss), s.errors,
             f"{verdict(s.back >= s.nodes and s.back_seconds <= BUDGET_BACK_SECONDS)} "
             f"(all back <= {BUDGET_BACK_SECONDS:g} s)"]
            for s in storms
        ],
    )  # fmt: skip


def report_side_by_side(by_transport: dict[str, list[StepResult]]) -> None:
    sizes = sorted({r.nodes for results in by_transport.values() for r in results})
    names = list(by_transport)
    rows = []
    for n in sizes:
        row: list[object] = [n]
        for name in names:
            r = next((r for r in by_transport[name] if r.nodes == n), None)
            if r is None or not r.ping_wall_ms:
                row += ["-", "-", "-"]
                continue
            row += [
                f"{percentile(r.ping_wall_ms, 99):.0f}",
                mb(max(r.server_rss)) if r.server_rss else "-",
                f"{r.server_cpu_percent:.1f}",
            ]
        rows.append(row)
    headers = ["nodes"]
    for name in names:
        headers += [f"{name} ping p99 ms", f"{name} srv RSS MB", f"{name} idle srv CPU %"]
    print_table("Side by side", headers, rows)
