"""State Manager's scheduler (issue 11): its CPU per minute of schedule time and the lateness
of due runs with ``--associations 10000`` associations over ``--nodes 1000`` nodes; then the
agent's local scheduler idle with ``--local 50`` associations.

Server phase, in process (the scheduler is one loop of the server; in process its CPU is
measured alone, without the HTTP stack or the dispatcher, whose fan-out fanout.py measures):
a data dir made by ``init_data_dir``, the control plane started without its background
loops, ``--nodes`` nodes and ``--associations`` associations written straight to the
database (each node tagged ``group=gNN``, 100 groups; each association targets one group:
10 nodes, so each node holds about 100 associations, the most a node is sent).  The schedules
are mixed: rate(30 minutes) 30 %, rate(1 hour) 20 %, rate(4 hours) 10 %, rate(1 day) 10 %,
cron(0/30 * * * ? *) 10 %, cron(15 3 * * ? *) 10 % (Europe/Berlin) and cron(0 2 ? * SUN *)
10 % (America/New_York); the cron ones apply only at their interval.  Creation times spread
over the half hour before the start, so rate() slots spread too; documents are
AWS-RunShellScript with 50 different parameter sets.

The clock is the bench's: schedule time advances from pass to pass exactly as the loop would
sleep (``Scheduler.run_once`` answers when to look next), over ``--minutes 180`` minutes.
What a pass costs in real CPU is what it would cost on a real clock.  Figures:

* the first pass (every rate() association applied at once to its 10 nodes, every node
  sent its set of about 100): CPU and wall time;
* steady state: scheduler CPU per minute of schedule time, as % of a core (budget < 5 %);
* lateness of each scheduled run: from its due time (the loop wakes then) to its command
  stored, p50 / p99 / max (budget p99 < 1 s); runs per minute;
* the reconcile pass alone (targets of every association, every node's set compared).

Agent phase: a real server and one real ``corral-agent run``; ``--local 50`` associations
(rate(30 minutes)..rate(1 day), cron) are created targeting it through the API and applied;
once the agent holds them (``corral-agent status``), its CPU over ``--seconds 60`` (psutil,
process tree) and the same agent's CPU with none (budget < 0.05 % more).

    .venv/bin/python bench/scheduler.py [--nodes 1000] [--associations 10000] [--minutes 180]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BIN,
    Proc,
    install_signal_handlers,
    median,
    percentile,
    print_table,
    register_agent,
    run_cli,
    running_server,
    sample_tree,
    verdict,
    wait_until,
    workdir,
)

SCHEDULES: list[tuple[str, float, str, bool]] = [
    ("rate(30 minutes)", 0.3, "UTC", False),
    ("rate(1 hour)", 0.2, "UTC", False),
    ("rate(4 hours)", 0.1, "UTC", False),
    ("rate(1 day)", 0.1, "UTC", False),
    ("cron(0/30 * * * ? *)", 0.1, "UTC", True),
    ("cron(15 3 * * ? *)", 0.1, "Europe/Berlin", True),
    ("cron(0 2 ? * SUN *)", 0.1, "America/New_York", True),
]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _schedule_for(i: int) -> tuple[str, str, bool]:
    point = (i * 0.6180339887) % 1.0  # spread evenly, deterministic
    edge = 0.0
    for expr, share, zone, apply_only in SCHEDULES:
        edge += share
        if point < edge:
            return expr, zone, apply_only
    return SCHEDULES[-1][0], SCHEDULES[-1][2], SCHEDULES[-1][3]


async def _populate(cp: Any, nodes: int, count: int, start: float) -> None:
    from agent import schedules
    from control_plane.services.associations import Spec
    from control_plane.store import associations as store
    from control_plane.store import nodes as node_store

    async with cp.db.transaction() as conn:
        for i in range(nodes):
            node_id = "mi-" + uuid.uuid4().hex[:17]
            row = {
                "id": node_id,
                "name": f"node-{i:05d}",
                "activation_id": "bench",
                "public_key": "",
                "credential_expires_at": start + 86400 * 365,
                "generation": 1,
                "hostname": f"node-{i:05d}",
                "ip_addresses": [],
                "registered_at": start - 3600 + i * 0.001,
                "last_seen": None,
            }
            await node_store.insert(conn, row, {"group": f"g{i % 100:02d}"})
    rng = random.Random(20261204)
    rows = []
    for i in range(count):
        expr, zone, apply_only = _schedule_for(i)
        spec = Spec(
            name=f"bench-{i:05d}",
            document="AWS-RunShellScript",
            document_version=None,
            targets=[f"tag:group=g{i % 100:02d}"],
            parameters={"commands": [f"echo {i % 50}"]},
            schedule=expr,
            timezone=zone,
            apply_only_at_cron_interval=apply_only,
        )
        anchor = start - rng.uniform(0, 1800)
        parsed = schedules.parse(expr, "association")
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "version": 1,
                **spec.columns(),
                "anchor": anchor,
                "next_run_at": schedules.next_fire(parsed, start, zone, anchor=anchor),
                "last_slot": None,
                "created_at": anchor,
                "created_by": "bench",
                "updated_at": anchor,
                "updated_by": "bench",
            }
        )
    async with cp.db.transaction() as conn:
        for row in rows:
            await store.insert(conn, row)


async def server_phase(args: argparse.Namespace) -> dict[str, Any]:
    from control_plane.config import load_config
    from control_plane.services.hub import ControlPlane

    root = Path(args.root)
    start = float(int(time.time() // 60 * 60))
    clock = Clock(start)
    cp = ControlPlane(load_config(root / "srv"), clock=clock)
    await cp.start()
    t0 = time.perf_counter()
    await _populate(cp, args.nodes, args.associations, start)
    populate_s = time.perf_counter() - t0

    # Every scheduled run's completion (wall) and due time (schedule time).
    done: list[tuple[float, float | None, str]] = []
    runs = cp.association_runs
    real_start = runs.start_many

    async def timed_start(requests: list[Any]) -> Any:
        results = await real_start(requests)
        finished = time.perf_counter()
        for request, result in zip(requests, results, strict=True):
            if result is not None:
                done.append((finished, request.slot, request.trigger))
        return results

    runs.start_many = timed_start  # type: ignore[method-assign]
    # The first pass: every rate() association applied to its nodes, every set sent.
    process = psutil.Process()
    cpu0, wall0 = process.cpu_times(), time.perf_counter()
    wake = await cp.scheduler.run_once(start)
    cpu1, wall1 = process.cpu_times(), time.perf_counter()
    print(f"  first pass: {len(done)} runs, {wall1 - wall0:.1f} s", file=sys.stderr, flush=True)
    first = {
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "wall_s": wall1 - wall0,
        "runs": len(done),
    }
    done.clear()
    # Steady state: as the loop would, look again when run_once says.
    end = start + args.minutes * 60
    lateness: list[float] = []
    passes = 0
    reconciles: list[float] = []
    cpu_total = 0.0
    now = max(wake, start + 0.05)
    while now < end:
        clock.now = now
        job = cp.association_job
        before_reconcile = job._next_reconcile
        cpu0 = process.cpu_times()
        pass_started = time.perf_counter()
        marker = len(done)
        wake = await cp.scheduler.run_once(now)
        cpu1 = process.cpu_times()
        spent = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        cpu_total += spent
        passes += 1
        if job._next_reconcile != before_reconcile:
            reconciles.append(spent)
        for finished, slot, trigger in done[marker:]:
            if trigger == "schedule" and slot is not None:
                lateness.append(max(0.0, now - slot) + (finished - pass_started))
        if int((now - start) // 600) != int((max(wake, now + 0.05) - start) // 600):
            print(
                f"  {int((now - start) / 60)} min of schedule time: {len(lateness)} runs, "
                f"{cpu_total:.1f} s CPU",
                file=sys.stderr,
                flush=True,
            )
        now = max(wake, now + 0.05)
    async with cp.db.read() as conn:
        import sqlalchemy as sa

        from control_plane.store.schema import association_executions as ae

        by_trigger = dict(
            (
                await conn.execute(sa.select(ae.c.trigger, sa.func.count()).group_by(ae.c.trigger))
            ).all()
        )
    print(f"executions by trigger: {by_trigger}", file=sys.stderr)
    await cp.db.close()
    minutes = args.minutes
    return {
        "populate_s": populate_s,
        "first": first,
        "cpu_pct": cpu_total / (minutes * 60) * 100,
        "cpu_ms_per_min": cpu_total / minutes * 1000,
        "passes": passes,
        "runs": len(lateness),
        "runs_per_min": len(lateness) / minutes,
        "late_p50": percentile(lateness, 50) if lateness else 0.0,
        "late_p99": percentile(lateness, 99) if lateness else 0.0,
        "late_max": max(lateness) if lateness else 0.0,
        "reconcile_ms": median(reconciles) * 1000 if reconciles else 0.0,
        "reconciles": len(reconciles),
        "root": str(root),
    }


def agent_phase(args: argparse.Namespace) -> dict[str, Any]:
    with workdir("scheduler", args.keep) as root, running_server(root) as server:
        state = root / "agent"
        node_id = register_agent(server, state)
        (state / "agent.toml").open("a").write("poll_wait_seconds = 20\n")
        agent = Proc([str(BIN / "corral-agent"), "run", "--state-dir", str(state)], root, "agent")
        try:
            wait_until(
                lambda: any(
                    n["node_id"] == node_id and n["status"] == "Online" for n in server.nodes()
                ),
                60,
                "the agent Online",
            )
            time.sleep(5)
            proc = psutil.Process(agent.pid)
            idle = sample_tree(proc, args.seconds)
            schedules = ["rate(30 minutes)", "rate(1 hour)", "rate(1 day)", "cron(0 2 ? * SUN *)"]
            with server.api() as api:
                for i in range(args.local):
                    expr = schedules[i % len(schedules)]
                    body = {
                        "name": f"local-{i:02d}",
                        "document": "AWS-RunShellScript",
                        "parameters": {"commands": ["true"]},
                        "targets": [node_id],
                        "schedule": expr,
                        "apply_only_at_cron_interval": expr.startswith("cron"),
                    }
                    made = api.post("/v1/associations", json=body)
                    if made.status_code != 201:
                        raise SystemExit(f"creating an association failed: {made.text}")

            def held() -> bool:
                out = run_cli(
                    [
                        str(BIN / "corral-agent"),
                        "status",
                        "--state-dir",
                        str(state),
                        "--output",
                        "json",
                    ]
                )
                return (
                    out.returncode == 0
                    and json.dumps(json.loads(out.stdout)).count("local-") >= args.local
                )

            wait_until(held, 120, "the agent holding its associations")
            time.sleep(10)  # the applied runs finish; then idle
            busy = sample_tree(proc, args.seconds)
        finally:
            agent.stop()
    return {"idle_pct": idle.cpu_percent, "held_pct": busy.cpu_percent, "rss": median(busy.rss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--associations", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=180)
    parser.add_argument("--local", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--no-agent", action="store_true", help="Skip the agent phase.")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    install_signal_handlers()
    from control_plane.datadir import init_data_dir

    args.root = tempfile.mkdtemp(prefix="corral-bench-scheduler-")
    init_data_dir(Path(args.root) / "srv", [])
    server = asyncio.run(server_phase(args))
    first = server["first"]
    print_table(
        f"Server scheduler: {args.associations} associations, {args.nodes} nodes, "
        f"{args.minutes} minutes of schedule time",
        ["figure", "value", "budget"],
        [
            ["populate (direct inserts)", f"{server['populate_s']:.1f} s", ""],
            ["first pass: runs started", first["runs"], ""],
            ["first pass: CPU / wall", f"{first['cpu_s']:.1f} s / {first['wall_s']:.1f} s", ""],
            ["passes", server["passes"], ""],
            ["scheduled runs / minute", f"{server['runs_per_min']:.1f}", ""],
            ["scheduler CPU", f"{server['cpu_ms_per_min']:.0f} ms per minute = "
             f"{server['cpu_pct']:.2f} % of a core", f"< 5 % {verdict(server['cpu_pct'] < 5)}"],
            ["lateness p50", f"{server['late_p50'] * 1000:.1f} ms", ""],
            ["lateness p99", f"{server['late_p99'] * 1000:.1f} ms",
             f"< 1 s {verdict(server['late_p99'] < 1)}"],
            ["lateness max", f"{server['late_max'] * 1000:.1f} ms", ""],
            ["reconcile pass (median)", f"{server['reconcile_ms']:.0f} ms "
             f"({server['reconciles']} passes)", ""],
        ],
    )  # fmt: skip
    if args.no_agent:
        return
    agent = agent_phase(args)
    extra = agent["held_pct"] - agent["idle_pct"]
    print_table(
        f"Agent: local scheduler with {args.local} associations, {args.seconds:.0f} s",
        ["figure", "value", "budget"],
        [
            ["agent CPU, no associations", f"{agent['idle_pct']:.3f} %", ""],
            [f"agent CPU, {args.local} associations", f"{agent['held_pct']:.3f} %", ""],
            ["difference", f"{extra:+.3f} %", f"< 0.05 % {verdict(extra < 0.05)}"],
            ["agent RSS (median)", f"{agent['rss'] / 1e6:.1f} MB", ""],
        ],
    )


if __name__ == "__main__":
    main()
