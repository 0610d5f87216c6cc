"""Patch Manager on the server (docs/patching.md): baselines, defaults and patch groups
(baselines.py), the snapshot a command runs against (snapshots.py), what nodes reported
(reports.py), and what a baseline would approve on a node (:meth:`PatchService.effective`).
"""

from __future__ import annotations

from typing import Any

from agent.inventory import schema
from agent.patching.model import Package
from agent.patching.rules import evaluate
from control_plane.errors import InvalidRequest
from control_plane.services import paging
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.compliance import ComplianceService
from control_plane.services.patching.baselines import BaselineService
from control_plane.services.patching.reports import PatchReports, Visible, epoch
from control_plane.services.patching.snapshots import Snapshots
from control_plane.store import inventory as inventory_store
from control_plane.store.db import Database

__all__ = ["BaselineService", "PatchReports", "PatchService", "Snapshots", "Visible"]


def package_of(item: dict[str, str]) -> Package:
    """The available update a Corral:Patch item describes."""
    return Package(
        name=item.get("Name", ""),
        arch=item.get("Arch", ""),
        version=item.get("AvailableVersion", ""),
        classification=item.get("Classification", ""),
        severity=item.get("Severity", ""),
        release_time=epoch(item.get("ReleaseDate")),
        repository=item.get("Repository", ""),
        section=item.get("Section", ""),
        priority=item.get("Priority", ""),
        security=item.get("Security") == "true",
        advisories=tuple(a for a in item.get("AdvisoryIds", "").split(",") if a),
        cves=tuple(c for c in item.get("CVEIds", "").split(",") if c),
        title=item.get("Title", ""),
        kb=item.get("KBId", "") if item.get("KBId", "").upper().startswith("KB") else "",
    )


class PatchService:
    def __init__(self, db: Database, clock: Clock, compliance: ComplianceService) -> None:
        self._db = db
        self._clock = clock
        self.baselines = BaselineService(db, clock)
        self.snapshots = Snapshots(db, clock)
        self.reports = PatchReports(db, compliance, clock)

    async def effective(
        self, baseline_id: str, node_id: str, *, limit: int, next_token: str | None
    ) -> dict[str, Any]:
        """What ``baseline_id`` would do with each update the node's last scan found, now
        (DescribeEffectivePatchesForPatchBaseline, for any OS, on one node's updates)."""
        paging.check_limit(limit)
        paging.decode(next_token, (str,))  # a bad token is refused before anything is read
        baseline = await self.baselines.load(baseline_id)
        node = await self.reports.node(node_id)
        if not node.get("reported"):
            raise InvalidRequest(
                f"node {node_id} has not reported a patch scan yet: run AWS-RunPatchBaseline "
                "with Operation=Scan on it first"
            )
        node_os = node.get("OperatingSystem", "")
        if node_os and node_os != baseline.operating_system:
            raise InvalidRequest(
                f"baseline {baseline.baseline_id} is for {baseline.operating_system}; node "
                f"{node_id} is {node_os}"
            )
        async with self._db.read() as conn:
            rows = await inventory_store.item_rows(conn, node_id, schema.PATCH)
        now = self._clock()
        product = str(node.get("Product", ""))
        found: list[dict[str, Any]] = []
        for _row_id, item in rows.values():
            if not item.get("AvailableVersion"):
                continue
            pkg = package_of(item)
            decision = evaluate(baseline, pkg, product, now)
            found.append(
                {
                    "Patch": {
                        "Id": item.get("KBId", ""),
                        "Title": item.get("Title", ""),
                        "Name": pkg.name,
                        "Arch": pkg.arch,
                        "Version": pkg.version,
                        "InstalledVersion": item.get("InstalledVersion", ""),
                        "Classification": pkg.classification,
                        "Severity": pkg.severity,
                        "ReleaseDate": item.get("ReleaseDate", ""),
                        "Repository": pkg.repository,
                        "Section": pkg.section,
                        "Priority": pkg.priority,
                        "CVEIds": list(pkg.cves),
                        "AdvisoryIds": list(pkg.advisories),
                    },
                    "PatchStatus": {
                        "DeploymentStatus": decision.status,
                        "ComplianceLevel": decision.compliance_level,
                        "ApprovalDate": rfc3339(decision.approval_time)
                        if decision.approval_time is not None
                        else "",
                        "Rule": decision.rule,
                    },
                }
            )
        found.sort(key=lambda e: str(e["Patch"]["Id"]))
        page = paging.paginate(
            found,
            key=lambda e: (str(e["Patch"]["Id"]),),
            limit=limit,
            next_token=next_token,
            shape=(str,),
        )
        return {
            "BaselineId": baseline.baseline_id,
            "OperatingSystem": baseline.operating_system,
            "node_id": node_id,
            "Product": product,
            "EffectivePatches": page.items,
            "next_token": page.next_token,
        }
