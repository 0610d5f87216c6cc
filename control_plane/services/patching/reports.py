"""What AWS-RunPatchBaseline reported: each node's patch states (DescribeInstancePatches), its
summary (DescribeInstancePatchStates), the fleet's (DescribePatchGroupState), the history,
and the node's compliance of type Patch.

A node's operation arrives as inventory (agent/patching/states.py): ``AWS:PatchSummary`` (one
item) and ``Corral:Patch`` (one item per patch), only what changed.  When either is stored the
node's Patch compliance is rewritten from them in the same transaction (:meth:`refresh`): one
compliance item per patch that is INSTALLED, INSTALLED_PENDING_REBOOT, INSTALLED_REJECTED,
MISSING, FAILED or AVAILABLE_SECURITY_UPDATE (INSTALLED_OTHER and NOT_APPLICABLE are counted
in the summary, not listed: a node has thousands), with the severity its baseline gives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.inventory import schema
from agent.patching import states as st
from agent.timeparse import parse_rfc3339
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.clock import Clock
from control_plane.services.compliance import ComplianceService
from control_plane.services.patching.baselines import check_group, patch_group_of
from control_plane.store import inventory as inventory_store
from control_plane.store import nodes as node_store
from control_plane.store import patching as store
from control_plane.store.db import Database

COMPLIANCE_TYPE: Final = "Patch"
LISTED_STATES: Final = frozenset(st.STATES) - {st.INSTALLED_OTHER, st.NOT_APPLICABLE}
Visible = Callable[[str, dict[str, str]], bool]


def epoch(text: str | None) -> float | None:
    """An item's RFC 3339 time (agent/patching/states.py writes them), None if absent."""
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def compliance_items(
    patches: list[dict[str, str]], summary: dict[str, str]
) -> list[dict[str, Any]]:
    """The node's Patch compliance items from its Corral:Patch items."""
    baseline_status = summary.get("ComplianceStatus", "")
    items: list[dict[str, Any]] = []
    for patch in patches:
        state = patch.get("State", "")
        if state not in LISTED_STATES:
            continue
        bad = state in st.NON_COMPLIANT_STATES or (
            state == st.AVAILABLE_SECURITY_UPDATE and baseline_status == "NON_COMPLIANT"
        )
        details = {
            "Classification": patch.get("Classification", ""),
            "PatchSeverity": patch.get("Severity", ""),
            "PatchState": state,
            "InstalledTime": patch.get("InstalledTime", ""),
            "PatchBaselineId": summary.get("BaselineId", ""),
            "PatchGroup": summary.get("PatchGroup", ""),
        }
        items.append(
            {
                "id": patch.get("KBId", "")[:100],
                "title": patch.get("Title", "")[:500],
                "severity": patch.get("ComplianceLevel") or "UNSPECIFIED",
                "status": "NON_COMPLIANT" if bad else "COMPLIANT",
                "details": {k: v[:4096] for k, v in details.items() if v},
            }
        )
    return items


class PatchReports:
    def __init__(self, db: Database, compliance: ComplianceService, clock: Clock) -> None:
        self._db = db
        self._compliance = compliance
        self._clock = clock

    # Kept from inventory ---------------------------------------------------------------
    async def refresh(self, conn: AsyncConnection, node_id: str) -> None:
        """Rewrite the node's Patch compliance from its stored patch inventory."""
        summary = await self._summary_item(conn, node_id)
        if summary is None:
            return
        rows = await inventory_store.item_rows(conn, node_id, schema.PATCH)
        patches = [data for _id, data in rows.values()]
        await self._compliance.put_items_in(
            conn,
            node_id,
            COMPLIANCE_TYPE,
            compliance_items(patches, summary),
            execution_id=(summary.get("CommandId") or "patch-operation")[:100],
            execution_type="Command",
            # The node's clock may run ahead of the server's: never in the server's future.
            execution_time=min(epoch(summary.get("OperationEndTime")) or 0.0, self._clock())
            or None,
        )

    @staticmethod
    async def _summary_item(conn: AsyncConnection, node_id: str) -> dict[str, str] | None:
        rows = await inventory_store.item_rows(conn, node_id, schema.PATCH_SUMMARY)
        for _row_id, data in rows.values():
            return dict(data)
        return None

    # Queries ---------------------------------------------------------------------------
    @staticmethod
    async def _check_group(
        conn: AsyncConnection, group: str | None, live: list[tuple[str, dict[str, str]]]
    ) -> None:
        """A group no node is tagged with and no baseline serves is a typo: NotFound."""
        if group is None:
            return
        check_group(group)
        if any(patch_group_of(tags) == group for _n, tags in live):
            return
        if not await store.groups(conn, names=[group]):
            raise NotFound(
                f"patch group {group}: no node is tagged with it (Patch Group or PatchGroup) "
                "and no baseline is registered for it"
            )

    async def _known(self, conn: AsyncConnection, node_id: str) -> None:
        if not await node_store.live_ids(conn, [node_id]):
            raise NotFound(f"node {node_id} not found")

    async def node(self, node_id: str) -> dict[str, Any]:
        """DescribeInstancePatchStates for one node: its last operation's summary."""
        async with self._db.read() as conn:
            await self._known(conn, node_id)
            summary = await self._summary_item(conn, node_id)
            tags = (await node_store.tags_for(conn, [node_id])).get(node_id, {})
        if summary is None:
            return {"node_id": node_id, "patch_group": patch_group_of(tags), "reported": False}
        return {
            "node_id": node_id,
            "patch_group": patch_group_of(tags) or summary.get("PatchGroup", ""),
            "reported": True,
            **summary,
        }

    async def patches(
        self,
        node_id: str,
        *,
        state: str | None,
        limit: int,
        next_token: str | None,
    ) -> paging.Page[dict[str, str]]:
        """DescribeInstancePatches: the node's patches (of one state), by KBId."""
        if state is not None and state not in st.STATES:
            raise InvalidRequest(f"state {state[:40]!r}: one of {', '.join(st.STATES)}")
        async with self._db.read() as conn:
            await self._known(conn, node_id)
            rows = await inventory_store.item_rows(conn, node_id, schema.PATCH)
        found = sorted(
            (dict(data) for _id, data in rows.values()),
            key=lambda p: p.get("KBId", ""),
        )
        if state is not None:
            found = [p for p in found if p.get("State") == state]
        return paging.paginate(
            found, key=lambda p: (p.get("KBId", ""),), limit=limit, next_token=next_token,
            shape=(str,),
        )  # fmt: skip

    async def fleet(self, *, group: str | None, visible: Visible) -> dict[str, Any]:
        """DescribePatchGroupState for the nodes the caller may see (of one patch group)."""
        async with self._db.read() as conn:
            found = await store.summaries(conn, schema.PATCH_SUMMARY)
            live = await inventory_store.registered_nodes(conn)
            await self._check_group(conn, group, live)
        summaries = dict(found)
        counts = {
            "nodes": 0,
            "reported": 0,
            "compliant": 0,
            "non_compliant": 0,
            "pending_reboot": 0,
            "failed": 0,
            "missing": 0,
            "installed_rejected": 0,
            "critical_non_compliant": 0,
            "security_non_compliant": 0,
            "other_non_compliant": 0,
        }
        by_group: dict[str, int] = {}
        for node_id, tags in live:
            node_group = patch_group_of(tags)
            if group is not None and node_group != group:
                continue
            if not visible(node_id, tags):
                continue
            counts["nodes"] += 1
            summary = summaries.get(node_id)
            if summary is None:
                continue
            counts["reported"] += 1
            by_group[node_group] = by_group.get(node_group, 0) + 1
            if summary.get("ComplianceStatus") == "COMPLIANT":
                counts["compliant"] += 1
            else:
                counts["non_compliant"] += 1
            for key, attr in (
                ("pending_reboot", "InstalledPendingRebootCount"),
                ("failed", "FailedCount"),
                ("missing", "MissingCount"),
                ("installed_rejected", "InstalledRejectedCount"),
                ("critical_non_compliant", "CriticalNonCompliantCount"),
                ("security_non_compliant", "SecurityNonCompliantCount"),
                ("other_non_compliant", "OtherNonCompliantCount"),
            ):
                if _count(summary.get(attr)) > 0:
                    counts[key] += 1
        counts["unreported"] = counts["nodes"] - counts["reported"]
        return {"patch_group": group, "counts": counts, "reported_by_group": by_group}

    async def node_states(self, *, group: str | None, visible: Visible) -> list[dict[str, Any]]:
        """Each visible node's summary (DescribeInstancePatchStatesForPatchGroup)."""
        async with self._db.read() as conn:
            found = dict(await store.summaries(conn, schema.PATCH_SUMMARY))
            live = await inventory_store.registered_nodes(conn)
            await self._check_group(conn, group, live)
        rows: list[dict[str, Any]] = []
        for node_id, tags in live:
            node_group = patch_group_of(tags)
            if (group is not None and node_group != group) or not visible(node_id, tags):
                continue
            summary = found.get(node_id)
            if summary is not None:
                rows.append({"node_id": node_id, **summary, "PatchGroup": node_group})
        return sorted(rows, key=lambda r: r["node_id"])


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
