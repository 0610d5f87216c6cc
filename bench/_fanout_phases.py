"""bench/fanout.py's two phases: real agents, then simulated ones."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import (
    BIN,
    BenchError,
    CpuCgroup,
    Proc,
    Server,
    child_setup,
    register_agent,
    running_server,
    stop_all,
    wait_until,
)
from _fanout_run import HERE, TRANSPORT_LABEL, Fleet, Run, one_run, pss_by_phase
from _simagent import SimNode, register_nodes

from control_plane.services.commands.rate import concurrency_limit


# Phase 1: real agents ------------------------------------------------------------------------
def register_real(server: Server, count: int, root: Path, parallel: int) -> list[Path]:
    """``corral-agent register`` ``count`` times against one activation; the state dirs."""
    activation = server.create_activation(count)
    dirs = [root / f"agent-{i:03d}" for i in range(count)]

    def one(state_dir: Path) -> None:
        register_agent(server, state_dir, activation)

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, dirs))
    return dirs


def _node_id(state_dir: Path) -> str:
    node_id: str = json.loads((state_dir / "state.json").read_text())["node_id"]
    return node_id


def _last_contact(state_dir: Path) -> float | None:
    try:
        value = json.loads((state_dir / "status.json").read_text()).get("last_contact")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, int | float) else None


def wait_real_ready(
    server: Server, agents: list[tuple[Proc, Path, str]], started: float, timeout: float
) -> float:
    """Every node Online on the server and every agent's status.json written after it started
    (it answered a poll).  Returns the seconds it took."""
    begin = time.monotonic()
    mine = {node_id for _, _, node_id in agents}
    with server.api() as api:

        def ready() -> bool:
            for proc, _, _ in agents:
                if not proc.alive():
                    raise BenchError(f"{proc.name} exited:\n{proc.stderr_tail()}")
            contacted = sum(1 for _, d, _ in agents if (_last_contact(d) or 0.0) >= started - 1.0)
            online = sum(
                1 for n in server.nodes(api) if n["node_id"] in mine and n["status"] == "Online"
            )
            print(
                f"  {contacted}/{len(agents)} agents answered a poll, {online} Online",
                file=sys.stderr,
            )
            return contacted == len(agents) and online == len(agents)

        wait_until(ready, timeout, "all real agents polling and Online", step=1.0)
    return time.monotonic() - begin


async def measure_runs(fleet: Fleet, args: argparse.Namespace, runs: list[Run]) -> None:
    tls = ssl.create_default_context(cafile=fleet.server.ca_file)
    headers = {"authorization": f"Bearer {fleet.server.token}"}
    async with (
        httpx.AsyncClient(
            base_url=fleet.server.url, verify=tls, headers=headers, timeout=60
        ) as api,
        httpx.AsyncClient(
            base_url=fleet.server.url,
            verify=tls,
            headers=headers,
            timeout=httpx.Timeout(60, read=None),
        ) as sse,
    ):
        await asyncio.to_thread(fleet.measure_pss)
        pss_by_phase[fleet.phase] = (len(fleet.node_ids), fleet.pss_idle)
        limits_done: set[int] = set()
        for concurrency in args.concurrency:
            limit = concurrency_limit(concurrency, len(fleet.node_ids))
            if limit in limits_done:
                print(
                    f"[{fleet.phase}] --max-concurrency {concurrency} = {limit} nodes, "
                    "already measured",
                    file=sys.stderr,
                )
                continue
            limits_done.add(limit)
            for index in range(1, args.runs + 1):
                await asyncio.sleep(args.settle)  # every agent back in a held poll
                print(
                    f"[{fleet.phase}] run {index}/{args.runs}, max concurrency {concurrency} ...",
                    file=sys.stderr,
                )
                try:
                    run = await one_run(fleet, api, sse, concurrency, index, args)
                except (BenchError, httpx.HTTPError) as exc:
                    run = Run(fleet.phase, len(fleet.node_ids), concurrency, limit, index)
                    run.problem = str(exc) or type(exc).__name__
                runs.append(run)
                stored = run.all_stored
                print(
                    f"[{fleet.phase}] all stored after "
                    f"{f'{stored:.3f} s' if stored is not None else '-'}"
                    f"{'; ' + run.problem if run.problem else ''}",
                    file=sys.stderr,
                )


def real_phase(root: Path, args: argparse.Namespace, runs: list[Run], transport: str) -> None:
    phase = f"real {TRANSPORT_LABEL[transport]}"
    root.mkdir()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(root))
        print(f"[real] registering {args.real} agents ...", file=sys.stderr)
        t = time.monotonic()
        dirs = register_real(server, args.real, root, args.register_parallel)
        print(f"[real] registered in {time.monotonic() - t:.1f} s", file=sys.stderr)
        for state_dir in dirs:
            with (state_dir / "agent.toml").open("a") as fh:
                fh.write(f'transport = "{transport}"\n')
        cgroup = None if args.no_cgroup else CpuCgroup.create("corral-bench-agents")
        if cgroup is not None:
            stack.callback(cgroup.remove)  # after the agents stopped (LIFO)
        procs: list[Proc] = []
        stack.callback(stop_all, procs)
        started = time.time()
        for i, state_dir in enumerate(dirs):
            procs.append(
                Proc(
                    [str(BIN / "corral-agent"), "run", "--state-dir", str(state_dir)],
                    root,
                    f"agent-{i:03d}",
                    cgroup,
                )
            )
        agents = [(p, d, _node_id(d)) for p, d in zip(procs, dirs, strict=True)]
        took = wait_real_ready(server, agents, started, args.ready_timeout)
        print(f"[real] all {args.real} agents ready after {took:.1f} s", file=sys.stderr)

        def roots() -> list[psutil.Process]:
            out = []
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    out.append(psutil.Process(proc.pid))
            return out

        fleet = Fleet(phase, server, [n for _, _, n in agents], cgroup, roots)
        asyncio.run(measure_runs(fleet, args, runs))
        dead = [p.name for p in procs if not p.alive()]
        if dead:
            raise BenchError(f"agents exited during the runs: {', '.join(dead)}")


# Phase 2: simulated agents -------------------------------------------------------------------
class SimWorker:
    """One bench/_simworker.py worker process: JSON commands on stdin, one answer per line."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.ps = psutil.Process(proc.pid)

    @classmethod
    async def start(
        cls, server: Server, name: str, log_dir: Path, cgroup: CpuCgroup | None, transport: str
    ) -> SimWorker:
        with (log_dir / f"{name}.err").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "_simworker.py"),
                "worker",
                "--url",
                server.url,
                "--ca-file",
                server.ca_file,
                "--transport",
                transport,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=child_setup(cgroup),
            )
        return cls(proc, name)

    async def call(self, command: dict[str, Any], within: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(within):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            raise BenchError(
                f"{self.name} did not answer {command['cmd']!r} in {within:g} s"
            ) from None
        if not line:
            raise BenchError(f"{self.name} exited (code {self.proc.returncode}); see its log")
        answer: dict[str, Any] = json.loads(line)
        return answer

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


async def sim_fleet_runs(
    server: Server,
    root: Path,
    cgroup: CpuCgroup | None,
    args: argparse.Namespace,
    runs: list[Run],
    transport: str,
) -> None:
    print(f"[sim] registering {args.sim} nodes ...", file=sys.stderr)
    t = time.monotonic()
    nodes: list[SimNode] = await register_nodes(server.url, server.ca_file, server.token, args.sim)
    print(f"[sim] registered in {time.monotonic() - t:.1f} s", file=sys.stderr)
    workers: list[SimWorker] = []
    try:
        for i in range(args.sim_procs):
            workers.append(
                await SimWorker.start(server, f"sim-worker-{i}", root, cgroup, transport)
            )
        t = time.monotonic()
        shares = [nodes[i :: len(workers)] for i in range(len(workers))]
        answers = await asyncio.gather(
            *(
                w.call(
                    {"cmd": "add", "nodes": [[n.node_id, n.key_b64] for n in share]},
                    max(120.0, len(share) / 4),
                )
                for w, share in zip(workers, shares, strict=True)
            )
        )
        failed = sum(len(a["failed"]) for a in answers)
        if failed:
            raise BenchError(f"{failed} simulated agents could not connect")
        mine = {n.node_id for n in nodes}
        with server.api() as api:

            def all_online() -> bool:
                listed = server.nodes(api)
                online = sum(1 for n in listed if n["node_id"] in mine and n["status"] == "Online")
                return online == len(mine)

            await asyncio.to_thread(wait_until, all_online, 60, "all simulated nodes Online", 1.0)
        print(
            f"[sim] {len(nodes)} agents polling and Online after {time.monotonic() - t:.1f} s",
            file=sys.stderr,
        )

        def roots() -> list[psutil.Process]:
            return [w.ps for w in workers]

        fleet = Fleet(
            f"sim {TRANSPORT_LABEL[transport]}", server, [n.node_id for n in nodes], cgroup, roots
        )
        await measure_runs(fleet, args, runs)
        stats = await asyncio.gather(*(w.call({"cmd": "stats"}, 30) for w in workers))
        errors = sum(s["errors"] for s in stats)
        if errors:
            kinds: Counter[str] = Counter()
            for s in stats:
                kinds.update(s["error_kinds"])
            print(f"[sim] simulated agents' errors: {dict(kinds)}", file=sys.stderr)
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def sim_phase(root: Path, args: argparse.Namespace, runs: list[Run], transport: str) -> None:
    root.mkdir()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server(root))
        cgroup = None if args.no_cgroup else CpuCgroup.create("corral-bench-sim")
        if cgroup is not None:
            stack.callback(cgroup.remove)
        asyncio.run(sim_fleet_runs(server, root, cgroup, args, runs, transport))
