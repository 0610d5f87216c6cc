"""The chaos harness's fleet and faults (bench/chaos.py): the server, the fault proxy, the
agents, and the schedule of commands and faults."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
from _chaos_fleet import SITECUSTOMIZE, Excuse, Node, last_contact, live_workers, write_zero
from _chaos_stream import MULTI_DOC, MULTI_DOCUMENT, Spec, log
from _common import (
    BIN,
    BenchError,
    CpuCgroup,
    Proc,
    Server,
    run_cli,
    wait_until,
)
from _proxy import FaultProxy

A = TypeVar("A")
KINDS: dict[str, int] = {
    "agent_kill9": 3,
    "worker_kill9": 2,
    "server_kill9": 1,
    "agent_stop": 2,
    "server_stop": 1,
    "proxy_drop": 1,
    "proxy_reset": 1,
    "proxy_stall": 1,
    "proxy_slice": 1,
    "proxy_refuse": 1,
    "disk_full": 1,
    "clock_jump": 1,
}


# The fleet ----------------------------------------------------------------------------------
class Chaos:
    def __init__(
        self,
        args: argparse.Namespace,
        root: Path,
        server: Server,
        proxy: FaultProxy,
        cgroup: CpuCgroup | None,
    ) -> None:
        self.args = args
        self.root = root
        self.server = server
        self.proxy = proxy
        self.cgroup = cgroup
        self.rng = random.Random(f"faults-{args.seed}")
        self.agents_dir = root / "agents"
        self.runs_dir = root / "runs"
        self.shim_dir = root / "clockshim"
        self.nodes: list[Node] = []
        self.faults: Counter[str] = Counter()
        self.exits: list[str] = []
        self.events = (root / "events.log").open("a", encoding="utf-8")
        self.timers: list[tuple[float, int, str, Callable[[], None]]] = []
        self._seq = 0
        self.t0 = time.monotonic()
        self.server_busy_until = 0.0
        self.server_down = False
        self.server_stopped = False
        self.server_starts = 1
        self.proxy_busy_until = 0.0
        self.excused: dict[tuple[str, str], Excuse] = {}  # (command id, node id)
        self.normal_fsize = resource.getrlimit(resource.RLIMIT_FSIZE)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, text: str) -> None:
        line = f"{self.now():8.2f}  {text}"
        self.events.write(line + "\n")
        self.events.flush()
        if self.args.verbose:
            log(line)

    def later(self, seconds: float, what: str, action: Callable[[], None]) -> None:
        self._seq += 1
        self.timers.append((self.now() + seconds, self._seq, what, action))
        self.timers.sort()

    def run_timers(self, everything: bool = False) -> None:
        while self.timers and (everything or self.timers[0][0] <= self.now()):
            _, _, what, action = self.timers.pop(0)
            self.event(f"end: {what}")
            action()

    # Setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.agents_dir.mkdir()
        self.runs_dir.mkdir()
        self.shim_dir.mkdir()
        (self.shim_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        with self.server.api() as api:
            content = json.dumps(MULTI_DOCUMENT)
            answer = api.post("/v1/documents", json={"name": MULTI_DOC, "content": content})
            if answer.status_code != 201:
                raise BenchError(f"creating {MULTI_DOC} failed: {answer.status_code} {answer.text}")
        activation = self.server.create_activation(self.args.agents)
        for i in range(self.args.agents):
            state_dir = self.agents_dir / f"agent-{i:02d}"
            node = Node(i, state_dir, self.root / f"clock-{i:02d}", "https" if i % 2 else "auto")
            node.clock_file.write_text("0")
            result = run_cli(
                [
                    str(BIN / "corral-agent"),
                    "register",
                    "--url",
                    self.proxy.url,
                    "--id",
                    activation["activation_id"],
                    "--code",
                    activation["activation_code"],
                    "--ca-hash",
                    self.server.ca_hash,
                    "--state-dir",
                    str(state_dir),
                    "--name",
                    node.name,
                    "--output",
                    "json",
                ]
            )
            if result.returncode != 0:
                raise BenchError(f"corral-agent register failed: {result.stderr.strip()}")
            node.node_id = json.loads(result.stdout)["node_id"]
            with (state_dir / "agent.toml").open("a") as fh:
                fh.write(
                    f'transport = "{node.transport}"\nbackoff_base_seconds = 0.2\n'
                    "backoff_cap_seconds = 3\npoll_wait_seconds = 10\nkill_grace_seconds = 1\n"
                )
            self.nodes.append(node)
        started = time.time()
        for node in self.nodes:
            self.start_agent(node)
        self.wait_ready(started)

    def start_agent(self, node: Node) -> None:
        node.starts += 1
        path = os.environ.get("PYTHONPATH")
        node.proc = Proc(
            [
                str(BIN / "corral-agent"),
                "run",
                "--state-dir",
                str(node.state_dir),
                "--log-format",
                "json",
            ],
            self.root,
            f"{node.name}-{node.starts}",
            self.cgroup,
            env={
                "PYTHONPATH": f"{self.shim_dir}{os.pathsep + path if path else ''}",
                "CORRAL_CHAOS_CLOCK": str(node.clock_file),
            },
        )
        node.down = node.stopped = False

    def wait_ready(self, started: float) -> None:
        with self.server.api() as api:

            def ready() -> bool:
                for node in self.nodes:
                    if node.proc is not None and not node.proc.alive():
                        raise BenchError(f"{node.name} exited:\n{node.proc.stderr_tail()}")
                online = {n["node_id"] for n in self.server.nodes(api) if n["status"] == "Online"}
                return all(
                    node.node_id in online and last_contact(node.state_dir) >= started - 1
                    for node in self.nodes
                )

            wait_until(ready, 120, "every agent Online and polling", step=0.5)

    # Faults -----------------------------------------------------------------------------
    def inject(self, kind: str) -> bool:
        """Inject one fault of this kind if a target is free now; False: try again later."""
        now = self.now()
        if kind.startswith("server_"):
            if self.server_busy_until > now or self.server_down:
                return False
            getattr(self, kind)()
        elif kind.startswith("proxy_"):
            if self.proxy_busy_until > now:
                return False
            getattr(self, kind)()
        else:
            free = [n for n in self.nodes if n.busy_until <= now and not n.down and n.proc]
            self.rng.shuffle(free)
            for node in free:
                if getattr(self, kind)(node):
                    break
            else:
                return False
        self.faults[kind] += 1
        return True

    def agent_kill9(self, node: Node) -> bool:
        assert node.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.popen.wait(timeout=30)
        node.down = True
        pause = self.rng.uniform(0.2, 3)
        node.busy_until = self.now() + pause + 1
        self.event(f"agent_kill9 {node.name} pid {node.proc.pid}; restart in {pause:.1f} s")
        self.later(pause, f"restart {node.name}", lambda: self.start_agent(node))
        return True

    def agent_stop(self, node: Node) -> bool:
        assert node.proc is not None
        pid = node.proc.pid
        pause = self.rng.uniform(1, 25)
        os.kill(pid, signal.SIGSTOP)
        node.stopped = True
        node.busy_until = self.now() + pause + 1
        self.event(f"agent_stop {node.name} pid {pid} for {pause:.1f} s")

        def cont() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            node.stopped = False

        self.later(pause, f"SIGCONT {node.name}", cont)
        return True

    def worker_kill9(self, node: Node) -> bool:
        workers = live_workers(node.state_dir)
        if not workers:
            return False
        pid, command_id = self.rng.choice(workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.excused[(command_id, node.node_id)] = Excuse(f"its worker (pid {pid}) was killed")
        node.busy_until = self.now() + 1
        self.event(f"worker_kill9 {node.name} pid {pid} command {command_id}")
        return True

    def disk_full(self, node: Node) -> bool:
        pause = self.rng.uniform(2, 8)
        begin = time.time()
        self._limit(node, 0)
        node.busy_until = self.now() + pause + 1
        self.event(f"disk_full {node.name} for {pause:.1f} s (RLIMIT_FSIZE 0 on {node.limited})")

        def free() -> None:
            self._limit(node, None)
            node.full.append((begin, time.time()))
            node.limited.clear()

        self.later(pause, f"disk space back on {node.name}", free)
        return True

    def _limit(self, node: Node, size: int | None) -> None:
        procs: list[psutil.Process] = []
        if node.proc is not None and node.proc.alive():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(node.proc.pid)
                procs += [root, *root.children(recursive=True)]
        for pid, _ in live_workers(node.state_dir):
            with contextlib.suppress(psutil.Error):
                worker = psutil.Process(pid)
                procs += [worker, *worker.children(recursive=True)]
        for pid in node.limited:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        value = (0, self.normal_fsize[1]) if size == 0 else self.normal_fsize
        for proc in {p.pid: p for p in procs}.values():
            with contextlib.suppress(psutil.Error, OSError):
                proc.rlimit(psutil.RLIMIT_FSIZE, value)
                if size == 0:
                    node.limited.add(proc.pid)

    def clock_jump(self, node: Node) -> bool:
        offset = self.rng.choice([-86400, -3600, -300, 300, 3600, 86400])
        pause = self.rng.uniform(3, 15)
        node.clock_file.write_text(str(offset))
        node.busy_until = self.now() + pause + 1
        self.event(f"clock_jump {node.name} by {offset:+d} s for {pause:.1f} s")
        self.later(pause, f"clock back on {node.name}", _bind(write_zero, node.clock_file))
        return True

    def server_kill9(self) -> None:
        proc = self.server.proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(timeout=30)
        self.server_down = True
        pause = self.rng.uniform(0.5, 6)
        self.server_busy_until = self.now() + pause + 2
        self.event(f"server_kill9 pid {proc.pid}; start again in {pause:.1f} s")
        self.later(pause, "server start", self.start_server)

    def start_server(self) -> None:
        old = self.server.proc
        assert old is not None
        self.server_starts += 1
        args = [str(a) for a in old.popen.args]  # type: ignore[union-attr]
        self.server.proc = Proc(args, self.root, f"server-{self.server_starts}", self.cgroup)
        wait_until(self.server._ready, 90, "the restarted server's /readyz", step=0.05)
        self.server_down = False

    def server_stop(self) -> None:
        proc = self.server.proc
        assert proc is not None
        pause = self.rng.uniform(1, 12)
        os.kill(proc.pid, signal.SIGSTOP)
        self.server_stopped = True
        self.server_busy_until = self.now() + pause + 1
        self.event(f"server_stop pid {proc.pid} for {pause:.1f} s")

        def cont() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self.server_stopped = False

        self.later(pause, "SIGCONT server", cont)

    def proxy_drop(self) -> None:
        self.event(f"proxy_drop: {self.proxy.drop()} connections closed")

    def proxy_reset(self) -> None:
        self.event(f"proxy_reset: {self.proxy.reset()} connections reset")

    def _proxy_timed(
        self, what: str, low: float, high: float, start: Callable[[float], None]
    ) -> None:
        pause = self.rng.uniform(low, high)
        start(pause)
        self.proxy_busy_until = self.now() + pause + 0.5
        self.event(f"{what} for {pause:.1f} s")

    def proxy_stall(self) -> None:
        self._proxy_timed("proxy_stall", 1, 15, self.proxy.stall)

    def proxy_slice(self) -> None:
        self._proxy_timed("proxy_slice", 2, 10, self.proxy.slice)

    def proxy_refuse(self) -> None:
        self._proxy_timed("proxy_refuse", 1, 8, self.proxy.refuse)

    def supervise(self) -> None:
        """Restart what exited on its own (as systemd would), and say so."""
        proc = self.server.proc
        if not self.server_down and proc is not None and not proc.alive():
            self.exits.append(f"server exited {proc.popen.returncode}: {proc.stderr_tail(3)}")
            self.event(f"UNEXPECTED server exit {proc.popen.returncode}")
            self.start_server()
        for node in self.nodes:
            if node.down or node.proc is None or node.proc.alive():
                continue
            code = node.proc.popen.returncode
            self.exits.append(f"{node.name} exited {code}: {node.proc.stderr_tail(3)}")
            self.event(f"UNEXPECTED {node.name} exit {code}")
            node.down = True
            self.later(1.0, f"restart {node.name} after its exit", _bind(self.start_agent, node))

    def end_faults(self) -> None:
        self.proxy.normal()
        self.run_timers(everything=True)
        for node in self.nodes:
            node.clock_file.write_text("0")
            if node.limited:
                self._limit(node, None)
            if node.proc is not None and node.stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.proc.pid, signal.SIGCONT)
        self.supervise()
        self.run_timers(everything=True)

    # The run ----------------------------------------------------------------------------
    def run(self, specs: list[Spec]) -> None:
        args = self.args
        self.t0 = time.monotonic()
        fault_times = sorted(self.rng.uniform(2, args.duration) for _ in range(args.faults))
        kinds = [k for k in KINDS if k in args.kinds]
        weights = [KINDS[k] for k in kinds]
        drawn: str | None = None
        drawn_at = 0.0
        pending = list(specs)
        with self.server.api(timeout=10) as api:
            while True:
                now = self.now()
                self.run_timers()
                self.supervise()
                while pending and pending[0].at <= now and self.server_up():
                    self.send(api, pending.pop(0))
                if fault_times and fault_times[0] <= now:
                    if drawn is None:
                        drawn, drawn_at = self.rng.choices(kinds, weights)[0], now
                    if self.inject(drawn):
                        fault_times.pop(0)
                        drawn = None
                    elif now - drawn_at > 15:  # nothing to hit (no worker running...)
                        self.event(f"no target for {drawn} for 15 s: another kind")
                        drawn = None
                if not pending and not fault_times and now >= args.duration:
                    break
                if now > args.duration * 3 + 120:
                    log(f"stopping the schedule with {len(fault_times)} faults not injected")
                    break
                time.sleep(0.05)
        self.event("schedule done: ending every fault")
        self.end_faults()

    def server_up(self) -> bool:
        return not (self.server_down or self.server_stopped)

    def send(self, api: httpx.Client, spec: Spec) -> None:
        body = spec.request(self.runs_dir, self.agents_dir, [n.node_id for n in self.nodes])
        spec.sent_at = time.time()
        try:
            answer = api.post("/v1/commands", json=body)
        except httpx.HTTPError as exc:
            spec.uncertain = True  # stored or not: found by its comment later
            self.event(f"send {spec.tag}: {type(exc).__name__}, looked up later")
            return
        if answer.status_code != 201:
            spec.uncertain = answer.status_code >= 500
            self.event(f"send {spec.tag}: {answer.status_code} {answer.text[:200]}")
            return
        spec.command_id = answer.json()["command_id"]
        self.event(f"sent {spec.tag} {spec.kind} -> {spec.command_id} on {spec.targets}")


def _bind(action: Callable[[A], object], arg: A) -> Callable[[], None]:
    def call() -> None:
        action(arg)

    return call
