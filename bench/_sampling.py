"""What the benchmarks read off processes: memory (RSS, USS, PSS), CPU (psutil, or a cgroup
that also counts short-lived children), process trees.  Re-exported by _common.py."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


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


@dataclass
class ProcMemory:
    pid: int
    name: str
    rss: int
    pss: int  # shared pages divided among the processes that map them: sums to the whole
    uss: int  # pages no other process maps: what its exit frees


def tree_memory(proc: psutil.Process) -> list[ProcMemory]:
    """RSS, PSS and USS of each process of the tree (Linux: /proc/PID/smaps)."""
    rows = []
    for p in process_tree(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = p.memory_full_info()
            name = " ".join(p.cmdline()[1:3])[-48:] or p.name()
            rows.append(ProcMemory(p.pid, name, info.rss, getattr(info, "pss", 0), info.uss))
    return rows


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


class CpuCgroup:
    """A CPU-accounting cgroup of our own (Linux, as root): the CPU time of every process that
    ever ran in it, including ones that exited and were reaped by nobody we can ask (a
    process-tree walk with psutil misses those: a fork server's short-lived workers, a
    step's shell).  cgroup v1 ``cpuacct`` or cgroup v2 ``cpu.stat``, whichever is writable.

    ``create`` returns None where no cgroup can be made (not root, no cgroup fs, a read-only
    one); callers then fall back to sampling process trees.  ``remove`` kills whatever is
    still in it (e.g. a worker in its own session that outlived its agent) and deletes it."""

    def __init__(self, path: Path, v1: bool) -> None:
        self.path = path
        self.v1 = v1
        self._procs_file = str(path / "cgroup.procs").encode()

    @staticmethod
    def _own_cgroups() -> tuple[str | None, str | None]:
        """This process's cpuacct (v1) and unified (v2) cgroup paths, from /proc/self/cgroup."""
        v1 = v2 = None
        with contextlib.suppress(OSError):
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, where = line.split(":", 2)
                if "cpuacct" in controllers.split(","):
                    v1 = where
                elif controllers == "":
                    v2 = where
        return v1, v2

    @classmethod
    def create(cls, name: str) -> CpuCgroup | None:
        if sys.platform != "linux":
            return None
        v1_at, v2_at = cls._own_cgroups()
        candidates: list[tuple[Path, bool]] = []
        for mount in (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/cpu,cpuacct")):
            if v1_at is not None and (mount / "cpuacct.usage").exists():
                candidates.append((mount / v1_at.lstrip("/"), True))
        for mount in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
            if v2_at is not None and (mount / "cgroup.controllers").exists():
                candidates.append((mount / v2_at.lstrip("/"), False))
        for parent, v1 in candidates:
            path = parent / f"{name}-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, v1)
            if group.cpu_seconds() is None:
                group.remove()
                continue
            return group
        return None

    def preexec_join(self) -> None:  # pragma: no cover - runs in the child before exec
        fd = os.open(self._procs_file, os.O_WRONLY)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def cpu_seconds(self) -> float | None:
        try:
            if self.v1:
                return int((self.path / "cpuacct.usage").read_text()) / 1e9
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError):
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        return []

    def remove(self) -> None:
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()


class PeakRss:
    """A thread sampling the summed RSS of named process groups every ``interval`` s.

    ``groups`` maps a name to a function returning the group's pids now.  ``first`` is the
    first sample, ``peak`` the largest."""

    def __init__(self, groups: dict[str, Callable[[], Sequence[int]]], interval: float) -> None:
        self._groups = groups
        self._interval = interval
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self.first: dict[str, int] = {}
        self.peak: dict[str, int] = dict.fromkeys(groups, 0)
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _rss(self, pids: Sequence[int]) -> int:
        total = 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._procs.pop(pid, None)
        return total

    def sample(self) -> None:
        for name, pids in self._groups.items():
            rss = self._rss(pids())
            self.first.setdefault(name, rss)
            self.peak[name] = max(self.peak[name], rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def tree_pids(roots: Sequence[psutil.Process]) -> list[int]:
    """The pids of these processes and all their descendants, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"] or 0, []).append(proc.pid)
    out: list[int] = []
    todo = [p.pid for p in roots]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out
