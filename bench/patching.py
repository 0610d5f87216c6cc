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
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Nothing heavier at the top: the child process (the "worker") imports only what the agent's
# worker does, so its RSS is the worker's.
from _patching_fleet import SUMMARY_BUDGET_MS, measure, populate
from _patching_node import build_node

ROOT = Path(__file__).resolve().parent.parent
SCAN_BUDGET_S = 10.0
CHILD_TIMEOUT_S = 300.0


# The node and its repository ----------------------------------------------------------------
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
