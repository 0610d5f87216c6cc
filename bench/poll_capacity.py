"""Capacity of one server on SQLite: N simulated agents connected, idle, then pings; and,
over the websocket control channel, the reconnect storm after a server restart.

For each transport of ``--transports`` (websocket, https; a fresh server each) and each N in
``--nodes`` (default 1000,5000,10000), growing one fleet: register the new nodes (activations
of <= 1000, ``POST /v1/agent/register`` with fresh Ed25519 keys), hand them to ``--procs``
processes of simulated agents (bench/_simagent.py: a real websocket channel each, signing in
on it as the agent does, or real HTTPS long-polls via httpx), wait until every one is
connected and the node list shows N Online, then

* hold idle for ``--hold`` seconds, sampling the server's RSS and CPU (and the simulated
  agents' CPU, to see whether the client side is the bottleneck);
* send ``--pings`` pings to random nodes through ``POST /v1/nodes/{id}/ping``, half one after
  the other, half in bursts of ``--ping-concurrency``: the client's wall time and the server's
  ``rtt_ms`` (ping queued -> pong stored), p50 and p99.

Growing stops at the first N the machine cannot carry (agents fail to connect, nodes not
Online, pings fail, ping p99 over ``--give-up-p99``, not enough open files).

Then, for the websocket fleet (unless ``--no-restart``): the server is restarted (SIGTERM,
which closes every channel with 1012, and started again on the same data), and the agents
reconnect with the agent's backoff (full jitter, 1 s base, 60 s cap): the time until every
one is back, the server's peak CPU and RSS meanwhile, and the connection errors seen.

Budgets (issue 10): 10,000 connected nodes with ping p99 < 1 s, server RSS <= 1.5 GB and idle
server CPU < 10 % of a core; after a restart all 10,000 back within 60 s, none given up.

    .venv/bin/python bench/poll_capacity.py [--transports websocket,https]
        [--nodes 1000,5000,10000] [--procs 2] [--hold 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import (
    BenchError,
    Server,
    alive,
    code_under_test,
    install_signal_handlers,
    raise_open_file_limit,
    run_main,
    running_server,
    tree_cpu_seconds,
    tree_rss,
    workdir,
)
from _poll_report import StepResult, StormResult, report, report_side_by_side, report_storms
from _simagent import SimNode, register_nodes

HERE = Path(__file__).resolve().parent
FD_HEADROOM = 1.2


# Worker processes --------------------------------------------------------------------------
class WorkerProc:
    """One bench/_simworker.py worker: JSON commands on stdin, one JSON answer per line."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.ps = psutil.Process(proc.pid)
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, server: Server, index: int, args: argparse.Namespace) -> WorkerProc:
        log = (Path(args.log_dir) / f"worker-{index}.err").open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "_simworker.py"),
                "worker",
                "--url",
                server.url,
                "--ca-file",
                server.ca_file,
                "--agents-per-client",
                str(args.agents_per_client),
                "--ramp",
                str(args.ramp),
                "--transport",
                args.transport,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        return cls(proc, f"worker-{index}")

    async def call(self, command: dict[str, Any], within: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(json.dumps(command).encode() + b"\n")
            await self.proc.stdin.drain()
            try:
                async with asyncio.timeout(within):
                    line = await self.proc.stdout.readline()
            except TimeoutError:
                raise BenchError(
                    f"{self.name} did not answer {command['cmd']!r} within {within:g} s"
                ) from None
        if not line:
            raise BenchError(f"{self.name} exited (code {self.proc.returncode}); see its log")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.ps)

    async def stop(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b'{"cmd": "stop"}\n')
                self.proc.stdin.close()
            try:
                async with asyncio.timeout(15):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                await self.proc.wait()


# One step -----------------------------------------------------------------------------------
class Fleet:
    def __init__(self, server: Server, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.workers: list[WorkerProc] = []
        self.nodes: list[SimNode] = []
        self.live: list[str] = []  # node ids whose agent answered a poll
        self.api = httpx.AsyncClient(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=server.ca_file),
            timeout=120,
            headers={"authorization": f"Bearer {server.token}"},
            limits=httpx.Limits(max_connections=args.ping_concurrency + 4),
        )
        self.server_ps = server.psutil_process()
        self.server_base_rss = tree_rss(self.server_ps)

    async def start(self) -> None:
        self.workers = [
            await WorkerProc.start(self.server, i, self.args) for i in range(self.args.procs)
        ]

    async def aclose(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        await self.api.aclose()

    async def worker_stats(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.call({"cmd": "stats"}, 30) for w in self.workers)))

    async def grow(self, target: int, result: StepResult) -> None:
        need = target - len(self.nodes)
        start = time.monotonic()
        new = await register_nodes(
            self.server.url,
            self.server.ca_file,
            self.server.token,
            need,
            first_index=len(self.nodes),
        )
        result.register_seconds = time.monotonic() - start
        self.nodes += new
        shares: list[list[SimNode]] = [
            new[i :: len(self.workers)] for i in range(len(self.workers))
        ]
        start = time.monotonic()
        timeout = max(120.0, need / 4)
        answers = await asyncio.gather(
            *(
                w.call({"cmd": "add", "nodes": [[n.node_id, n.key_b64] for n in share]}, timeout)
                for w, share in zip(self.workers, shares, strict=True)
            )
        )
        result.connect_seconds = time.monotonic() - start
        failed = {node_id for a in answers for node_id in a["failed"]}
        self.live += [n.node_id for n in new if n.node_id not in failed]
        result.connected = len(self.live)

    async def count_online(self) -> int:
        mine, online = set(self.live), 0
        params: dict[str, Any] = {"limit": 1000}
        while True:
            response = await self.api.get("/v1/nodes", params=params)
            response.raise_for_status()
            page = response.json()
            online += sum(
                1 for n in page["nodes"] if n["node_id"] in mine and n["status"] == "Online"
            )
            if not page.get("next_token"):
                return online
            params["next_token"] = page["next_token"]

    async def live_channels(self) -> tuple[int, int]:
        """(channels open now, errors so far) over every simulated-agent process."""
        stats = await self.worker_stats()
        return sum(s.get("live", 0) for s in stats), sum(s["errors"] for s in stats)

    async def storm(self, result: StormResult) -> None:
        """Restart the server; sample it every 0.5 s until every agent is back (or 180 s)."""
        _, errors0 = await self.live_channels()
        t0 = time.monotonic()
        result.away_seconds = await asyncio.to_thread(self.server.restart)
        self.server_ps = self.server.psutil_process()
        cpu, then = tree_cpu_seconds(self.server_ps), time.monotonic()
        while time.monotonic() - t0 < 180:
            await asyncio.sleep(0.5)
            now_cpu, now = tree_cpu_seconds(self.server_ps), time.monotonic()
            result.peak_cpu_percent = max(
                result.peak_cpu_percent, 100 * (now_cpu - cpu) / (now - then)
            )
            cpu, then = now_cpu, now
            result.peak_rss = max(result.peak_rss, tree_rss(self.server_ps))
            live, errors = await self.live_channels()
            result.back, result.errors = live, errors - errors0
            if live >= len(self.live):
                result.back_seconds = time.monotonic() - t0
                return

    async def hold(self, seconds: float, result: StepResult) -> None:
        before = await self.worker_stats()
        server_cpu0 = tree_cpu_seconds(self.server_ps)
        client_cpu0 = sum(w.cpu_seconds() for w in self.workers)
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end:
            result.server_rss.append(tree_rss(self.server_ps))
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
        result.server_rss.append(tree_rss(self.server_ps))
        wall = time.monotonic() - t0
        result.hold_seconds = wall
        server_cpu = tree_cpu_seconds(self.server_ps) - server_cpu0
        result.server_cpu_percent = 100 * server_cpu / wall
        client_cpu = sum(w.cpu_seconds() for w in self.workers) - client_cpu0
        result.client_cpu_percent = 100 * client_cpu / wall
        after = await self.worker_stats()
        polls = sum(a["polls"] for a in after) - sum(b["polls"] for b in before)
        result.polls_per_second = polls / wall
        result.server_cpu_ms_per_poll = 1000 * server_cpu / polls if polls else float("nan")

    async def ping_one(self, node_id: str, result: StepResult) -> None:
        start = time.perf_counter()
        try:
            response = await self.api.post(
                f"/v1/nodes/{node_id}/ping", json={"timeout_seconds": self.args.ping_timeout}
            )
        except httpx.HTTPError as exc:
            result.ping_failures.append(f"{type(exc).__name__}: {exc}")
            return
        wall_ms = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            result.ping_failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
            return
        result.ping_wall_ms.append(wall_ms)
        result.ping_rtt_ms.append(float(response.json()["rtt_ms"]))

    async def pings(self, count: int, concurrency: int, result: StepResult) -> None:
        targets = [random.choice(self.live) for _ in range(count)]
        sequential, burst = targets[: count // 2], targets[count // 2 :]
        for node_id in sequential:
            await self.ping_one(node_id, result)
        for i in range(0, len(burst), concurrency):
            async with asyncio.TaskGroup() as tg:
                for node_id in burst[i : i + concurrency]:
                    tg.create_task(self.ping_one(node_id, result))


async def run_step(fleet: Fleet, target: int, args: argparse.Namespace) -> StepResult:
    result = StepResult(nodes=target, server_base_rss=fleet.server_base_rss)
    try:
        await measure_step(fleet, target, args, result)
    except (BenchError, httpx.HTTPError) as exc:
        result.problem = str(exc) or type(exc).__name__
        if not alive(fleet.server_ps):
            result.problem = f"the server died ({result.problem}); see its log (--keep)"
    return result


async def measure_step(
    fleet: Fleet, target: int, args: argparse.Namespace, result: StepResult
) -> None:
    print(f"[{target}] registering {target - len(fleet.nodes)} nodes ...", file=sys.stderr)
    await fleet.grow(target, result)
    print(
        f"[{target}] registered in {result.register_seconds:.1f} s; "
        f"{result.connected} agents polling after {result.connect_seconds:.1f} s",
        file=sys.stderr,
    )
    if result.connected < target:
        result.problem = f"only {result.connected} of {target} agents could connect"
        return
    deadline = time.monotonic() + 60
    while True:
        result.online = await fleet.count_online()
        if result.online >= target or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    if result.online < target:
        result.problem = f"only {result.online} of {target} nodes Online"
        return
    print(f"[{target}] all Online; holding idle {args.hold:g} s ...", file=sys.stderr)
    await fleet.hold(args.hold, result)
    print(f"[{target}] pinging {args.pings} times ...", file=sys.stderr)
    await fleet.pings(args.pings, args.ping_concurrency, result)
    stats = await fleet.worker_stats()
    result.client_errors = sum(s["errors"] for s in stats)
    if result.client_errors:
        kinds: dict[str, int] = {}
        for s in stats:
            for kind, n in s["error_kinds"].items():
                kinds[kind] = kinds.get(kind, 0) + n
        print(f"[{target}] client-side errors so far: {kinds}", file=sys.stderr)
    if result.ping_failures:
        result.problem = f"{len(result.ping_failures)} pings failed: {result.ping_failures[0]}"
    elif result.p99_wall_seconds > args.give_up_p99:
        result.problem = f"ping p99 {result.p99_wall_seconds:.2f} s > {args.give_up_p99:g} s"
    result.online = await fleet.count_online()


async def bench(
    server: Server, args: argparse.Namespace, results: list[StepResult], storms: list[StormResult]
) -> None:
    """Grow the fleet step by step (each finished step is appended to ``results``); then, on
    the websocket channel, restart the server under it (``storms``)."""
    fleet = Fleet(server, args)
    try:
        await fleet.start()
        async with asyncio.timeout(args.max_seconds):
            for target in args.nodes:
                if target <= len(fleet.nodes):
                    continue
                if target * FD_HEADROOM > args.fd_limit:
                    results.append(
                        StepResult(target, problem=f"open-file limit {args.fd_limit} too low")
                    )
                    break
                step = await run_step(fleet, target, args)
                results.append(step)
                if step.problem:
                    print(f"[{target}] stopping: {step.problem}", file=sys.stderr)
                    break
            if args.transport == "websocket" and args.restart and fleet.live:
                storm = StormResult(nodes=len(fleet.live))
                print(f"[{storm.nodes}] restarting the server ...", file=sys.stderr)
                await fleet.storm(storm)
                storms.append(storm)
    except TimeoutError:
        print(f"stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
    finally:
        await fleet.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description="How many simulated agents one server carries on long-polls; ping latency."
    )
    parser.add_argument(
        "--nodes",
        type=lambda s: sorted(int(x) for x in s.split(",")),
        default=[1000, 5000, 10_000],
        help="fleet sizes to reach, comma-separated (1000,5000,10000)",
    )
    parser.add_argument(
        "--transports",
        type=lambda text: [t for t in text.split(",") if t],
        default=["websocket", "https"],
        help="each measured on a fresh server, in turn (websocket,https)",
    )
    parser.add_argument("--procs", type=int, default=2, help="simulated-agent processes (2)")
    parser.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="skip the server restart with the websocket fleet connected",
    )
    parser.add_argument(
        "--agents-per-client",
        type=int,
        default=20,
        help="agents sharing one httpx client (20; see bench/_simagent.py for why not 100)",
    )
    parser.add_argument("--ramp", type=int, default=50, help="agents connecting at once, per proc")
    parser.add_argument("--hold", type=float, default=30.0, help="idle hold per step, s (30)")
    parser.add_argument("--pings", type=int, default=60, help="pings per step (60)")
    parser.add_argument("--ping-concurrency", type=int, default=10, help="burst size (10)")
    parser.add_argument("--ping-timeout", type=float, default=30.0, help="per ping, s (30)")
    parser.add_argument(
        "--give-up-p99", type=float, default=5.0, help="stop growing past this ping p99, s (5)"
    )
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="overall limit (1800)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args()
    install_signal_handlers()

    args.fd_limit = raise_open_file_limit(1 << 20)  # inherited by the server and the workers
    by_transport: dict[str, list[StepResult]] = {}
    storms: list[StormResult] = []
    try:
        with workdir("poll", args.keep) as root:
            for transport in args.transports:
                args.transport = transport
                results: list[StepResult] = []
                by_transport[transport] = results
                (root / transport).mkdir()
                with running_server(root / transport) as server:
                    args.log_dir = str(root / transport)
                    asyncio.run(bench(server, args, results, storms))
    finally:
        for transport, results in by_transport.items():
            if results:  # also what was measured before an error or a signal
                report(results, args, transport)
        if storms:
            report_storms(storms)
        if len(by_transport) > 1:
            report_side_by_side(by_transport)
        print(f"code measured: {code_under_test()}")
    return 0


if __name__ == "__main__":
    run_main(main)
