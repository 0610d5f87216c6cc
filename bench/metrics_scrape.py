"""What one ``GET /metrics`` costs on a large fleet (issue 15, "Metrics").

A fresh data dir (``init_data_dir``) is filled directly in its database with ``--nodes``
registered nodes (each with a heartbeat's platform, agent version and figures) and
``--commands`` commands sent to every node (so ``nodes x commands`` invocations, nearly all
final), then the real app is started in-process and scraped ``--scrapes`` times through
httpx's ASGI transport (the server's whole path: authentication, policy, the database reads,
the exposition; no network).  Printed: the first scrape's wall time, then the others' (median,
p99, max), the scrape's size and series count, and the database's size.

    .venv/bin/python bench/metrics_scrape.py [--nodes 10000] [--commands 20] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from agent import wire
from control_plane.api.app import create_app
from control_plane.config import load_config
from control_plane.datadir import init_data_dir
from control_plane.services.hub import ControlPlane
from control_plane.store import commands as command_store
from control_plane.store.db import Database
from control_plane.store.schema import nodes

FINAL = (wire.ST_SUCCESS,) * 18 + (wire.ST_FAILED, wire.ST_TIMED_OUT)


async def fill(url: str, n_nodes: int, n_commands: int) -> None:
    db = Database(url)
    now = time.time()
    node_ids = [f"mi-{secrets.token_hex(8)}0" for _ in range(n_nodes)]
    try:
        async with db.transaction() as conn:
            rows: list[dict[str, Any]] = [
                {
                    "id": node_id,
                    "name": f"node-{i}",
                    "public_key": "A" * 43 + "=",
                    "credential_expires_at": now + 86400,
                    "platform": ("Linux", "Windows", "MacOS")[i % 3],
                    "agent_version": ("0.1.0", "0.2.0")[i % 2],
                    "ip_addresses": ["192.0.2.1"],
                    "registered_at": now,
                    "last_seen": now - (0 if i % 10 else 3600),
                    "outbox_depth": i % 7,
                    "outbox_dead": 0,
                    "workers": i % 3,
                    "rss_bytes": 30_000_000 + i,
                }
                for i, node_id in enumerate(node_ids)
            ]
            await conn.execute(nodes.insert(), rows)
        for c in range(n_commands):
            row = {
                "id": str(uuid.uuid4()),
                "document_name": "AWS-RunShellScript",
                "document_version": "1",
                "document_sha256": "0" * 64,
                "document_content": {},
                "parameters": {},
                "targets": ["*"],
                "max_concurrency": "50",
                "max_errors": "0",
                "execution_timeout": 3600,
                "delivery_timeout": 3600,
                "status": wire.ST_SUCCESS,
                "status_details": wire.ST_SUCCESS,
                "target_count": n_nodes,
                "created_at": now,
            }
            async with db.transaction() as conn:
                await command_store.insert(conn, row, node_ids, now)
                await command_store.update_invocations(
                    conn,
                    row["id"],
                    {n: {"status": FINAL[(i + c) % len(FINAL)]} for i, n in enumerate(node_ids)},
                )
    finally:
        await db.close()


async def scrape_many(data_dir: Path, scrapes: int) -> tuple[list[float], bytes]:
    config = load_config(data_dir)
    admin = (data_dir / "bench-admin-token").read_text().strip()
    cp = ControlPlane(config)
    app = create_app(cp)
    times: list[float] = []
    body = b""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://corral.test") as c:
            for _ in range(scrapes):
                start = time.perf_counter()
                response = await c.get("/metrics", headers={"authorization": f"Bearer {admin}"})
                times.append(time.perf_counter() - start)
                response.raise_for_status()
                body = response.content
    return times, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-metrics-bench-") as tmp:
        data_dir = Path(tmp) / "srv"
        result = init_data_dir(data_dir, [])
        (data_dir / "bench-admin-token").write_text(result.admin_token)
        config = load_config(data_dir)
        started = time.perf_counter()
        asyncio.run(fill(config.async_database_url, args.nodes, args.commands))
        filled = time.perf_counter() - started
        times, body = asyncio.run(scrape_many(data_dir, args.scrapes))
        db_file = sum(p.stat().st_size for p in data_dir.glob("*.db*"))
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    first, rest = times[0], sorted(times[1:]) or times
    p99 = rest[min(len(rest) - 1, round(0.99 * (len(rest) - 1)))]
    print(
        f"fleet: {args.nodes} nodes, {args.commands} commands, "
        f"{args.nodes * args.commands} invocations (filled in {filled:.1f} s)"
    )
    print(f"database files: {db_file / 2**20:.1f} MiB")
    print(f"scrape: {len(body) / 1024:.0f} KiB, {series} series")
    print(f"first scrape (cold database pages): {first * 1000:.0f} ms")
    print(
        f"next {len(rest)} scrapes: median {statistics.median(rest) * 1000:.0f} ms,"
        f" p99 {p99 * 1000:.0f} ms, max {max(rest) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
