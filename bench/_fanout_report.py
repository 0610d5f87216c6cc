"""bench/fanout.py's report: per-node times, stages, waves, budgets."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from _common import (
    code_under_test,
    mb,
    median,
    percentile,
    print_table,
    verdict,
)
from _fanout_run import (
    COMMAND,
    REAL_AIM_SECONDS,
    REAL_BUDGET_SECONDS,
    SIM_BUDGET_SECONDS,
    Run,
    pss_by_phase,
)

from agent import wire


# Report ---------------------------------------------------------------------------------------
def _s(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(values: Sequence[float], pct: float) -> str:
    return f"{percentile(values, pct):.3f}" if values else "-"


def report(runs: list[Run], args: argparse.Namespace) -> None:
    latency_rows: list[list[object]] = []
    resource_rows: list[list[object]] = []
    for r in runs:
        started, stored = r.values("started"), r.values("stored")
        budget = REAL_BUDGET_SECONDS if r.phase.startswith("real") else SIM_BUDGET_SECONDS
        all_stored = r.all_stored
        ok = not r.problem and all_stored is not None and all_stored <= budget
        label = f"{r.phase} {r.nodes}"
        latency_rows.append(
            [
                label,
                f"{r.concurrency} ({r.limit})",
                r.index,
                f"{r.statuses[wire.ST_SUCCESS]}/{r.nodes}",
                f"{r.post_ms:.0f}",
                _pct(started, 50),
                _pct(started, 99),
                _pct(stored, 50),
                _pct(stored, 99),
                _s(all_stored),
                _s(r.completed),
                len(r.waves),
                r.lost_events,
                f"{verdict(ok)} (<= {budget:g} s)",
            ]
        )
        resource_rows.append(
            [
                label,
                f"{r.concurrency} ({r.limit})",
                r.index,
                f"{r.window:.3f}",
                f"{r.server_cpu:.2f}",
                f"{100 * r.server_cpu / r.window:.0f}" if r.window else "-",
                f"{mb(r.server_rss_idle)}/{mb(r.server_rss_peak)}",
                f"{r.agents_cpu:.2f} {r.agents_cpu_how}" if r.window else "-",
                f"{mb(r.agents_rss_idle)}/{mb(r.agents_rss_peak)}",
                f"{r.bench_cpu:.2f}",
                f"{r.machine_percent:.0f}",
            ]
        )
    cores = os.cpu_count()
    print_table(
        f"Fan-out of `{COMMAND}` (AWS-RunShellScript), one server on SQLite, {cores} CPUs: "
        "seconds after t0 (just before POST /v1/commands)",
        [
            "fleet",
            "max conc",
            "run",
            "Success",
            "POST ms",
            "started p50",
            "started p99",
            "stored p50",
            "stored p99",
            "all stored",
            "completed",
            "waves",
            "lost ev",
            "budget",
        ],
        latency_rows,
    )
    print_table(
        "Resources from t0 until all stored (CPU s; CPU % of one core; RSS MB before/peak, "
        "summed over each side's processes)",
        [
            "fleet",
            "max conc",
            "run",
            "window s",
            "srv CPU s",
            "srv CPU %",
            "srv RSS MB",
            "agents CPU s",
            "agents RSS MB",
            "bench CPU s",
            "machine %",
        ],
        resource_rows,
    )
    breakdown_rows: list[list[object]] = []
    stages = (
        ("t0", "sent"),
        ("sent", "started"),
        ("started", "acked"),
        ("started", "ended"),
        ("ended", "stored_server"),
        ("stored_server", "stored"),
    )
    for r in runs:
        row: list[object] = [f"{r.phase} {r.nodes}", f"{r.concurrency} ({r.limit})", r.index]
        for first, then in stages:
            if first == "t0":
                gaps = r.values(then)
            else:
                gaps = [g for t in r.times if (g := t.gap(first, then)) is not None]
            row.append(f"{_pct(gaps, 50)} / {_pct(gaps, 99)}")
        breakdown_rows.append(row)
    print_table(
        "Where the time goes, per node, p50 / p99 s: t0 -> sent (the dispatcher round that "
        "queued the run_command; ramp-up waits here) -> started (agent) -> ended (agent) -> "
        "stored (server clock) -> event seen here; acked = the agent's InProgress event seen",
        [
            "fleet",
            "max conc",
            "run",
            "t0 -> sent",
            "sent -> started",
            "started -> acked",
            "started -> ended",
            "ended -> stored",
            "stored -> seen",
        ],
        breakdown_rows,
    )
    print()
    for r in runs:
        if r.waves:
            print(
                f"{r.phase} {r.concurrency} run {r.index}: send waves {r.waves}; {r.events} events"
            )
        if r.problem:
            print(f"{r.phase} {r.concurrency} run {r.index}: PROBLEM: {r.problem}")
    phases = dict.fromkeys(r.phase for r in runs)
    for phase in phases:
        real = phase.startswith("real")
        budget = REAL_BUDGET_SECONDS if real else SIM_BUDGET_SECONDS
        aim = REAL_AIM_SECONDS if real else None
        mine = [r for r in runs if r.phase == phase and r.concurrency == args.concurrency[0]]
        if not mine:
            continue
        totals = [r.all_stored for r in mine]
        measured = [t for t in totals if t is not None]
        if not measured:
            print(f"budget {phase}: no run finished")
            continue
        worst, mid = max(measured), median(measured)
        ok = len(measured) == len(totals) and worst <= budget and not any(r.problem for r in mine)
        aim_text = f"; aim {aim:g} s: {verdict(mid <= aim)}" if aim is not None else ""
        print(
            f"budget {phase}: {mine[0].nodes} nodes, --max-concurrency {args.concurrency[0]}, "
            f"all results stored <= {budget:g} s: {verdict(ok)} "
            f"(median {mid:.3f} s, worst {worst:.3f} s of {len(totals)} runs{aim_text})"
        )
    for phase, (count, pss) in pss_by_phase.items():
        if pss:
            print(
                f"{phase}: the agents' PSS before the runs {mb(pss)} MB, {mb(pss / count)} MB "
                "per node (RSS sums count shared pages once per process; PSS splits them)"
            )
    print(
        "(started = agent-reported started_at; stored = terminal event seen here; "
        "1 MB = 1048576 bytes)"
    )
    print(f"load average before the runs: {args.load_before}; before the report: {machine_load()}")
    print(f"code measured: {code_under_test()}")


def machine_load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())
