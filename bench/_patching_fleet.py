"""bench/patching.py's fleet: a server database of N nodes, each with an AWS:PatchSummary
and M Corral:Patch items made by the agent's own code, and the timed summary queries."""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from _patching_node import PRIORITIES, SECTIONS, Catalog

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_BUDGET_MS = 200.0


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
