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
from typing import Any, NoReturn, TypeVar

import httpx
import psutil
from _sampling import (  # noqa: F401 (re-exported: the benchmarks import them from here)
    CpuCgroup,
    PeakRss,
    ProcMemory,
    Sample,
    alive,
    process_tree,
    sample_tree,
    tree_cpu_seconds,
    tree_memory,
    tree_pids,
    tree_rss,
    tree_uss,
)

BIN = Path(sys.executable).parent
MB = 1024 * 1024
T = TypeVar("T")


class BenchError(Exception):
    """A benchmark could not run (not a budget miss: those are reported, not raised)."""


# Signals and deadlines ---------------------------------------------------------------------
def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_main(main: Callable[[], int]) -> NoReturn:
    """A bench's entry point: its exit code, or a one-line error (exit 1) for a BenchError."""
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


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
    """A long-running child in its own session, output in files (no pipe can fill up).

    With ``cgroup`` the child joins that CPU-accounting cgroup before it runs anything, so the
    CPU of everything it ever starts (also short-lived and re-parented processes) is counted.
    ``env``: variables added to this process's environment for the child."""

    def __init__(
        self,
        args: Sequence[str],
        log_dir: Path,
        name: str,
        cgroup: CpuCgroup | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
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
                preexec_fn=child_setup(cgroup),
                env={**os.environ, **env} if env else None,
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


def child_setup(cgroup: CpuCgroup | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn``: die with the benchmark (Linux), join ``cgroup`` if given."""
    if sys.platform != "linux":
        return None
    join = cgroup.preexec_join if cgroup is not None else None

    def setup() -> None:  # pragma: no cover - runs in the child before exec
        _die_with_parent()
        if join is not None:
            join()

    return setup


def stop_all(procs: Sequence[Proc], timeout: float = 15.0) -> None:
    """Stop many children at once: SIGTERM to all, then wait/kill each (see ``Proc.stop``)."""
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
    end = time.monotonic() + timeout
    for proc in procs:  # no second SIGTERM: to some programs it means "exit at once"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.1, end - time.monotonic()))
    for proc in procs:
        proc.stop(timeout=0.1)  # the process group's leftovers; SIGKILL what still runs


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
        """Every node (the list is paged: each page followed)."""
        nodes: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        with contextlib.ExitStack() as stack:
            client = api or stack.enter_context(self.api())
            while True:
                response = client.get("/v1/nodes", params=params)
                response.raise_for_status()
                page = response.json()
                nodes += page["nodes"]
                if not page.get("next_token"):
                    return nodes
                params["next_token"] = page["next_token"]

    def psutil_process(self) -> psutil.Process:
        if self.proc is None:
            raise BenchError("the server is not running")
        return psutil.Process(self.proc.pid)

    def restart(self, start_timeout: float = 60.0) -> float:
        """Stop the server (SIGTERM: it closes its channels with 1012) and start it again on
        the same address and data; the seconds it was away (stopped until /readyz)."""
        assert self.proc is not None
        log_dir = self.proc.out_path.parent
        args = [str(a) for a in self.proc.popen.args]  # type: ignore[union-attr]
        t0 = time.monotonic()
        self.proc.stop()
        self.proc = Proc(args, log_dir, f"server-{int(time.time())}")
        wait_until(self._ready, start_timeout, "the restarted server's /readyz", step=0.05)
        return time.monotonic() - t0

    def _ready(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise BenchError(f"the server exited during start-up:\n{self.proc.stderr_tail()}")
        try:
            return httpx.get(self.url + "/readyz", verify=self.tls(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@contextlib.contextmanager
def running_server(
    root: Path, start_timeout: float = 60.0, settings: dict[str, Any] | None = None
) -> Iterator[Server]:
    """``corral-server init`` + ``serve`` on a free loopback port; stopped on the way out.
    ``settings`` go under ``[server]`` in config.toml before the start (e.g. rate limits
    raised: a bench is not abuse)."""
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
    if settings:
        import tomllib

        import tomli_w

        config_file = data_dir / "config.toml"
        config = tomllib.loads(config_file.read_text())
        config.setdefault("server", {}).update(settings)
        config_file.write_text(tomli_w.dumps(config))
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


def register_agent(
    server: Server,
    state_dir: Path,
    activation: dict[str, Any] | None = None,
    program: list[str] | None = None,
) -> str:
    """``corral-agent register`` into ``state_dir`` (with ``activation``, or a new one for one
    node; ``program``: another corral-agent command, e.g. a packaged one); the node id."""
    activation = activation or server.create_activation(1)
    result = run_cli(
        [
            *(program or [str(BIN / "corral-agent")]),
            "register",
            "--url",
            server.url,
            "--id",
            activation["activation_id"],
            "--code",
            activation["activation_code"],
            "--ca-hash",
            server.ca_hash,
            "--state-dir",
            str(state_dir),
            "--output",
            "json",
        ]
    )
    if result.returncode != 0:
        raise BenchError(f"corral-agent register failed: {result.stderr.strip()}")
    node_id: str = json.loads(result.stdout)["node_id"]
    return node_id
