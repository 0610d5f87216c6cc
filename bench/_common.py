"""Shared pieces of the benchmarks: a real server on a free loopback port, child processes
that are always cleaned up, process-tree sampling with psutil, and plain-text tables.

Every wait has a deadline.  Every process started here runs in its own session and is stopped
(SIGTERM, then SIGKILL of its whole process group) by the context that started it, on success,
on error, on Ctrl-C and on SIGTERM/SIGHUP (turned into ``SystemExit`` so ``finally`` runs).
On Linux a child also gets SIGTERM if the benchmark itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import psutil

BIN = Path(sys.executable).parent
MB = 1024 * 1024
T = TypeVar("T")


class BenchError(Exception):
    """A benchmark could not run (not a budget miss: those are reported, not raised)."""


# Signals and deadlines ---------------------------------------------------------------------
def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind the stack like Ctrl-C does, so every ``finally`` runs."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)


class DeadlineExceeded(BenchError):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise DeadlineExceeded("the benchmark ran past its --max-seconds limit")


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Bound a synchronous benchmark's total run time (SIGALRM raises in the main thread)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def wait_until(cond: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    deadline_at = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline_at:
        last = cond()
        if last:
            return last
        time.sleep(step)
    raise BenchError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit; returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# Temp dirs and child processes --------------------------------------------------------------
@contextlib.contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"corral-bench-{prefix}-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: deliver SIGTERM to this child when the benchmark process dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Proc:
    """A long-running child in its own session, output in files (no pipe can fill up)."""

    def __init__(self, args: Sequence[str], log_dir: Path, name: str) -> None:
        self.name = name
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.popen = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr_tail(self, lines: int = 15) -> str:
        text = self.err_path.read_text(errors="replace") if self.err_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group (whatever the child started)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {timeout:g} s; killing", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        return self.popen.returncode


def run_cli(
    args: Sequence[str], timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def code_under_test() -> str:
    """Where the measured ``agent``/``control_plane`` packages come from (PYTHONPATH wins)."""
    result = run_cli(
        [sys.executable, "-c", "import agent, os; print(os.path.dirname(agent.__path__[0]))"],
        cwd=Path(tempfile.gettempdir()),
    )
    where = result.stdout.strip() or "?"
    head = run_cli(["git", "-C", where, "rev-parse", "--short", "HEAD"])
    dirty = run_cli(["git", "-C", where, "status", "--porcelain", "--", "agent", "control_plane"])
    if head.returncode != 0:
        return where
    return f"{where} (git {head.stdout.strip()}{', modified' if dirty.stdout.strip() else ''})"


# The server --------------------------------------------------------------------------------
@dataclass
class Server:
    data_dir: Path
    url: str
    listen: str
    token: str
    ca_hash: str
    ca_file: str
    proc: Proc | None = None

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def api(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=self.tls(),
            timeout=timeout,
            headers={"authorization": f"Bearer {self.token}"},
        )

    def create_activation(self, limit: int, api: httpx.Client | None = None) -> dict[str, Any]:
        body = {"registration_limit": limit, "expires_in_seconds": 3600, "tags": {}}
        with contextlib.ExitStack() as stack:
            client = api or stack.enter_context(self.api())
            response = client.post("/v1/activations", json=body)
        if response.status_code != 201:
            raise BenchError(
                f"creating an activation failed: {response.status_code} {response.text}"
            )
        result: dict[str, Any] = response.json()
        return result

    def nodes(self, api: httpx.Client | None = None) -> list[dict[str, Any]]:
        with contextlib.ExitStack() as stack:
            client = api or stack.enter_context(self.api())
            response = client.get("/v1/nodes")
        response.raise_for_status()
        nodes: list[dict[str, Any]] = response.json()["nodes"]
        return nodes

    def psutil_process(self) -> psutil.Process:
        if self.proc is None:
            raise BenchError("the server is not running")
        return psutil.Process(self.proc.pid)

    def _ready(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise BenchError(f"the server exited during start-up:\n{self.proc.stderr_tail()}")
        try:
            return httpx.get(self.url + "/readyz", verify=self.tls(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@contextlib.contextmanager
def running_server(root: Path, start_timeout: float = 60.0) -> Iterator[Server]:
    """``corral-server init`` + ``serve`` on a free loopback port; stopped on the way out."""
    data_dir = root / "server"
    port = free_port()
    listen = f"127.0.0.1:{port}"
    result = run_cli(
        [
            str(BIN / "corral-server"),
            "init",
            "--data-dir",
            str(data_dir),
            "--listen",
            listen,
            "--output",
            "json",
        ]
    )
    if result.returncode != 0:
        raise BenchError(f"corral-server init failed: {result.stderr.strip()}")
    info = json.loads(result.stdout)
    server = Server(
        data_dir=data_dir,
        url=f"https://127.0.0.1:{port}",
        listen=listen,
        token=info["admin_token"],
        ca_hash=info["ca_hash"],
        ca_file=info["ca_file"],
    )
    server.proc = Proc(
        [str(BIN / "corral-server"), "serve", "--data-dir", str(data_dir), "--listen", listen],
        root,
        "server",
    )
    try:
        wait_until(server._ready, start_timeout, "the server's /readyz", step=0.1)
        yield server
    finally:
        code = server.proc.stop()
        if code not in (0, None, -signal.SIGKILL):
            print(f"server exited with {code}:\n{server.proc.stderr_tail()}", file=sys.stderr)


# Sampling --------------------------------------------------------------------------------
def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a dead child nobody has waited for yet)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in process_tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def tree_uss(proc: psutil.Process) -> int:
    """Memory unique to the tree (what stopping it would free): RSS minus shared pages."""
    total = 0
    for p in process_tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_full_info().uss
    return total


def tree_cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in process_tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            total += t.user + t.system
    return total


@dataclass
class Sample:
    """RSS samples and total CPU of a process tree over a window."""

    rss: list[int]
    cpu_seconds: float
    wall_seconds: float

    @property
    def cpu_percent(self) -> float:
        """Percent of one core, averaged over the window."""
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


def sample_tree(proc: psutil.Process, seconds: float, interval: float = 1.0) -> Sample:
    """Sample a tree's RSS every ``interval`` s for ``seconds``; CPU is measured end to end."""
    rss: list[int] = []
    cpu0, t0 = tree_cpu_seconds(proc), time.monotonic()
    end = t0 + seconds
    while True:
        rss.append(tree_rss(proc))
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(interval, end - now))
    return Sample(rss, tree_cpu_seconds(proc) - cpu0, time.monotonic() - t0)


# Figures and tables ------------------------------------------------------------------------
def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (pct in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mb(value: float) -> str:
    return f"{value / MB:.1f}"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
