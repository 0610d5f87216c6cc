"""Patch Manager: a scan on a node, and the fleet's patch reports on the server.

Agent: a throw-away Debian 12 root whose dpkg database lists ``--packages 2000`` installed
packages (the status file and each package's info/<name>.list written directly, as dpkg
writes them; a third depend on another package), and a ``file:`` apt repository with a
``stable`` suite (every package at its installed version) and a ``stable-security`` suite
holding ``--updates 200`` newer versions (Packages indexes written here, Release files by
``apt-ftparchive release``, as tests/integration/aptrepo.py builds them; no .deb exists: a
scan downloads nothing).  Then, each in a fresh child process (``--runs 3``, the median
shown, after one warm-up run that fetches the lists):

- ``Patcher(root).scan()`` (agent/patching/apt.py) alone;
- the whole AWS-RunPatchBaseline Scan as the worker runs it: ``operation.run`` with the
  predefined DEBIAN baseline, then the report queued in an outbox as the plugin queues it
  (one ``Corral:Patch`` item per patch and the ``AWS:PatchSummary``).

Figures: wall time, CPU (the worker's own and its children's: apt-get, dpkg-query), the
worker's peak RSS (its VmHWM: the interpreter with ``agent.execution.worker`` loaded, as
the agent's worker has it, then the operation; ``ru_maxrss`` would start at the parent's) and
its tools' (sampled every 5 ms), the package manager's own time (``Scan.manager_seconds``: apt-get
update, dpkg-query, apt-get -s dist-upgrade, apt-get indextargets) beside Corral's part
(wall minus that), the MISSING patches found (must equal ``--updates``), the bytes and parts
of the inventory upload queued, and what a second queue with nothing changed costs.  Beside
them ``apt-get -s dist-upgrade`` alone in the same root: apt's own simulation time.  Budget
(the issue): a scan under 10 s on this machine.

Server: a data dir made by ``init_data_dir`` (the real migrations, SQLite), filled with
direct inserts (as bench/scheduler.py does; uploading 2 million items through the API is
what bench/inventory.py measures, at ~1 min per million): ``--nodes 1000`` registered nodes,
their ``Patch Group`` tags (web, db, batch, edge, none), each with an ``AWS:PatchSummary``
and ``--packages 2000`` ``Corral:Patch`` items made by the agent's own code
(agent/patching/states.py) from scans of a few kinds: compliant, missing 1 to all of
``--updates``, installed and pending a reboot, failed.  Then in process (``httpx`` over the
ASGI app, the admin token; no TLS) and on the service alone, ``--runs-server 20`` times each
after a warm-up: the fleet summary (``GET /v1/patch/summary``, DescribePatchGroupState) for
all nodes and for ``group=web``, every node's state (``/v1/patch/states``,
DescribeInstancePatchStatesForPatchGroup, 1,000 a page) and one node's MISSING patches
(``/v1/patch/nodes/{id}/patches?state=MISSING``, DescribeInstancePatches): p50 and p95.
Budget (the issue): the summary under 200 ms.

    .venv/bin/python bench/patching.py [--packages 2000] [--updates 200] [--nodes 1000]
        [--runs 3] [--runs-server 20] [--skip-agent] [--skip-server] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Nothing heavier at the top: the child process (the "worker") imports only what the agent's
# worker does, so its RSS is the worker's.
ROOT = Path(__file__).resolve().parent.parent
SCAN_BUDGET_S = 10.0
SUMMARY_BUDGET_MS = 200.0
CHILD_TIMEOUT_S = 300.0
SECTIONS = ("libs", "utils", "admin", "net", "python", "devel", "web", "database", "kernel")
PRIORITIES = ("optional", "optional", "optional", "important", "standard", "required", "extra")
MAINTAINER = "Debian Developers <debian-devel@lists.debian.org>"


# The node and its repository ----------------------------------------------------------------
def native_arch() -> str:
    done = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return done.stdout.strip() or "amd64"


class Catalog:
    """``packages`` installed packages; every ``packages // updates``-th has a security update."""

    def __init__(self, packages: int, updates: int, arch: str) -> None:
        self.n = packages
        self.arch = arch
        step = packages / max(updates, 1)
        self.updated = sorted({int(i * step) for i in range(min(updates, packages))})

    def name(self, i: int) -> str:
        return f"pkg{i:05}-{SECTIONS[i % len(SECTIONS)]}"

    def arch_of(self, i: int) -> str:
        return "all" if i % 5 == 4 else self.arch

    def version(self, i: int) -> str:
        epoch = "1:" if i % 37 == 0 else ""
        return f"{epoch}{1 + i % 9}.{i % 17}.{i % 5}-{1 + i % 3}"

    def new_version(self, i: int) -> str:
        return self.version(i) + "+deb12u1"

    def depends(self, i: int) -> str:
        if i % 3 != 0 or i == 0:
            return ""
        dep = ((i * 2654435761) >> 7) % i  # an earlier package
        return f"{self.name(dep)} (>= {self.version(dep)})"

    def control(self, i: int, version: str) -> str:
        depends = self.depends(i)
        return (
            f"Package: {self.name(i)}\n"
            f"Priority: {PRIORITIES[i % len(PRIORITIES)]}\n"
            f"Section: {SECTIONS[i % len(SECTIONS)]}\n"
            f"Installed-Size: {100 + i % 900}\n"
            f"Maintainer: {MAINTAINER}\n"
            f"Architecture: {self.arch_of(i)}\n"
            f"Source: pkg{i:05}\n"
            f"Version: {version}\n" + (f"Depends: {depends}\n" if depends else "")
        )

    def status(self) -> str:
        """var/lib/dpkg/status, as dpkg writes it."""
        out = []
        for i in range(self.n):
            c = self.control(i, self.version(i))
            head, rest = c.split("\n", 1)
            out.append(
                f"{head}\nStatus: install ok installed\n{rest}"
                f"Description: package number {i} of the benchmark\n"
                " A longer description of the package, as packages carry,\n"
                " over two lines.\nHomepage: https://example.org/pkg\n"
            )
        return "\n".join(out)

    def stanza(self, i: int, version: str) -> str:
        arch = self.arch_of(i)
        filename = f"pool/main/p/pkg{i:05}/{self.name(i)}_{version.split(':')[-1]}_{arch}.deb"
        digest = hashlib.sha256(filename.encode()).hexdigest()
        return (
            self.control(i, version) + f"Description: package number {i} of the benchmark\n"
            f"Filename: {filename}\nSize: {2000 + i}\nSHA256: {digest}\n"
        )


def write_suite(repo: Path, suite: str, stanzas: list[str], arch: str) -> None:
    dist = repo / "dists" / suite
    index = dist / "main" / f"binary-{arch}"
    index.mkdir(parents=True, exist_ok=True)
    (index / "Packages").write_text("\n".join(stanzas))
    options = {
        "Origin": "Corral",
        "Label": "Corral",
        "Suite": suite,
        "Codename": suite,
        "Version": "12",
        "Architectures": arch,
        "Components": "main",
        "Date": "Thu, 01 Jan 2026 00:00:00 UTC",
    }
    argv = ["apt-ftparchive"]
    for key, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{key}={value}"]
    done = subprocess.run([*argv, "release", str(dist)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apt-ftparchive release failed: {done.stderr.strip()}")
    (dist / "Release").write_text(done.stdout)


def build_node(base: Path, packages: int, updates: int) -> tuple[Path, Catalog]:
    """base/repo (the repository) and base/node (the root); the root's path."""
    arch = native_arch()
    catalog = Catalog(packages, updates, arch)
    repo, root = base / "repo", base / "node"
    write_suite(
        repo, "stable", [catalog.stanza(i, catalog.version(i)) for i in range(packages)], arch
    )
    write_suite(
        repo,
        "stable-security",
        [catalog.stanza(i, catalog.new_version(i)) for i in catalog.updated],
        arch,
    )
    for sub in (
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "etc/apt/trusted.gpg.d",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    dpkg = root / "var/lib/dpkg"
    (dpkg / "status").write_text(catalog.status())
    (dpkg / "available").touch()
    for i in range(packages):  # the installed time is the mtime of the package's file list
        name = catalog.name(i)
        (dpkg / "info" / f"{name}.list").write_text(f"/usr/share/doc/{name}\n")
    (root / "etc/apt/sources.list").write_text(
        "".join(f"deb [trusted=yes] file:{repo} {s} main\n" for s in ("stable", "stable-security"))
    )
    (root / "etc/apt/apt.conf.d/99corral-bench").write_text('Acquire::Retries "0";\n')
    (root / "etc/os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
        'VERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n'
    )
    return root, catalog


# The worker (a child process) -----------------------------------------------------------------
def child_main(mode: str, root: str, work: str) -> None:
    """One scan (``scan``) or one AWS-RunPatchBaseline Scan (``operation``) in this fresh
    process; prints one JSON line of figures."""
    # What the agent's worker process has loaded before it runs a step (asyncio, sqlite3 ...).
    import agent.execution.worker  # noqa: F401

    before = vm_hwm()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    import psutil  # the plugin reads the boot time with it

    from agent.patching.apt import Patcher

    figures: dict[str, Any] = {}
    patcher = Patcher(root)
    if mode == "scan":
        t1 = time.perf_counter()
        scan = patcher.scan()
        figures["work_s"] = time.perf_counter() - t1
        figures["missing"] = len(scan.updates)
        figures["installed"] = len(scan.installed)
    else:
        from agent.inventory import content, schema, upload
        from agent.outbox import Outbox
        from agent.patching import defaults
        from agent.patching.operation import NO_REBOOT, SCAN, PendingReboots, Request, run
        from agent.patching.states import MISSING, patch_item

        baseline = defaults.predefined("DEBIAN")
        assert baseline is not None
        t1 = time.perf_counter()
        request = Request(SCAN, NO_REBOOT, baseline, command_id="bench")
        pending = PendingReboots(Path(work) / "pending.json", psutil.boot_time())
        outcome = run(patcher, request, pending, product_hint="Debian12")
        scan = outcome.scan
        t2 = time.perf_counter()
        items = [patch_item(s, baseline.operating_system) for s in outcome.states]
        gathered = {schema.PATCH_SUMMARY: [outcome.summary], schema.PATCH: items}
        outbox = Outbox(Path(work) / f"outbox-{os.getpid()}.db")
        first = upload.queue(outbox, gathered, custom_complete=False, errors=[], partial=True)
        t3 = time.perf_counter()
        outbox._remove([m["id"] for m in outbox._peek(10_000)])
        again = upload.queue(outbox, gathered, custom_complete=False, errors=[], partial=True)
        outbox.close()
        figures["work_s"] = t3 - t1
        figures["operation_s"] = t2 - t1
        figures["queue_s"] = t3 - t2
        figures["missing"] = sum(1 for s in outcome.states if s.state == MISSING)
        figures["states"] = len(outcome.states)
        figures["compliance"] = outcome.summary.get("ComplianceStatus")
        figures["json_bytes"] = len(json.dumps(gathered, separators=(",", ":")))
        figures["parts"] = len(content.split(items))
        figures["queued_bytes"] = first.bytes
        figures["queued_messages"] = first.messages
        figures["again_bytes"] = again.bytes
        figures["again_messages"] = again.messages
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures.update(
        wall_s=time.perf_counter() - t0,
        manager_s=scan.manager_seconds,
        updates=len(scan.updates),
        cpu_self_s=(self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        cpu_children_s=(kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime),
        rss_start=before,
        rss_peak=vm_hwm(),
    )
    print(json.dumps(figures))


def vm_hwm(pid: int | str = "self") -> int:
    """The process's peak RSS (VmHWM, bytes): its own, not inherited over fork and exec as
    ``ru_maxrss`` is (a child's ``ru_maxrss`` starts at its parent's)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(mode: str, root: Path, work: Path) -> dict[str, Any]:
    """The child, its descendants' peak RSS sampled (VmHWM every 5 ms, the last seen)."""
    import psutil

    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(root), str(work)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        stop = t0 + CHILD_TIMEOUT_S
        peaks: dict[int, tuple[str, int]] = {}
        me = psutil.Process(child.pid)
        try:
            while child.poll() is None:
                if time.perf_counter() > stop:
                    raise RuntimeError(f"the {mode} child ran past {CHILD_TIMEOUT_S:g} s")
                try:
                    kids = me.children(recursive=True)
                except psutil.NoSuchProcess:
                    kids = []
                for kid in kids:
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        peak = vm_hwm(kid.pid)
                        if peak:
                            peaks[kid.pid] = (kid.name(), peak)
                time.sleep(0.005)
        finally:
            if child.poll() is None:  # an error, Ctrl-C or SIGTERM here: it goes too
                child.kill()
                child.wait()
        wall = time.perf_counter() - t0
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"the {mode} child failed ({child.returncode}):\n{stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = wall  # with the interpreter's start and the imports
    figures["process_cpu_s"] = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    tools: dict[str, int] = {}
    for name, peak in peaks.values():
        tools[name] = max(tools.get(name, 0), peak)
    figures["tools_peak"] = tools
    return figures


def apt_alone(root: Path) -> tuple[float, float, int]:
    """``apt-get -s dist-upgrade`` in the root: wall, CPU, the Inst lines."""
    from agent.patching.apt import apt_environment

    with apt_environment(root) as env:
        k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            ["apt-get", "-s", "-q", "dist-upgrade"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=600,
        )
        wall = time.perf_counter() - t0
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get -s dist-upgrade failed: {done.stderr.strip()[-2000:]}")
    insts = sum(1 for line in done.stdout.splitlines() if line.startswith("Inst "))
    return wall, (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime), insts


def agent_phase(args: argparse.Namespace, base: Path) -> tuple[list[list[object]], float]:
    """The agent's table, and the operation's median wall time (the budget's figure)."""
    from _common import MB, median, verdict

    t0 = time.perf_counter()
    root, _catalog = build_node(base / "agent", args.packages, args.updates)
    built = time.perf_counter() - t0
    print(f"  node and repository built in {built:.1f} s", file=sys.stderr, flush=True)
    work = base / "agent" / "work"
    work.mkdir()
    first = run_child("operation", root, work)  # fetches the lists into the root
    print(f"  warm-up operation: {first['wall_s']:.2f} s", file=sys.stderr, flush=True)
    scans = [run_child("scan", root, work) for _ in range(args.runs)]
    ops = [run_child("operation", root, work) for _ in range(args.runs)]
    alone = [apt_alone(root) for _ in range(args.runs)]
    rows: list[list[object]] = []

    def add(*cells: object) -> None:
        rows.append([*cells, *[""] * (3 - len(cells))])

    def med(runs: list[dict[str, Any]], key: str) -> float:
        return median([float(r[key]) for r in runs])

    def scan_rows(label: str, runs: list[dict[str, Any]], budget: bool) -> float:
        wall, manager = med(runs, "work_s"), med(runs, "manager_s")
        cpu, kids = med(runs, "cpu_self_s"), med(runs, "cpu_children_s")
        ok = f"< {SCAN_BUDGET_S:g} s {verdict(wall < SCAN_BUDGET_S)}"
        add(f"{label}: wall", f"{wall:.2f} s", ok if budget else "")
        add("  package manager (manager_seconds)", f"{manager:.2f} s")
        add("  Corral (wall - package manager)", f"{wall - manager:.2f} s")
        add("  CPU: worker + its children (apt, dpkg)", f"{cpu:.2f} + {kids:.2f} s")
        tools: dict[str, list[float]] = {}
        for r in runs:
            for name, peak in r["tools_peak"].items():
                tools.setdefault(name, []).append(peak)
        before = med(runs, "rss_start") / MB
        add("  peak RSS of the worker (VmHWM)", f"{med(runs, 'rss_peak') / MB:.1f} MB",
            f"{before:.1f} MB before (agent.execution.worker loaded)")  # fmt: skip
        peaks = ", ".join(f"{n} {median(v) / MB:.1f}" for n, v in sorted(tools.items()))
        add("  peak RSS of the tools it ran", f"{peaks} MB", "sampled every 5 ms")
        add("  the process, start to exit", f"{med(runs, 'process_wall_s'):.2f} s wall, "
            f"{med(runs, 'process_cpu_s'):.2f} s CPU", "with the interpreter, imports")  # fmt: skip
        return wall

    scan_rows("Patcher.scan()", scans, False)
    add("  updates found", f"{scans[0]['updates']} of {scans[0]['installed']} installed")
    wall = scan_rows("operation.run (Scan, DEBIAN default) + queue", ops, True)
    op = ops[-1]
    ok = all(r["missing"] == args.updates for r in ops)
    add("  MISSING patches", f"{op['missing']} of {op['states']} states ({op['compliance']})",
        f"= {args.updates} {verdict(ok)}")  # fmt: skip
    add("  operation.run / queueing the report",
        f"{med(ops, 'operation_s'):.2f} s / {med(ops, 'queue_s'):.3f} s")  # fmt: skip
    add("  JSON of the Corral:Patch items + summary", f"{op['json_bytes']:,} bytes",
        f"{op['parts']} parts (content.split)")  # fmt: skip
    add("  queued in the outbox", f"{op['queued_bytes']:,} bytes",
        f"{op['queued_messages']} messages")  # fmt: skip
    add("  queued again, nothing changed", f"{op['again_bytes']:,} bytes",
        f"{op['again_messages']} message")  # fmt: skip
    add("first operation (apt-get update fetches the lists)", f"{first['work_s']:.2f} s",
        f"package manager {first['manager_s']:.2f} s")  # fmt: skip
    add("apt's own simulation: apt-get -s dist-upgrade alone",
        f"{median([a[0] for a in alone]):.2f} s wall, {median([a[1] for a in alone]):.2f} s CPU",
        f"{alone[0][2]} Inst lines")  # fmt: skip
    add("(building the root and the repository)", f"{built:.1f} s")
    return rows, wall


# The server -----------------------------------------------------------------------------------
# Kinds of node: (name, weight, operation, missing, pending reboot, failed).
KINDS = (
    ("compliant", 40, "Scan", 0, 0, 0),
    ("compliant after install", 10, "Install", 0, 0, 0),
    ("missing 1", 8, "Scan", 1, 0, 0),
    ("missing 5", 8, "Scan", 5, 0, 0),
    ("missing 20", 6, "Scan", 20, 0, 0),
    ("missing 60", 5, "Scan", 60, 0, 0),
    ("missing all", 5, "Scan", -1, 0, 0),
    ("pending reboot 3", 8, "Install", 0, 3, 0),
    ("pending reboot 40", 5, "Install", 0, 40, 0),
    ("failed 2", 5, "Install", 0, 0, 2),
)
GROUPS = (("web", 30), ("db", 20), ("batch", 20), ("edge", 10), ("", 20))


def kind_items(
    catalog: Catalog, kind: tuple[str, int, str, int, int, int], now: float
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The summary and Corral:Patch items a node of this kind reports, by the agent's code."""
    from agent.patching import defaults, states
    from agent.patching.model import Package, Scan

    baseline = defaults.predefined("DEBIAN")
    assert baseline is not None
    _name, _weight, operation, missing, pending, failed = kind
    n_missing = len(catalog.updated) if missing < 0 else missing
    missing_ids = set(catalog.updated[:n_missing])
    fixed = catalog.updated[n_missing:]  # installed from the security suite already
    pending_ids = set(fixed[:pending])
    failed_ids = set(catalog.updated[n_missing : n_missing + failed]) if failed else set()
    installed, updates = [], []
    for i in range(catalog.n):
        secure = i in catalog.updated and i not in missing_ids and i not in failed_ids
        version = catalog.new_version(i) if secure else catalog.version(i)
        common = {
            "section": SECTIONS[i % len(SECTIONS)],
            "priority": PRIORITIES[i % len(PRIORITIES)].capitalize(),
        }
        installed.append(
            Package(
                catalog.name(i),
                catalog.arch_of(i),
                version,
                security=secure,
                classification="Security" if secure else "",
                repository="stable-security" if secure else "stable",
                installed_time=now - 86_400 * (1 + i % 300),
                **common,
            )
        )
        if i in missing_ids or i in failed_ids:
            updates.append(
                Package(
                    catalog.name(i),
                    catalog.arch_of(i),
                    catalog.new_version(i),
                    classification="Security",
                    repository="stable-security",
                    security=True,
                    **common,
                )
            )
    scan = Scan("Debian12", installed, updates)
    keys = {i: f"{catalog.name(i)}.{catalog.arch_of(i)}" for i in range(catalog.n)}
    ctx = states.Context(
        failed={keys[i]: "E: Unable to fetch some archives" for i in failed_ids},
        pending_reboot=frozenset(keys[i] for i in pending_ids),
        operation=operation,
    )
    found = states.assess(baseline, scan, now, ctx)
    summary = states.summary_item(
        found,
        baseline,
        fields={
            "BaselineId": "AWS-DebianDefaultPatchBaseline",
            "OperationType": operation,
            "OperationStartTime": states.iso(now - 40),
            "OperationEndTime": states.iso(now),
            "RebootOption": "NoReboot",
            "OperatingSystem": "DEBIAN",
            "Product": "Debian12",
            "PackageManager": "apt",
            "Message": "2 patch(es) failed to install" if failed else "",
        },
    )
    return summary, [states.patch_item(s, "DEBIAN") for s in found]


def populate(db_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Nodes, tags and the patch inventory, straight into the server's tables."""
    from agent.inventory import schema
    from control_plane.services.inventory.model import columns, item_key

    rng = random.Random(args.seed)
    now = time.time()
    catalog = Catalog(args.packages, args.updates, "amd64")
    kinds = []
    for kind in KINDS:  # each kind's rows, made once (its items' columns as ingest makes them)
        summary, items = kind_items(catalog, kind, now)
        rows = []
        for item in items:
            cols = columns(schema.PATCH, item)
            rows.append(
                (
                    item_key(schema.PATCH, item),
                    cols["name"],
                    cols["version"],
                    cols["manager"],
                    cols["version_key"],
                    json.dumps(item),
                )
            )
        kinds.append((kind, summary, rows))
    weights = [k[1] for k in KINDS]
    group_names = [g for g, _ in GROUPS]
    group_weights = [w for _, w in GROUPS]
    conn = sqlite3.connect(db_file)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    chosen: dict[str, Any] = {"by_kind": {}, "by_group": {}, "missing_all": None}
    item_count = 0
    with conn:
        for n in range(args.nodes):
            node_id = f"mi-{n:017x}"
            ((kind, summary, rows),) = rng.choices(kinds, weights)
            group = rng.choices(group_names, group_weights)[0]
            chosen["by_kind"][kind[0]] = chosen["by_kind"].get(kind[0], 0) + 1
            chosen["by_group"][group] = chosen["by_group"].get(group, 0) + 1
            if kind[3] < 0 and chosen["missing_all"] is None:
                chosen["missing_all"] = node_id
            conn.execute(
                "INSERT INTO nodes (id, name, public_key, credential_expires_at, generation, "
                "hostname, platform, platform_name, platform_version, agent_version, "
                "ip_addresses, registered_at, last_seen) "
                "VALUES (?, ?, ?, ?, 1, ?, 'Linux', 'Debian GNU/Linux', '12', '1.0.0', "
                "'[\"10.0.0.1\"]', ?, ?)",
                (node_id, f"node-{n}", "A" * 43, now + 86_400 * 30, f"host{n}", now - 86_400, now),
            )
            tags = [("env", "prod" if n % 3 else "staging")]
            if group:
                tags.append(("Patch Group", group))
            conn.executemany(
                "INSERT INTO node_tags (node_id, key, value) VALUES (?, ?, ?)",
                [(node_id, k, v) for k, v in tags],
            )
            node_summary = {
                **summary,
                "PatchGroup": group,
                "CommandId": f"cmd-{n % 7}",
                "SnapshotId": "bench-snapshot",
            }
            node_summary = {
                k: v for k, v in node_summary.items() if v != "" or k == "OwnerInformation"
            }
            cols = columns(schema.PATCH_SUMMARY, node_summary)
            conn.execute(
                "INSERT INTO inventory_items (node_id, type_name, item_key, name, version, "
                "manager, version_key, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    node_id,
                    schema.PATCH_SUMMARY,
                    item_key(schema.PATCH_SUMMARY, node_summary),
                    cols["name"],
                    cols["version"],
                    cols["manager"],
                    cols["version_key"],
                    json.dumps(node_summary),
                ),
            )
            conn.executemany(
                "INSERT INTO inventory_items (node_id, type_name, item_key, name, version, "
                "manager, version_key, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(node_id, schema.PATCH, *row) for row in rows],
            )
            item_count += len(rows) + 1
            for type_name, count in ((schema.PATCH_SUMMARY, 1), (schema.PATCH, len(rows))):
                conn.execute(
                    "INSERT INTO inventory_types (node_id, type_name, content_hash, "
                    "schema_version, capture_time, updated_at, item_count) "
                    "VALUES (?, ?, ?, '1.0', ?, ?, ?)",
                    (node_id, type_name, f"sha256:{kind[0]}", now, now, count),
                )
            if n % 100 == 99:
                print(f"  {n + 1} nodes, {item_count:,} items", file=sys.stderr, flush=True)
    conn.close()
    chosen["items"] = item_count
    return chosen


async def timed(call: Any, runs: int) -> tuple[list[float], Any]:
    result = await call()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = await call()
        times.append(time.perf_counter() - t0)
    return times, result


async def measure(
    data_dir: Path,
    token: str,
    info: dict[str, Any],
    args: argparse.Namespace,
) -> tuple[list[list[object]], float]:
    """The server's table, and the slowest p95 of the fleet summary over HTTP (the budget's)."""
    import httpx
    from _common import median, percentile, verdict

    from control_plane.api.app import create_app
    from control_plane.config import load_config
    from control_plane.services.hub import ControlPlane

    cp = ControlPlane(load_config(data_dir))
    app = create_app(cp)
    rows: list[list[object]] = []
    summary_p95: list[float] = []

    def row(label: str, times: list[float], note: str, budget: bool = False) -> None:
        p50, p95 = median(times) * 1000, percentile(times, 95) * 1000
        if budget and label.startswith("GET"):
            summary_p95.append(p95)
        check = f"< {SUMMARY_BUDGET_MS:g} ms {verdict(p95 < SUMMARY_BUDGET_MS)}" if budget else ""
        rows.append([label, f"{p50:.1f} ms", f"{p95:.1f} ms", note, check])

    async with app.router.lifespan_context(app):
        reports = cp.patching.reports
        node = info["missing_all"] or "mi-00000000000000000"
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="https://corral.bench", headers=headers, timeout=120
        ) as client:

            async def get(path: str, **params: Any) -> Any:
                response = await client.get(path, params=params)
                response.raise_for_status()
                return response.json()

            runs = args.runs_server
            times, body = await timed(lambda: get("/v1/patch/summary"), runs)
            c = body["counts"]
            row(
                "GET /v1/patch/summary (all nodes)",
                times,
                f"{c['reported']} reported: {c['compliant']} compliant, {c['non_compliant']} not",
                budget=True,
            )
            times, body = await timed(
                lambda: reports.fleet(group=None, visible=lambda n, t: True), runs
            )
            row("  PatchReports.fleet(group=None) alone", times, "", budget=True)
            times, body = await timed(lambda: get("/v1/patch/summary", group="web"), runs)
            row(
                "GET /v1/patch/summary?group=web",
                times,
                f"{body['counts']['nodes']} nodes",
                budget=True,
            )
            times, body = await timed(
                lambda: reports.fleet(group="web", visible=lambda n, t: True), runs
            )
            row("  PatchReports.fleet(group=web) alone", times, "", budget=True)
            times, body = await timed(lambda: get("/v1/patch/states", limit=1000), runs)
            row("GET /v1/patch/states?limit=1000", times, f"{len(body['nodes'])} nodes")
            times, body = await timed(
                lambda: reports.node_states(group=None, visible=lambda n, t: True), runs
            )
            row("  PatchReports.node_states(group=None) alone", times, f"{len(body)} nodes")
            times, body = await timed(
                lambda: get(f"/v1/patch/nodes/{node}/patches", state="MISSING", limit=1000), runs
            )
            row(
                "GET /v1/patch/nodes/{id}/patches?state=MISSING",
                times,
                f"{len(body['patches'])} patches of {args.packages}",
            )
            times, body = await timed(
                lambda: reports.patches(node, state="MISSING", limit=1000, next_token=None), runs
            )
            row("  PatchReports.patches(node, MISSING) alone", times, f"{len(body.items)} patches")
            times, body = await timed(lambda: get(f"/v1/patch/nodes/{node}"), runs)
            row(
                "GET /v1/patch/nodes/{id} (one node's summary)",
                times,
                body.get("ComplianceStatus", "?"),
            )
    return rows, max(summary_p95)


def server_phase(args: argparse.Namespace, base: Path) -> tuple[list[list[object]], str, float]:
    import tomllib

    import tomli_w

    from control_plane.datadir import init_data_dir

    data_dir = base / "server"
    init = init_data_dir(data_dir, [])
    config_file = data_dir / "config.toml"
    config = tomllib.loads(config_file.read_text())
    config.setdefault("server", {}).update(rate_limit_per_second=100000, rate_limit_burst=1000000)
    config_file.write_text(tomli_w.dumps(config))
    db_file = data_dir / "corral.db"
    t0 = time.perf_counter()
    info = populate(db_file, args)
    filled = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in data_dir.glob("corral.db*"))
    print(f"  {info['items']:,} items inserted in {filled:.1f} s", file=sys.stderr, flush=True)
    rows, summary_p95 = asyncio.run(measure(data_dir, init.admin_token, info, args))
    kinds = ", ".join(f"{k} {v}" for k, v in info["by_kind"].items())
    groups = ", ".join(f"{k or 'none'} {v}" for k, v in sorted(info["by_group"].items()))
    about = (
        f"{args.nodes} nodes x {args.packages} Corral:Patch items ({info['items']:,} rows, "
        f"inserted in {filled:.0f} s; corral.db {size / 2**20:,.0f} MB)\n"
        f"kinds: {kinds}\npatch groups: {groups}"
    )
    return rows, about, summary_p95


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_main(*sys.argv[2:5])
        return
    sys.path.insert(0, str(ROOT))
    from _common import (
        code_under_test,
        deadline,
        install_signal_handlers,
        print_table,
        verdict,
        workdir,
    )

    install_signal_handlers()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packages", type=int, default=2000, help="installed packages (2000)")
    parser.add_argument("--updates", type=int, default=200, help="security updates (200)")
    parser.add_argument("--nodes", type=int, default=1000, help="simulated nodes (1000)")
    parser.add_argument("--runs", type=int, default=3, help="agent runs of each (3)")
    parser.add_argument("--runs-server", type=int, default=20, help="server queries (20)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--max-seconds", type=float, default=1800, help="give up after (1800)")
    args = parser.parse_args()
    if not args.skip_agent and not all(shutil.which(t) for t in ("apt-get", "apt-ftparchive")):
        parser.error("the agent phase needs apt-get and apt-ftparchive (or --skip-agent)")
    budgets: list[list[object]] = []
    with deadline(args.max_seconds), workdir("patching", args.keep) as base:
        if not args.skip_agent:
            rows, wall = agent_phase(args, base)
            print_table(
                f"Agent: a scan of {args.packages} installed packages, {args.updates} "
                f"security updates (median of {args.runs} fresh processes)",
                ["figure", "value", "budget / note"],
                rows,
            )
            budgets.append(
                [f"scan < {SCAN_BUDGET_S:g} s", "operation.run (Scan) + queue, median",
                 f"{wall:.2f} s", verdict(wall < SCAN_BUDGET_S)]
            )  # fmt: skip
        if not args.skip_server:
            rows, about, p95 = server_phase(args, base)
            print_table(
                f"Server (SQLite, in process): {about}",
                ["query", "p50", "p95", "answer", "budget"],
                rows,
            )
            budgets.append(
                [f"summary < {SUMMARY_BUDGET_MS:g} ms", "GET /v1/patch/summary, slowest p95",
                 f"{p95:.1f} ms", verdict(p95 < SUMMARY_BUDGET_MS)]
            )  # fmt: skip
    print_table("Budgets (the issue)", ["budget", "figure", "measured", "met"], budgets)
    print(f"\ncode measured: {code_under_test()}")


if __name__ == "__main__":
    main()
