"""Inventory (issue 12): collection on this machine, and the server with a simulated fleet.

Collection, in process: AWS-GatherSoftwareInventory's default types gathered here by the real
collectors (agent/inventory/), CPU and wall time per type; then AWS:Application alone
against a throw-away root holding a dpkg database of ``--packages 2000`` packages (budget: a
full collection under 2 s of CPU with 2,000 packages); the bytes queued in a fresh outbox
the first time and when nothing changed (budget: under 1 KB).

Server: a real ``corral-server`` on SQLite; ``--nodes 1000`` simulated nodes registered, each
uploading ``--apps 2000`` AWS:Application items (names drawn from a pool of 3,000 so the fleet
shares most packages, as a real one does; ``openssl`` on every node in one of five
versions) exactly as an agent does: parts under the message limit, then the summary, through
``POST /v1/agent/messages`` with ``--concurrency 8`` nodes at a time.  Figures: ingest
throughput (items/s, MB/s, server CPU), the database's size, an unchanged re-upload (one
summary per node), then the latency (median, p95 of ``--runs 20``) of the fleet-wide
``GET /v1/inventory/items?type=AWS:Application&filter=Name=openssl`` (1,000 rows, one page;
budget < 200 ms at 2 million rows) and of ``summary --group-by Name,Version``.

    .venv/bin/python bench/inventory.py [--nodes 1000] [--apps 2000] [--skip-server]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import wire
from agent.inventory import content
from bench._common import (
    MB,
    install_signal_handlers,
    median,
    percentile,
    print_table,
    running_server,
    verdict,
)
from bench._simagent import SimAgent, Stats, register_nodes

POOL = 3000
OPENSSL = ["3.0.2-0ubuntu1.10", "3.0.2-0ubuntu1.15", "3.0.11-1~deb12u2", "3.0.13-1", "1.1.1n-0"]


# Collection --------------------------------------------------------------------------------
def _children() -> float:
    """CPU seconds of this process's finished children (the tools collectors ran)."""
    import os

    times = os.times()
    return times.children_user + times.children_system


def dpkg_status(n: int) -> str:
    """A dpkg status file of ``n`` installed packages, as dpkg writes it."""
    entries = []
    for i in range(n):
        entries.append(
            f"Package: pkg{i:05}-lib\nStatus: install ok installed\nPriority: optional\n"
            f"Section: libs\nInstalled-Size: {100 + i}\n"
            "Maintainer: Debian Developers <debian-devel@lists.debian.org>\n"
            f"Architecture: amd64\nMulti-Arch: same\nSource: pkg{i:05}\n"
            f"Version: {i % 7}.{i % 13}.{i % 5}-{i % 3 + 1}\nDepends: libc6 (>= 2.34)\n"
            f"Description: library number {i} for the benchmark\n"
            " A longer description of the library, as packages carry,\n"
            " over two lines.\nHomepage: https://example.org/pkg\n"
        )
    return "\n".join(entries)


def collection(packages: int) -> list[list[object]]:
    from agent.inventory.base import CollectContext
    from agent.inventory.gather import gather, plan
    from agent.outbox import Outbox
    from agent.tools import run_tool

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="corral-inv-") as tmp:
        root = Path(tmp)
        ctx = CollectContext(platform="Linux", run=run_tool, node_id="mi-00000000000000000")
        step = plan({})
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children()
        found = gather(step, ctx)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        tools = _children() - k0
        for name in sorted(found.types):
            rows.append(
                [f"this machine: {name}", len(found.types[name]), f"{found.cpu_seconds[name]:.3f}"]
            )
        for error in found.errors:
            rows.append([f"this machine: {error['source']} FAILED: {error['reason'][:60]}", 0, "-"])
        rows.append(["this machine: all default types (agent)", "", f"{cpu:.3f} (wall {wall:.3f})"])
        rows.append(["  + the tools it ran (systemctl ...)", "", f"{tools:.3f}"])
        outbox = Outbox(root / "outbox.db")
        from agent.inventory import upload

        first = upload.queue(outbox, found.types, custom_complete=True, errors=[])
        outbox._remove([m["id"] for m in outbox._peek(10_000)])
        second = upload.queue(outbox, found.types, custom_complete=True, errors=[])
        rows.append(["upload, first time (bytes queued)", first.messages, f"{first.bytes:,}"])
        rows.append(["upload, unchanged (bytes queued)", second.messages, f"{second.bytes:,}"])
        outbox.close()
        status = root / "node" / "var" / "lib" / "dpkg"
        (status / "info").mkdir(parents=True)
        (status / "status").write_text(dpkg_status(packages))
        app_ctx = CollectContext(platform="Linux", run=run_tool, root=root / "node")
        app_step = plan({k: "Disabled" for k in ("networkConfig", "services", "listeningPorts",
                                                  "users", "instanceDetailedInformation",
                                                  "awsComponents")})  # fmt: skip
        c0 = time.process_time()
        apps = gather(app_step, app_ctx)
        cpu = time.process_time() - c0
        count = len(apps.types.get("AWS:Application", []))
        rows.append([f"{packages} dpkg packages (AWS:Application + InstanceInformation)", count,
                     f"{cpu:.3f}  {verdict(cpu < 2.0)}"])  # fmt: skip
        first = upload.queue(
            Outbox(root / "outbox2.db"), apps.types, custom_complete=False, errors=[]
        )
        rows.append(
            [f"  its first upload ({packages} packages)", first.messages, f"{first.bytes:,}"]
        )
    return rows


# Server ------------------------------------------------------------------------------------
def fleet_items(rng: random.Random, apps: int) -> list[dict[str, str]]:
    names = rng.sample(range(POOL), apps - 1)
    items = [
        {
            "Name": f"package-{n:04}",
            "Version": f"{n % 9}.{n % 17}.{n % 5}-{1 + (n % 3)}",
            "Architecture": "amd64",
            "PackageManager": "dpkg",
            "ApplicationType": "libs",
            "Publisher": "Debian Developers <debian-devel@lists.debian.org>",
            "Summary": f"package number {n}, as the fleet has it",
            "URL": "https://example.org/",
            "PackageId": f"package-{n:04}_{n % 9}.{n % 17}_amd64.deb",
        }
        for n in names
    ]
    items.append(
        {"Name": "openssl", "Version": rng.choice(OPENSSL), "Architecture": "amd64",
         "PackageManager": "dpkg", "ApplicationType": "utils"}
    )  # fmt: skip
    return items


def messages_for(items: list[dict[str, str]], changed: bool) -> list[wire.Message]:
    digest = content.content_hash(items)
    out: list[wire.Message] = []
    if changed:
        parts = content.split(items)
        for i, part in enumerate(parts):
            body = {"type_name": "AWS:Application", "schema_version": "1.1",
                    "content_hash": digest, "capture_time": time.time(), "part": i,
                    "parts": len(parts), "items": part}  # fmt: skip
            out.append(wire.make_message(wire.MSG_INVENTORY_PART, body))
    summary = {"capture_time": time.time(), "hashes": {"AWS:Application": digest},
               "custom_complete": False, "errors": []}  # fmt: skip
    out.append(wire.make_message(wire.MSG_INVENTORY, summary))
    return out


async def upload_fleet(
    url: str, ca_file: str, agents: list[SimAgent], fleets: list[list[dict[str, str]]],
    changed: bool, concurrency: int,
) -> tuple[float, int, int]:  # fmt: skip
    gate = asyncio.Semaphore(concurrency)
    sent_bytes = 0
    rejected = 0

    async def one(agent: SimAgent, items: list[dict[str, str]]) -> None:
        nonlocal sent_bytes, rejected
        batch: list[wire.Message] = []
        size = 0
        batches: list[list[wire.Message]] = []
        for message in messages_for(items, changed):
            cost = len(json.dumps(message))
            if batch and size + cost > wire.MAX_REQUEST_BYTES * wire.REQUEST_FILL:
                batches.append(batch)
                batch, size = [], 0
            batch.append(message)
            size += cost
        batches.append(batch)
        async with gate:
            for b in batches:
                answer = await agent._post(wire.ROUTE_MESSAGES, {"messages": b})
                sent_bytes += len(json.dumps(b))
                rejected += sum(
                    1
                    for r in answer.get(wire.KEY_RESULTS, [])
                    if r["status"] == wire.RESULT_REJECTED
                )

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for agent, items in zip(agents, fleets, strict=True):
            tg.create_task(one(agent, items))
    return time.perf_counter() - t0, sent_bytes, rejected


def timed_get(
    api: httpx.Client, path: str, params: dict[str, Any], runs: int
) -> tuple[list[float], Any]:
    times: list[float] = []
    body: Any = None
    api.get(path, params=params).raise_for_status()  # warm-up
    for _ in range(runs):
        t0 = time.perf_counter()
        response = api.get(path, params=params)
        times.append(time.perf_counter() - t0)
        response.raise_for_status()
        body = response.json()
    return times, body


async def server_phase(args: argparse.Namespace) -> list[list[object]]:
    rows: list[list[object]] = []
    settings = {"rate_limit_per_second": 100000, "rate_limit_burst": 1000000,
                "node_rate_limit_per_second": 100000, "node_rate_limit_burst": 1000000,
                "inventory_upload_mib_per_hour": 1024}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="corral-inv-srv-") as tmp,
        running_server(Path(tmp), settings=settings) as server,
    ):
        t0 = time.perf_counter()
        nodes = await register_nodes(server.url, server.ca_file, server.token, args.nodes)
        rows.append([f"registered {args.nodes} nodes", f"{time.perf_counter() - t0:.1f} s", ""])
        rng = random.Random(args.seed)
        fleets = [fleet_items(rng, args.apps) for _ in nodes]
        tls = ssl.create_default_context(cafile=server.ca_file)
        limits = httpx.Limits(max_connections=args.concurrency * 2)
        proc = server.psutil_process()
        async with httpx.AsyncClient(
            base_url=server.url, verify=tls, timeout=120, limits=limits
        ) as client:
            agents = [SimAgent(n, client, Stats()) for n in nodes]
            cpu0 = sum(proc.cpu_times()[:2])
            wall, sent, rejected = await upload_fleet(
                server.url, server.ca_file, agents, fleets, True, args.concurrency
            )
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            total = args.nodes * args.apps
            rows.append([f"ingest {total:,} items ({sent / MB:.0f} MB)", f"{wall:.1f} s",
                         f"{total / wall:,.0f} items/s, {sent / MB / wall:.1f} MB/s, server CPU "
                         f"{cpu:.1f} s, rejected {rejected}"])  # fmt: skip
            cpu0 = sum(proc.cpu_times()[:2])
            wall, sent, rejected = await upload_fleet(
                server.url, server.ca_file, agents, fleets, False, args.concurrency
            )
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            rows.append([f"unchanged re-upload ({args.nodes} summaries, {sent:,} bytes)",
                         f"{wall:.1f} s", f"{sent / args.nodes:.0f} bytes/node, server CPU "
                         f"{cpu:.1f} s"])  # fmt: skip
        db = server.data_dir / "corral.db"
        size = sum(p.stat().st_size for p in db.parent.glob("corral.db*"))
        rows.append(["database size (corral.db + WAL)", f"{size / MB:,.0f} MB",
                     f"{size / max(args.nodes * args.apps, 1):.0f} bytes/item"])  # fmt: skip
        with server.api(timeout=120) as api:
            params = {"type": "AWS:Application", "filter": "Name=openssl", "limit": 1000}
            times, body = timed_get(api, "/v1/inventory/items", params, args.runs)
            p50, p95 = median(times) * 1000, percentile(times, 95) * 1000
            rows.append([f"list --filter Name=openssl ({len(body['items'])} rows)",
                         f"p50 {p50:.0f} ms, p95 {p95:.0f} ms", verdict(p95 < 200)])  # fmt: skip
            params = {"type": "AWS:Application", "filter": ["Name=openssl", "Version<3.0.8"],
                      "limit": 1000}  # fmt: skip
            times, body = timed_get(api, "/v1/inventory/items", params, args.runs)
            rows.append([f"list Name=openssl, Version<3.0.8 ({len(body['items'])} rows)",
                         f"p50 {median(times) * 1000:.0f} ms, p95 "
                         f"{percentile(times, 95) * 1000:.0f} ms", ""])  # fmt: skip
            params = {"type": "AWS:Application", "group_by": "Name,Version", "limit": 1000}
            times, body = timed_get(api, "/v1/inventory/summary", params, max(args.runs // 4, 3))
            rows.append([f"summary --group-by Name,Version ({len(body['groups'])} groups shown)",
                         f"p50 {median(times) * 1000:.0f} ms, p95 "
                         f"{percentile(times, 95) * 1000:.0f} ms", ""])  # fmt: skip
    return rows


def main() -> None:
    install_signal_handlers()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--packages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-collection", action="store_true")
    args = parser.parse_args()
    if not args.skip_collection:
        print_table("Collection (this machine)", ["what", "items/messages", "CPU s / bytes"],
                    collection(args.packages))  # fmt: skip
    if not args.skip_server:
        rows = asyncio.run(server_phase(args))
        print_table(f"Server: {args.nodes} nodes x {args.apps} applications (SQLite)",
                    ["what", "time", "figures"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
