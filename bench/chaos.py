"""Fault injection: a real server, real agents, a stream of commands and faults drawn at random;
then every result is checked (issue 17).

Setup: ``corral-server`` on a free loopback port (SQLite), a fault proxy in front of it
(bench/_proxy.py: it terminates TLS with the server's own certificate, so it can refuse
requests over ``--proxy-limit`` with a 413 as nginx would), ``--agents`` real ``corral-agent``
processes registered *through the proxy* (their server URL is the proxy's), every other one on
``transport = "https"`` (long-poll; the proxy's request limit applies to it) and the rest on
the default ``auto`` (the websocket channel: the proxy relays its frames unlimited).

The stream: ``--commands`` commands sent over ``--duration`` seconds, each to one node (one in
five to two or three): no output, a few lines, 24 KB to 200 KB of stdout and up to 20 KB of
stderr (beyond the record: blob uploads), failing scripts (exit 1-99), sleeping ones (1-8 s)
and three-step documents.  Each step first makes a directory ``runs/<tag>/<node>.s<step>.<pid>``
(a directory, not a line in a file: a full-disk fault limits file sizes, not mkdir), then prints
lines derived from the command's tag (an ASCII line with one multi-byte character, repeated), so
what it printed is known here byte for byte.

The faults: ``--faults`` of them at random times (``--kinds``, weights in KINDS):

- ``agent_kill9``: SIGKILL the agent process (its workers live on), restart it 0.2-3 s later;
- ``worker_kill9``: SIGKILL a running document worker (found by the journal's worker.json);
  its command may end Failed: such a result is excused, not counted as lost;
- ``server_kill9``: SIGKILL the server, start it again 0.5-6 s later on the same data dir and
  port;
- ``agent_stop`` / ``server_stop``: SIGSTOP for 1-25 s (agent) or 1-12 s (server), SIGCONT;
- ``proxy_drop`` / ``proxy_reset``: close (FIN) or abort (RST) every proxied connection;
- ``proxy_stall``: no byte forwarded for 1-15 s, nothing closed;
- ``proxy_slice``: bytes forwarded 1-64 at a time for 2-10 s;
- ``proxy_refuse``: the proxy stops listening for 1-8 s (connection refused);
- ``disk_full``: RLIMIT_FSIZE set to 0 (prlimit, no privileges) on the agent, its fork server
  and its workers for 2-8 s: every write that would grow a file fails (EFBIG), as on a full
  disk; results of commands running then may honestly fail: excused;
- ``clock_jump``: the agent's wall clock (``time.time``/``time_ns`` of the agent, its fork
  server and workers: a ``sitecustomize`` on their PYTHONPATH adds an offset read from a file)
  jumps by +-5 min to +-1 day for 3-15 s.  Not the system clock (that needs CAP_SYS_TIME and
  would hit the whole machine), not C-level clocks (OpenSSL, ``datetime.now``); faketime is
  not installed here.

An agent or the server that exits without being killed is restarted after a second (as
systemd's ``Restart=`` would) and listed under "unexpected exits".

At the end every fault is ended, the server and agents are up, and the harness waits
(``--settle``) for every command and invocation to be final, then checks, per invocation:
**hanging** (not final), **doubled** (a step ran more than once), **lost** (the final status
or exit code is not the script's and no fault excuses it, or the status is right but an
output differs from what the script printed: fetched through the output route, blobs
included, waiting for late blob uploads), and per agent **dead** (rows in its outbox's dead
table).  Exit status 1 if any of the four is non-zero.  The seed is printed at the start and
the end; it fixes the command stream and the fault schedule (kinds, times, durations, targets
drawn); which worker a worker kill hits depends on what runs at that moment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shlex
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from _common import (
    BIN,
    BenchError,
    CpuCgroup,
    Proc,
    Server,
    code_under_test,
    install_signal_handlers,
    print_table,
    run_cli,
    running_server,
    stop_all,
    wait_until,
    workdir,
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
COMMAND_KINDS: dict[str, int] = {
    "empty": 1,
    "small": 3,
    "big": 2,
    "fail": 2,
    "sleep": 2,
    "multi": 2,
}
FINAL = {"Success", "Failed", "Cancelled", "TimedOut", "Undeliverable"}
MULTI_DOC = "Chaos-MultiStep"
MULTI_STEPS = ("one", "two", "three")
MARK = "\u2713"  # three bytes of UTF-8, six of JSON \u escape
SITECUSTOMIZE = '''\
"""Chaos harness: this process's wall clock plus an offset read from $CORRAL_CHAOS_CLOCK."""
import os as _os
import time as _time

_path = _os.environ.get("CORRAL_CHAOS_CLOCK")
if _path:
    _real_time, _real_ns, _mono = _time.time, _time.time_ns, _time.monotonic
    _cache = [0.0, -1.0]

    def _offset():
        now = _mono()
        if now - _cache[1] > 0.2:
            _cache[1] = now
            try:
                with open(_path) as fh:
                    _cache[0] = float(fh.read() or 0)
            except (OSError, ValueError):
                _cache[0] = 0.0
        return _cache[0]

    _time.time = lambda: _real_time() + _offset()
    _time.time_ns = lambda: _real_ns() + int(_offset() * 1e9)
'''


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The command stream --------------------------------------------------------------------------
@dataclass
class StepSpec:
    line: str  # stdout: this line (a newline added) repeated, cut at stdout_bytes
    stdout_bytes: int
    err_line: str
    stderr_bytes: int
    sleep: float = 0.0
    exit_code: int = 0

    def expected(self, stream: str) -> bytes:
        line, size = (
            (self.line, self.stdout_bytes)
            if stream == "stdout"
            else (self.err_line, self.stderr_bytes)
        )
        unit = (line + "\n").encode()
        text = (unit * (size // len(unit) + 1))[:size]
        if stream == "stderr" and self.exit_code:  # the agent's own line, as SSM Agent's
            text += f"failed to run commands: exit status {self.exit_code}\n".encode()
        return text


@dataclass
class Spec:
    tag: str
    kind: str
    targets: list[int]
    steps: list[StepSpec]
    at: float
    command_id: str | None = None
    sent_at: float | None = None  # time.time() here
    uncertain: bool = False  # the POST failed in a way that may have stored it

    @property
    def expected_status(self) -> str:
        return "Failed" if any(s.exit_code for s in self.steps) else "Success"

    @property
    def expected_code(self) -> int:
        return next((s.exit_code for s in reversed(self.steps) if s.exit_code), 0)

    def script(self, index: int, runs: Path, agents: Path) -> list[str]:
        step = self.steps[index]
        mine = shlex.quote(str(runs / self.tag))
        lines = [
            f"n=${{0#{shlex.quote(str(agents))}/}}; n=${{n%%/*}}",
            f'mkdir -p {mine} && mkdir {mine}/"$n".s{index}.$$',
        ]
        if step.sleep:
            lines.append(f"sleep {step.sleep:g}")
        if step.stdout_bytes:
            lines.append(f"yes {shlex.quote(step.line)} | head -c {step.stdout_bytes}")
        if step.stderr_bytes:
            lines.append(f"yes {shlex.quote(step.err_line)} | head -c {step.stderr_bytes} >&2")
        if step.exit_code:
            lines.append(f"exit {step.exit_code}")
        return lines

    def request(self, runs: Path, agents: Path, node_ids: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "targets": [node_ids[i] for i in self.targets],
            "comment": self.tag,
            "timeout_seconds": 600,
            "max_errors": "100%",
        }
        if self.kind == "multi":
            body["document"] = MULTI_DOC
            body["parameters"] = {
                name: self.script(i, runs, agents) for i, name in enumerate(MULTI_STEPS)
            }
        else:
            body["parameters"] = {"commands": self.script(0, runs, agents)}
        return body


def _sized(line: str, wanted: int) -> int:
    """A size near ``wanted`` that cuts no line (so no multi-byte character) in half."""
    unit = len((line + "\n").encode())
    return max(unit, wanted // unit * unit) if wanted else 0


def make_step(rng: random.Random, tag: str, index: int, kind: str) -> StepSpec:
    line = f"{tag} s{index} out {MARK} chaos"
    err_line = f"{tag} s{index} err {MARK}"
    if kind == "empty":
        return StepSpec(line, 0, err_line, 0)
    if kind == "big":
        out = rng.choice([23_990, 24_010, 30_000, 64_000, 100_000, 200_000])
        err = rng.choice([0, 7_990, 8_010, 20_000])
        return StepSpec(line, _sized(line, out), err_line, _sized(err_line, err))
    step = StepSpec(
        line,
        _sized(line, rng.randint(1, 40) * 40),
        err_line,
        _sized(err_line, rng.choice([0, 0, 100, 2_000])),
    )
    if kind == "sleep":
        step.sleep = round(rng.uniform(1, 8), 1)
    if kind == "fail":
        step.exit_code = rng.randint(1, 99)
    return step


def make_stream(
    rng: random.Random, count: int, nodes: int, duration: float, kinds: list[str]
) -> list[Spec]:
    specs = []
    names = [k for k in COMMAND_KINDS if k in kinds]
    weights = [COMMAND_KINDS[k] for k in names]
    for i in range(count):
        kind = rng.choices(names, weights)[0]
        tag = f"c{i:04d}{rng.randrange(16**6):06x}"
        if kind == "multi":
            steps = [
                make_step(rng, tag, j, rng.choice(["small", "big", "empty", "sleep"]))
                for j in range(len(MULTI_STEPS))
            ]
        else:
            steps = [make_step(rng, tag, 0, kind)]
        width = 1 if nodes == 1 or rng.random() < 0.8 else rng.randint(2, min(3, nodes))
        targets = sorted(rng.sample(range(nodes), width))
        specs.append(Spec(tag, kind, targets, steps, at=rng.uniform(0, duration)))
    return sorted(specs, key=lambda s: s.at)


MULTI_DOCUMENT = {
    "schemaVersion": "2.2",
    "description": "chaos harness: three shell steps",
    "parameters": {name: {"type": "StringList"} for name in MULTI_STEPS},
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": name,
            "inputs": {"runCommand": "{{ " + name + " }}"},
        }
        for name in MULTI_STEPS
    ],
}


# The fleet ----------------------------------------------------------------------------------
@dataclass
class Node:
    index: int
    state_dir: Path
    clock_file: Path
    transport: str
    node_id: str = ""
    proc: Proc | None = None
    starts: int = 0
    down: bool = False  # killed here; a restart is scheduled
    stopped: bool = False
    busy_until: float = 0.0
    full: list[tuple[float, float]] = field(default_factory=list)  # time.time() windows
    limited: set[int] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.state_dir.name


@dataclass
class Excuse:
    why: str


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
                    node.node_id in online and _last_contact(node.state_dir) >= started - 1
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
        self.later(pause, f"clock back on {node.name}", _bind(_write_zero, node.clock_file))
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


def _write_zero(path: Path) -> None:
    path.write_text("0")


def _last_contact(state_dir: Path) -> float:
    try:
        value = json.loads((state_dir / "status.json").read_text()).get("last_contact")
    except (OSError, ValueError):
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def live_workers(state_dir: Path) -> list[tuple[int, str]]:
    """(pid, command id) of each document worker running for this agent, from the journal."""
    out: list[tuple[int, str]] = []
    commands = state_dir / "commands"
    if not commands.is_dir():
        return out
    for folder in commands.iterdir():
        if (folder / "done").exists():
            continue
        try:
            pid = int(json.loads((folder / "worker.json").read_text())["pid"])
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if not any("agent.execution" in part for part in proc.cmdline()):
                continue
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue
        out.append((pid, folder.name))
    return out


# Checks -------------------------------------------------------------------------------------
@dataclass
class Verdict:
    hanging: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    dead: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)  # left undelivered (a hint)
    excused: list[str] = field(default_factory=list)
    never_sent: int = 0
    invocations: int = 0
    intact: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "doubled": len(self.doubled),
            "hanging": len(self.hanging),
            "dead": sum(rows for rows in self.dead.values() if rows > 0),
        }


def reconcile(api: httpx.Client, specs: list[Spec]) -> None:
    """Commands whose POST failed half-way: stored (found by the tag in their comment) or not."""
    unsure = {s.tag: s for s in specs if s.uncertain and s.command_id is None}
    if not unsure:
        return
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = api.get("/v1/commands", params=params)
        page.raise_for_status()
        data = page.json()
        for command in data["commands"]:
            spec = unsure.get(command.get("comment", ""))
            if spec is not None:
                spec.command_id = command["command_id"]
        if not data.get("next_token"):
            return
        params["next_token"] = data["next_token"]


def wait_final(api: httpx.Client, specs: list[Spec], timeout: float) -> dict[str, dict[str, Any]]:
    """Every sent command's view, once all are final or at the deadline."""
    views: dict[str, dict[str, Any]] = {}
    left = {s.command_id for s in specs if s.command_id}
    end = time.monotonic() + timeout
    while left:
        for command_id in sorted(left):
            with contextlib.suppress(httpx.HTTPError):
                answer = api.get(f"/v1/commands/{command_id}")
                if answer.status_code == 200:
                    views[command_id] = view = answer.json()
                    if _final(view):
                        left.discard(command_id)
        if not left or time.monotonic() > end:
            break
        log(f"  {len(left)} commands not final yet")
        time.sleep(2)
    return views


def _final(view: dict[str, Any]) -> bool:
    return view["status"] in FINAL and all(i["status"] in FINAL for i in view["invocations"])


def _output(api: httpx.Client, spec: Spec, node_id: str, step: int, stream: str) -> bytes:
    params = {"stream": stream}
    if spec.kind == "multi":
        params["step"] = MULTI_STEPS[step]
    answer = api.get(f"/v1/commands/{spec.command_id}/invocations/{node_id}/output", params=params)
    answer.raise_for_status()
    return answer.content


def check(
    chaos: Chaos, api: httpx.Client, specs: list[Spec], views: dict[str, dict[str, Any]]
) -> Verdict:
    verdict = Verdict()
    runs = Counter(
        (p.parent.name, p.name.rsplit(".", 1)[0]) for p in chaos.runs_dir.glob("*/*")
    )  # (tag, "agent-00.s0") -> runs
    by_id = {n.node_id: n for n in chaos.nodes}
    to_compare: list[tuple[Spec, str, str]] = []
    for spec in specs:
        if spec.command_id is None:
            verdict.never_sent += 1
            continue
        view = views.get(spec.command_id)
        if view is None:
            verdict.hanging.append(f"{spec.tag} {spec.command_id}: never seen")
            continue
        if view["status"] not in FINAL and all(i["status"] in FINAL for i in view["invocations"]):
            verdict.hanging.append(f"{spec.tag} {spec.command_id}: command {view['status']}")
        for inv in view["invocations"]:
            verdict.invocations += 1
            node = by_id[inv["node_id"]]
            label = f"{spec.tag} {spec.kind} {spec.command_id} on {node.name}"
            ran = [runs[(spec.tag, f"{node.name}.s{i}")] for i in range(len(spec.steps))]
            if any(r > 1 for r in ran):
                verdict.doubled.append(f"{label}: steps ran {ran} times")
            if inv["status"] not in FINAL:
                journaled = (node.state_dir / "commands" / spec.command_id).is_dir()
                verdict.hanging.append(
                    f"{label}: {inv['status']} {inv['status_details']!r}; "
                    f"{'in' if journaled else 'not in'} the node's journal"
                )
                continue
            got = (inv["status"], inv["response_code"] or 0)
            want = (spec.expected_status, spec.expected_code)
            if got == want:
                if not all(ran):
                    verdict.lost.append(f"{label}: {got}, but steps ran {ran} times")
                else:
                    to_compare.append((spec, node.node_id, label))
                continue
            excuse = chaos.excused.get((spec.command_id, node.node_id))
            if excuse is None and spec.sent_at is not None:
                # It ran (or waited to run) at some time after it was sent: at most a few
                # minutes, outages included.
                for begin, end in node.full:
                    if spec.sent_at - 5 <= end and begin <= spec.sent_at + 180:
                        excuse = Excuse("the disk was full around then")
            if excuse is not None:
                verdict.excused.append(f"{label}: {got} ({inv['status_details']}): {excuse.why}")
            else:
                verdict.lost.append(
                    f"{label}: {got[0]} {got[1]} ({inv['status_details']!r}), want {want}"
                )
    # Outputs: the blob of a step beyond its record arrives after the final status; wait.
    end = time.monotonic() + chaos.args.output_wait
    while to_compare:
        wrong: list[tuple[Spec, str, str]] = []
        for spec, node_id, label in to_compare:
            if _differs(api, spec, node_id) is not None:
                wrong.append((spec, node_id, label))
        verdict.intact += len(to_compare) - len(wrong)
        to_compare = wrong
        if not wrong or time.monotonic() > end:
            break
        log(f"  {len(wrong)} outputs not complete yet")
        time.sleep(2)
    for spec, node_id, label in to_compare:
        verdict.lost.append(f"{label}: output {_differs(api, spec, node_id)}")
    for node in chaos.nodes:
        verdict.dead[node.name] = outbox_rows(node.state_dir, "dead")
        verdict.outbox[node.name] = outbox_rows(node.state_dir, "outbox")
    return verdict


def _differs(api: httpx.Client, spec: Spec, node_id: str) -> str | None:
    for index, step in enumerate(spec.steps):
        for stream in ("stdout", "stderr"):
            want = step.expected(stream)
            try:
                got = _output(api, spec, node_id, index, stream)
            except httpx.HTTPError as exc:
                return f"step {index} {stream}: {exc}"
            if got != want:
                return f"step {index} {stream}: {len(got)} bytes, want {len(want)}"
    return None


def outbox_rows(state_dir: Path, table: str) -> int:
    """Rows in the agent's outbox database's ``dead`` or ``outbox`` table (-1: unreadable)."""
    path = state_dir / "outbox.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


# Report -------------------------------------------------------------------------------------
def report(chaos: Chaos, specs: list[Spec], verdict: Verdict, args: argparse.Namespace) -> int:
    print_table(
        f"Faults injected (seed {args.seed})",
        ["kind", "count"],
        [[k, chaos.faults[k]] for k in KINDS if k in args.kinds]
        + [["total", sum(chaos.faults.values())]],
    )
    kinds = Counter(s.kind for s in specs if s.command_id)
    print_table(
        "Commands sent",
        ["kind", "count"],
        [[k, kinds[k]] for k in COMMAND_KINDS] + [["not stored (send failed)", verdict.never_sent]],
    )
    counts = verdict.counts()
    print_table(
        f"Results: {verdict.invocations} invocations on {len(chaos.nodes)} nodes",
        ["lost", "doubled", "hanging", "dead", "intact", "excused", "unexpected exits"],
        [
            [
                counts["lost"],
                counts["doubled"],
                counts["hanging"],
                counts["dead"],
                verdict.intact,
                len(verdict.excused),
                len(chaos.exits),
            ]
        ],
    )
    for title, lines in (
        ("LOST", verdict.lost),
        ("DOUBLED", verdict.doubled),
        ("HANGING", verdict.hanging),
        ("excused", verdict.excused),
        ("unexpected exits", chaos.exits),
    ):
        for line in lines[:40]:
            print(f"{title}: {line}")
        if len(lines) > 40:
            print(f"{title}: ... {len(lines) - 40} more")
    for name, rows in verdict.dead.items():
        if rows:
            print(f"DEAD: {name} has {rows} rows in its dead table")
    print(f"outbox rows left per agent: {verdict.outbox}")
    print(f"proxy: {dict(chaos.proxy.stats)}")
    print(f"code measured: {code_under_test()}")
    print(f"seed {args.seed}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seed": args.seed,
                    **counts,
                    "intact": verdict.intact,
                    "excused": verdict.excused,
                    "invocations": verdict.invocations,
                    "faults": dict(chaos.faults),
                    "unexpected_exits": chaos.exits,
                    "lost_detail": verdict.lost,
                    "doubled_detail": verdict.doubled,
                    "hanging_detail": verdict.hanging,
                    "dead_detail": verdict.dead,
                },
                indent=2,
            )
        )
    return 1 if any(counts.values()) else 0


# Main ---------------------------------------------------------------------------------------
def kill_leftovers(root: Path) -> None:
    """Workers and scripts outlive their agent by design: SIGKILL whatever still runs with our
    clock file in its environment or a working directory under ``root``."""
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            mine = Path(proc.cwd()).is_relative_to(root) or str(root) in proc.environ().get(
                "CORRAL_CHAOS_CLOCK", ""
            )
            if mine:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        except (psutil.Error, OSError):
            continue


def run_all(args: argparse.Namespace) -> int:
    log(
        f"chaos: seed {args.seed}, {args.agents} agents, {args.commands} commands, "
        f"{args.faults} faults over {args.duration:g} s"
    )
    specs = make_stream(
        random.Random(f"commands-{args.seed}"),
        args.commands,
        args.agents,
        args.duration,
        args.command_kinds,
    )
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(workdir("chaos", args.keep))
        stack.callback(kill_leftovers, root)
        cgroup = CpuCgroup.create("corral-chaos")
        if cgroup is not None:
            stack.callback(cgroup.remove)
        server = stack.enter_context(
            running_server(
                root, settings={"rate_limit_per_second": 100000, "rate_limit_burst": 1000000}
            )
        )
        proxy = FaultProxy(
            int(server.listen.rsplit(":", 1)[1]),
            certfile=str(server.data_dir / "server.pem"),
            keyfile=str(server.data_dir / "server.key"),
            cafile=server.ca_file,
            limit_bytes=args.proxy_limit,
            seed=args.seed,
        )
        stack.enter_context(proxy)
        chaos = Chaos(args, root, server, proxy, cgroup)

        def stop_agents() -> None:
            procs = [n.proc for n in chaos.nodes if n.proc is not None]
            for proc in procs:
                _cont(proc.pid)
            stop_all(procs, timeout=15)

        stack.callback(chaos.events.close)
        stack.callback(stop_agents)
        stack.callback(lambda: _cont(server.proc.pid) if server.proc else None)
        chaos.setup()
        log(
            f"chaos: {args.agents} agents up behind the proxy {proxy.url} (limit "
            f"{args.proxy_limit} B); running the schedule (events: {root / 'events.log'})"
        )
        chaos.run(specs)
        log("chaos: faults over; waiting for every command to be final")
        with server.api(timeout=30) as api:
            wait_until(lambda: server._ready(), 90, "the server after the faults", step=0.2)
            reconcile(api, specs)
            views = wait_final(api, specs, args.settle)
            verdict = check(chaos, api, specs, views)
        return report(chaos, specs, verdict, args)


def _cont(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _kinds(known: dict[str, int]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        kinds = [k.strip() for k in text.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in known]
        if unknown or not kinds:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
        return kinds

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fault injection: real server and agents, commands and random faults; "
        "counts lost, doubled, hanging and dead results (exit 1 if any)."
    )
    parser.add_argument("--agents", type=int, default=6, help="real agents (6)")
    parser.add_argument("--commands", type=int, default=300, help="commands sent (300)")
    parser.add_argument("--faults", type=int, default=120, help="faults injected (120)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds of the schedule (2 s per fault)"
    )
    parser.add_argument(
        "--kinds", type=_kinds(KINDS), default=list(KINDS), help=f"faults ({','.join(KINDS)})"
    )
    parser.add_argument(
        "--command-kinds",
        type=_kinds(COMMAND_KINDS),
        default=list(COMMAND_KINDS),
        help=f"commands ({','.join(COMMAND_KINDS)})",
    )
    parser.add_argument(
        "--proxy-limit",
        type=int,
        default=256 * 1024,
        help="the proxy's request body limit, bytes (262144; the server's is 1 MiB)",
    )
    parser.add_argument(
        "--settle", type=float, default=300, help="wait for every command final, s (300)"
    )
    parser.add_argument(
        "--output-wait", type=float, default=60, help="wait for late output blobs, s (60)"
    )
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--verbose", action="store_true", help="print each event")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    if args.duration is None:
        args.duration = max(30.0, 2.0 * args.faults)
    if args.agents < 1 or args.commands < 0 or args.faults < 0:
        parser.error("--agents must be >= 1, --commands and --faults >= 0")
    install_signal_handlers()
    try:
        return run_all(args)
    finally:
        log(f"chaos: seed {args.seed}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
