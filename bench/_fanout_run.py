"""One fan-out run (bench/fanout.py): following a command by its events, the fleet, the
per-node times."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import (
    BenchError,
    CpuCgroup,
    PeakRss,
    Server,
    tree_cpu_seconds,
    tree_pids,
)

from agent import wire
from control_plane.services.commands.rate import concurrency_limit

HERE = Path(__file__).resolve().parent
REAL_BUDGET_SECONDS = 0.5  # issue 10 (was 1 s)
REAL_AIM_SECONDS = 0.3
SIM_BUDGET_SECONDS = 2.0  # issue 10, over the control channel (was 5 s)
TRANSPORT_LABEL = {"websocket": "ws", "https": "https"}
COMMAND = "echo hi"
EVENT_INVOCATION = "command.invocation_status_changed"
pss_by_phase: dict[str, tuple[int, int]] = {}  # phase -> (nodes, agents' PSS before the runs)


# Following a command: Server-Sent Events -----------------------------------------------------
@dataclass
class Arrival:
    at: float  # time.time() when the event was read here
    event: dict[str, Any]


class EventStream:
    """``GET /v1/events`` (all commands: the id is not known before the POST), each event
    stamped on arrival."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.arrivals: list[Arrival] = []
        self.connected = asyncio.Event()
        self.changed = asyncio.Event()
        self.error: str = ""
        self._terminal: dict[str, set[str]] = {}  # command id -> nodes with a terminal event

    def terminal_count(self, command_id: str) -> int:
        return len(self._terminal.get(command_id, ()))

    async def run(self) -> None:
        try:
            async with self._client.stream("GET", "/v1/events") as response:
                if response.status_code != 200:
                    self.error = f"HTTP {response.status_code}"
                    return
                kind, data = "", ""
                async for line in response.aiter_lines():
                    now = time.time()
                    if line.startswith(":"):
                        self.connected.set()
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif not line and data:
                        self._arrived(now, kind, data)
                        kind, data = "", ""
        except httpx.HTTPError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.connected.set()  # never leave a waiter hanging
            self.changed.set()

    def _arrived(self, now: float, kind: str, data: str) -> None:
        event: dict[str, Any] = json.loads(data)
        event.setdefault("type", kind)
        self.arrivals.append(Arrival(now, event))
        if event["type"] == EVENT_INVOCATION and event.get("status") in wire.TERMINAL_STATUSES:
            self._terminal.setdefault(str(event["command_id"]), set()).add(str(event["node_id"]))
        self.changed.set()


# One run ------------------------------------------------------------------------------------
@dataclass
class NodeTimes:
    """Seconds after t0 (None: never happened)."""

    node_id: str
    status: str
    sent: float | None  # the dispatcher round that queued its run_command
    started: float | None  # agent-reported started_at
    ended: float | None  # agent-reported ended_at
    acked: float | None  # the agent's InProgress event seen here: what lets the ramp go on
    stored: float | None  # terminal event seen here (else the server's updated_at)
    stored_server: float | None  # the server's clock when it stored the terminal update
    from_event: bool

    def gap(self, first: str, then: str) -> float | None:
        a, b = getattr(self, first), getattr(self, then)
        return None if a is None or b is None else b - a


@dataclass
class Run:
    phase: str
    nodes: int
    concurrency: str
    limit: int
    index: int
    post_ms: float = 0.0
    command_id: str = ""
    times: list[NodeTimes] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    completed: float | None = None
    waves: list[int] = field(default_factory=list)
    window: float = 0.0
    server_cpu: float = 0.0
    server_rss_idle: int = 0
    server_rss_peak: int = 0
    agents_cpu: float = 0.0
    agents_cpu_how: str = ""
    agents_rss_idle: int = 0
    agents_rss_peak: int = 0
    bench_cpu: float = 0.0
    machine_percent: float = 0.0
    events: int = 0
    problem: str = ""

    def values(self, what: str) -> list[float]:
        return [v for t in self.times if (v := getattr(t, what)) is not None]

    @property
    def all_stored(self) -> float | None:
        stored = self.values("stored")
        if len(stored) < self.nodes:
            return None
        return max(stored)

    @property
    def lost_events(self) -> int:
        return sum(1 for t in self.times if t.stored is not None and not t.from_event)


class Fleet:
    """What one phase measures against: the server, the node ids, the agents' CPU and pids."""

    def __init__(
        self,
        phase: str,
        server: Server,
        node_ids: list[str],
        cgroup: CpuCgroup | None,
        roots: Callable[[], list[psutil.Process]],
    ) -> None:
        self.phase = phase
        self.server = server
        self.node_ids = node_ids
        self.cgroup = cgroup
        self._roots = roots
        self.server_ps = server.psutil_process()
        self.pss_idle = 0  # the agents' summed PSS before the runs (0: not measurable)

    def measure_pss(self) -> None:
        total = 0
        for pid in self.agent_pids():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                total += psutil.Process(pid).memory_full_info().pss
        self.pss_idle = total

    def agents_cpu(self) -> float:
        if self.cgroup is not None:
            used = self.cgroup.cpu_seconds()
            if used is not None:
                return used
        return sum(tree_cpu_seconds(p) for p in self._roots())

    @property
    def agents_cpu_how(self) -> str:
        return "cgroup" if self.cgroup is not None else "sampled"

    def agent_pids(self) -> list[int]:
        if self.cgroup is not None:
            return self.cgroup.pids()
        return tree_pids(self._roots())


def _db_rows(db_path: Path, command_id: str) -> tuple[list[dict[str, Any]], float | None]:
    """Each invocation's times, at full precision, and the command's completed_at."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT node_id, status, sent_at, started_at, ended_at, updated_at "
            "FROM invocations WHERE command_id = ?",
            (command_id,),
        ).fetchall()
        done = conn.execute("SELECT completed_at FROM commands WHERE id = ?", (command_id,))
        completed = done.fetchone()
    finally:
        conn.close()
    return [dict(r) for r in rows], (completed[0] if completed else None)


async def one_run(
    fleet: Fleet,
    api: httpx.AsyncClient,
    sse_client: httpx.AsyncClient,
    concurrency: str,
    index: int,
    args: argparse.Namespace,
) -> Run:
    nodes = fleet.node_ids
    run = Run(
        fleet.phase, len(nodes), concurrency, concurrency_limit(concurrency, len(nodes)), index
    )
    stream = EventStream(sse_client)
    reader = asyncio.create_task(stream.run(), name="sse")
    try:
        async with asyncio.timeout(10):
            await stream.connected.wait()
        if stream.error:
            raise BenchError(f"GET /v1/events failed: {stream.error}")
        (await api.get("/readyz")).raise_for_status()  # the connection is open before t0
        server_pids = tree_pids([fleet.server_ps])
        rss = PeakRss(
            {"server": lambda: server_pids, "agents": fleet.agent_pids}, args.rss_interval
        )
        with rss:
            body = {
                "targets": ["all"],  # the phase's own server: its fleet, no more
                "document": "AWS-RunShellScript",
                "parameters": {"commands": [COMMAND]},
                "max_concurrency": concurrency,
                "comment": f"bench/fanout.py {fleet.phase} run {index}",
            }
            profiler = _profile(fleet, index, args)
            machine0 = psutil.cpu_times()
            server_cpu0, agents_cpu0 = tree_cpu_seconds(fleet.server_ps), fleet.agents_cpu()
            bench_cpu0 = time.process_time()
            t0 = time.time()
            response = await api.post("/v1/commands", json=body)
            run.post_ms = (time.time() - t0) * 1000
            if response.status_code != 201:
                raise BenchError(f"POST /v1/commands: {response.status_code} {response.text}")
            sent = response.json()
            run.command_id = command_id = str(sent["command_id"])
            if sent["target_count"] != len(nodes):
                raise BenchError(f"targets all: {sent['target_count']} nodes, not {len(nodes)}")
            await _wait_done(stream, api, command_id, len(nodes), args)
            run.window = time.time() - t0
            run.bench_cpu = time.process_time() - bench_cpu0
            run.server_cpu = tree_cpu_seconds(fleet.server_ps) - server_cpu0
            run.agents_cpu = fleet.agents_cpu() - agents_cpu0
            machine1 = psutil.cpu_times()
            _stop_profile(profiler)
        run.agents_cpu_how = fleet.agents_cpu_how
        busy0 = sum(machine0) - machine0.idle - getattr(machine0, "iowait", 0.0)
        busy1 = sum(machine1) - machine1.idle - getattr(machine1, "iowait", 0.0)
        cores = psutil.cpu_count() or 1
        run.machine_percent = 100 * (busy1 - busy0) / (run.window * cores) if run.window else 0
        run.server_rss_idle, run.server_rss_peak = rss.first["server"], rss.peak["server"]
        run.agents_rss_idle, run.agents_rss_peak = rss.first["agents"], rss.peak["agents"]
        await asyncio.sleep(0.2)  # late events (the command's own status change)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    db_path = fleet.server.data_dir / "corral.db"
    rows, completed = await asyncio.to_thread(_db_rows, db_path, command_id)
    _fill(run, stream, rows, completed, t0)
    if run.statuses[wire.ST_SUCCESS] != run.nodes:
        run.problem = f"not all Success: {dict(run.statuses)}"
    return run


def _profile(fleet: Fleet, index: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """With --profile DIR: py-spy samples the server over the run (folded stacks, for
    flamegraph.pl or speedscope)."""
    if not args.profile:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile) / f"server-{fleet.phase.replace(' ', '-')}-run{index}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(fleet.server_ps.pid), "--format", "raw", "--rate", "250",
         "--gil", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)  # attached before t0
    print(f"[profile] {out}", file=sys.stderr)
    return proc


def _stop_profile(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


async def _wait_done(
    stream: EventStream,
    api: httpx.AsyncClient,
    command_id: str,
    count: int,
    args: argparse.Namespace,
) -> None:
    """Until every node's terminal event arrived.  Only when no event came for --safety-poll
    s is the command fetched (a GET of a 1,000-node command costs the server tens of ms, so
    not while events flow); once it is complete per the API, 0.5 s more for stragglers."""
    end = time.monotonic() + args.run_timeout
    completed_seen: float | None = None
    while stream.terminal_count(command_id) < count:
        now = time.monotonic()
        if now > end:
            raise BenchError(
                f"command {command_id}: {stream.terminal_count(command_id)} of {count} "
                f"results after {args.run_timeout:g} s"
            )
        if completed_seen is not None and now - completed_seen > 0.5:
            return  # finished per the API, events lost
        stream.changed.clear()
        try:
            async with asyncio.timeout(args.safety_poll if completed_seen is None else 0.1):
                await stream.changed.wait()
        except TimeoutError:
            if completed_seen is None:
                state = (await api.get(f"/v1/commands/{command_id}")).json()
                if state.get("completed_at"):
                    completed_seen = time.monotonic()


def _fill(
    run: Run,
    stream: EventStream,
    rows: list[dict[str, Any]],
    completed: float | None,
    t0: float,
) -> None:
    def rel(ts: float | None) -> float | None:
        return None if ts is None else ts - t0

    seen: dict[str, float] = {}
    in_progress: dict[str, list[float]] = {}
    for arrival in stream.arrivals:
        event = arrival.event
        if event.get("command_id") != run.command_id:
            continue
        run.events += 1
        if event["type"] != EVENT_INVOCATION:
            continue
        node_id = str(event["node_id"])
        if event.get("status") in wire.TERMINAL_STATUSES:
            seen.setdefault(node_id, arrival.at)
        elif event.get("status") == wire.ST_IN_PROGRESS:
            # The first is the dispatcher's (sent to an Online node), the second the agent's.
            in_progress.setdefault(node_id, []).append(arrival.at)
    waves: Counter[float] = Counter()
    for row in rows:
        node_id, status = row["node_id"], row["status"]
        run.statuses[status] += 1
        terminal = status in wire.TERMINAL_STATUSES
        stored_server = rel(row["updated_at"]) if terminal else None
        stored = rel(seen.get(node_id)) if node_id in seen else stored_server
        acks = in_progress.get(node_id, [])
        run.times.append(
            NodeTimes(
                node_id,
                status,
                sent=rel(row["sent_at"]),
                started=rel(row["started_at"]),
                ended=rel(row["ended_at"]),
                acked=rel(acks[1]) if len(acks) > 1 else None,
                stored=stored,
                stored_server=stored_server,
                from_event=node_id in seen,
            )
        )
        if row["sent_at"] is not None:
            waves[row["sent_at"]] += 1
    run.waves = [waves[k] for k in sorted(waves)]
    run.completed = rel(completed)
