"""Compliance, as SSM's: items per (node, compliance type, item id), each COMPLIANT or
NON_COMPLIANT with a severity; a put replaces every item of its type on its node
(PutComplianceItems), in one transaction with the type's summary row and the history.

History: every item that appears, changes status or goes away is a row with the put's
execution time, kept for the configured retention (``prune_history``, run by the scheduler
as :class:`HistoryPruning`), so "when did this node drift" has an answer.

Writers: the server itself (``put_items``: State Manager's Association type, Patch Manager's
Patch type), operators through the API (``put_custom``: Custom:NAME only), and document steps
of ``corral:putComplianceItems`` (``record_report``, inside the transaction that stores the
node's invocation_update).  A put older than what is stored for its type on that node (a
late report of an earlier run) changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from control_plane.errors import InvalidRequest, NotFound
from control_plane.services import audit_context, paging
from control_plane.services.clock import Clock, rfc3339
from control_plane.services.compliance import rules
from control_plane.services.compliance.views import (
    empty_fleet_entry,
    history_view,
    item_view,
    number,
    summary_view,
)
from control_plane.store import compliance as store
from control_plane.store import nodes as node_store
from control_plane.store.db import Database

log = logging.getLogger("corral.compliance")

DEFAULT_RETENTION_SECONDS = 90 * 86400.0
# A put may say when it was observed; a time this far ahead of the server's is refused.
MAX_CLOCK_SKEW_SECONDS = 300.0
PRUNE_INTERVAL = 3600.0
# (node id, its tags) -> may the caller see the node's compliance
Visible = Callable[[str, dict[str, str]], bool]


class ComplianceService:
    def __init__(
        self, db: Database, clock: Clock, retention_seconds: float = DEFAULT_RETENTION_SECONDS
    ) -> None:
        self._db = db
        self._clock = clock
        self.retention_seconds = retention_seconds
        self._pruned_at: float | None = None
        # Called in the transaction of every put (inventory's AWS:ComplianceItem follows).
        self.on_changed: Callable[[AsyncConnection, str], Awaitable[object]] | None = None

    # Writing -----------------------------------------------------------------------------
    async def put_items(
        self,
        node_id: str,
        compliance_type: str,
        items: list[Any],
        *,
        execution_id: str,
        execution_type: str,
        execution_time: float | None = None,
    ) -> dict[str, Any]:
        """Replace every item of ``compliance_type`` on the node (any type: the server's own
        callers).  Refused whole, nothing stored, on bad input or an unknown node."""
        async with self._db.transaction() as conn:
            return await self.put_items_in(
                conn,
                node_id,
                compliance_type,
                items,
                execution_id=execution_id,
                execution_type=execution_type,
                execution_time=execution_time,
            )

    async def put_items_in(
        self,
        conn: AsyncConnection,
        node_id: str,
        compliance_type: str,
        items: list[Any],
        *,
        execution_id: str,
        execution_type: str,
        execution_time: float | None = None,
    ) -> dict[str, Any]:
        """:meth:`put_items` inside the caller's transaction (an association execution's
        result and its compliance stored together)."""
        rules.check_type(compliance_type)
        checked = rules.check_items(items)
        rules.check_execution(execution_id, execution_type)
        when = self._execution_time(execution_time)
        return await self._put(
            conn, node_id, compliance_type, checked, execution_id, execution_type, when
        )

    async def put_custom(
        self,
        node_id: str,
        compliance_type: str,
        items: list[Any],
        *,
        execution_id: str = "",
        execution_type: str = "Custom",
        execution_time: float | None = None,
    ) -> dict[str, Any]:
        """An operator's put (the API): Custom:NAME types only."""
        rules.check_type(compliance_type, custom_only=True)
        async with self._db.transaction() as conn:
            done = await self.put_items_in(
                conn,
                node_id,
                compliance_type,
                items,
                execution_id=execution_id,
                execution_type=execution_type,
                execution_time=execution_time,
            )
            audit_context.name_resource(
                f"node/{node_id}", compliance_type=compliance_type, item_count=len(items)
            )
        return done

    async def record_report(
        self,
        conn: AsyncConnection,
        node_id: str,
        command_id: str,
        steps: list[Any],
        ended_at: float | None,
    ) -> int:
        """The compliance that steps of a node's final report put (``corral:putComplianceItems``),
        stored in the report's transaction; the last step per type wins.  What does not pass
        the rules is left out and logged, never raised: the report itself must be stored.
        Returns how many types were put."""
        latest: dict[str, tuple[list[wire.ComplianceItem], float]] = {}
        for step in steps:
            if not isinstance(step, dict) or not isinstance(step.get("compliance"), dict):
                continue
            found = step["compliance"]
            try:
                ctype = rules.check_type(found.get("compliance_type"), custom_only=True)
                items = rules.check_items(found.get("items"))
                if len(items) > wire.COMPLIANCE_STEP_MAX_ITEMS:
                    raise InvalidRequest(
                        f"items: at most {wire.COMPLIANCE_STEP_MAX_ITEMS} from one step"
                    )
            except InvalidRequest as exc:
                log.warning(
                    "compliance of a step left out",
                    extra={"node_id": node_id, "command_id": command_id, "error": exc.message},
                )
                continue
            when = number(step.get("ended_at")) or number(ended_at) or self._clock()
            latest[ctype] = (items, min(when, self._clock() + MAX_CLOCK_SKEW_SECONDS))
        put = 0
        for ctype, (items, when) in latest.items():
            try:
                await self._put(conn, node_id, ctype, items, command_id[:100], "Command", when)
                put += 1
            except (InvalidRequest, NotFound) as exc:
                log.warning(
                    "compliance of a step left out",
                    extra={"node_id": node_id, "command_id": command_id, "error": exc.message},
                )
        return put

    async def _put(
        self,
        conn: AsyncConnection,
        node_id: str,
        compliance_type: str,
        items: list[wire.ComplianceItem],
        execution_id: str,
        execution_type: str,
        when: float,
    ) -> dict[str, Any]:
        state = await store.node_state(conn, node_id)
        if state != "active":
            raise NotFound(f"node {node_id} not found" + (" (deregistered)" if state else ""))
        current = await store.summary(conn, node_id, compliance_type)
        if current is None and compliance_type.startswith("Custom:"):
            custom = [t for t in await store.types_of(conn, node_id) if t.startswith("Custom:")]
            if len(custom) >= rules.MAX_CUSTOM_TYPES:
                raise InvalidRequest(
                    f"node {node_id} already has {rules.MAX_CUSTOM_TYPES} custom compliance "
                    f"types ({', '.join(sorted(custom)[:10])}): no more are allowed"
                )
        status, severity, counts = rules.summarize(items)
        result = {
            "node_id": node_id,
            "compliance_type": compliance_type,
            "status": status,
            "overall_severity": severity,
            "item_count": len(items),
            "execution_time": rfc3339(when),
        }
        if current is not None and current["execution_time"] > when:
            log.info(
                "compliance older than the stored one ignored",
                extra={"node_id": node_id, "compliance_type": compliance_type},
            )
            return {**result, "changes": 0, "ignored": "older than the compliance stored"}
        before = await store.items_of(conn, node_id, compliance_type)
        now = self._clock()
        rows, history = [], []

        def change(item_id: str, old: str | None, new: str | None, item_severity: str) -> None:
            history.append(
                {
                    "node_id": node_id,
                    "compliance_type": compliance_type,
                    "item_id": item_id,
                    "time": when,
                    "old_status": old,
                    "new_status": new,
                    "severity": item_severity,
                    "execution_id": execution_id,
                    "execution_type": execution_type,
                }
            )

        for item in items:
            old = before.pop(item["id"], None)
            same = old is not None and old["status"] == item["status"]
            if not same:
                change(item["id"], old["status"] if old else None, item["status"], item["severity"])
            rows.append(
                {
                    "node_id": node_id,
                    "compliance_type": compliance_type,
                    "item_id": item["id"],
                    "title": item["title"],
                    "status": item["status"],
                    "severity": item["severity"],
                    "details": item["details"],
                    "status_since": old["status_since"] if old and same else when,
                }
            )
        for gone in sorted(before):
            change(gone, before[gone]["status"], None, before[gone]["severity"])
        await store.replace_items(conn, node_id, compliance_type, rows)
        await store.add_history(conn, history)
        await store.put_summary(
            conn,
            {
                "node_id": node_id,
                "compliance_type": compliance_type,
                "status": status,
                "overall_severity": severity,
                "counts": counts,
                "execution_id": execution_id,
                "execution_type": execution_type,
                "execution_time": when,
                "updated_at": now,
            },
        )
        if self.on_changed is not None:
            await self.on_changed(conn, node_id)
        if history:
            log.info(
                "compliance changed",
                extra={
                    "node_id": node_id,
                    "compliance_type": compliance_type,
                    "status": status,
                    "changes": len(history),
                },
            )
        return {**result, "changes": len(history)}

    def _execution_time(self, given: float | None) -> float:
        now = self._clock()
        if given is None:
            return now
        if isinstance(given, bool) or not isinstance(given, int | float) or given <= 0:
            raise InvalidRequest("execution_time: seconds since the epoch")
        if given > now + MAX_CLOCK_SKEW_SECONDS:
            raise InvalidRequest("execution_time: in the future")
        return float(given)

    # Reading -----------------------------------------------------------------------------
    async def list_items(
        self,
        node_id: str,
        *,
        compliance_type: str | None = None,
        status: str | None = None,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """The node's items (SSM's ListComplianceItems), by type then id, a page at a time."""
        if compliance_type is not None:
            rules.check_type(compliance_type)
        if status is not None:
            rules.check_status(status)
        await self._known_node(node_id)
        summaries: dict[str, dict[str, Any]] = {}

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (str(after[0]), str(after[1]))
            async with self._db.read() as conn:
                rows = await store.items_page(
                    conn,
                    node_id,
                    compliance_type=compliance_type,
                    status=status,
                    limit=n,
                    after=key,
                )
                for ctype in {r["compliance_type"] for r in rows} - set(summaries):
                    summaries[ctype] = await store.summary(conn, node_id, ctype) or {}
            return rows

        page = await paging.scan(
            fetch,
            key=lambda r: (r["compliance_type"], r["item_id"]),
            limit=limit,
            next_token=next_token,
            shape=(str, str),
        )
        return paging.Page(
            [item_view(r, summaries.get(r["compliance_type"], {})) for r in page.items],
            page.next_token,
        )

    async def node_summary(self, node_id: str) -> list[dict[str, Any]]:
        """Per compliance type on the node (SSM's ListResourceComplianceSummaries for one
        resource): status, overall severity, item counts, the last execution."""
        await self._known_node(node_id)
        async with self._db.read() as conn:
            rows = await store.summaries_of(conn, node_id)
        return [summary_view(r) for r in rows]

    async def resource_summaries(
        self,
        *,
        compliance_type: str | None,
        status: str | None,
        visible: Visible,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """Every (node, type) the caller may see (ListResourceComplianceSummaries), by node."""
        if compliance_type is not None:
            rules.check_type(compliance_type)
        if status is not None:
            rules.check_status(status)
        tags: dict[str, dict[str, str]] = {}

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (str(after[0]), str(after[1]))
            async with self._db.read() as conn:
                rows = await store.summaries_page(
                    conn, compliance_type=compliance_type, status=status, limit=n, after=key
                )
                missing = sorted({r["node_id"] for r in rows} - set(tags))
                tags.update(await node_store.tags_for(conn, missing))
            return rows

        page = await paging.scan(
            fetch,
            key=lambda r: (r["node_id"], r["compliance_type"]),
            limit=limit,
            next_token=next_token,
            shape=(str, str),
            visible=lambda r: visible(r["node_id"], tags.get(r["node_id"], {})),
        )
        return paging.Page([summary_view(r) for r in page.items], page.next_token)

    async def fleet_summary(
        self, *, compliance_type: str | None, visible: Visible
    ) -> list[dict[str, Any]]:
        """Per compliance type, over the registered nodes the caller may see (SSM's
        ListComplianceSummaries): how many nodes are compliant and non-compliant, each count
        broken down by the nodes' overall severity."""
        if compliance_type is not None:
            rules.check_type(compliance_type)
        totals: dict[str, dict[str, Any]] = {}
        after: tuple[str, str] | None = None
        while True:
            async with self._db.read() as conn:
                rows = await store.summaries_page(
                    conn, compliance_type=compliance_type, status=None, limit=1000, after=after
                )
                tags = await node_store.tags_for(conn, sorted({r["node_id"] for r in rows}))
            for row in rows:
                if not visible(row["node_id"], tags.get(row["node_id"], {})):
                    continue
                entry = totals.setdefault(row["compliance_type"], empty_fleet_entry())
                side = entry["compliant" if row["status"] == rules.COMPLIANT else "non_compliant"]
                side["count"] += 1
                side["severity"][row["overall_severity"]] += 1
            if len(rows) < 1000:
                break
            after = (rows[-1]["node_id"], rows[-1]["compliance_type"])
        return [{"compliance_type": t, **totals[t]} for t in sorted(totals)]

    async def history(
        self,
        node_id: str,
        *,
        compliance_type: str | None = None,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """The node's item changes, newest first, a page at a time."""
        if compliance_type is not None:
            rules.check_type(compliance_type)
        await self._known_node(node_id)

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            before = None if after is None else int(after[0])
            async with self._db.read() as conn:
                return await store.history_page(
                    conn, node_id, compliance_type=compliance_type, limit=n, before=before
                )

        page = await paging.scan(
            fetch, key=lambda r: (r["id"],), limit=limit, next_token=next_token, shape=(int,)
        )
        return paging.Page([history_view(r) for r in page.items], page.next_token)

    # Housekeeping ------------------------------------------------------------------------
    async def prune_history(self, now: float | None = None) -> int:
        """Drop history older than the retention; how many rows went."""
        cutoff = (self._clock() if now is None else now) - self.retention_seconds
        async with self._db.transaction() as conn:
            pruned = await store.prune_history(conn, cutoff)
        if pruned:
            log.info("compliance history past retention pruned", extra={"count": pruned})
        return pruned

    async def prune_if_due(self, now: float) -> int:
        """Prune at most once per PRUNE_INTERVAL (the server's housekeeping asks often)."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return 0
        self._pruned_at = now
        return await self.prune_history(now)

    async def _known_node(self, node_id: str) -> None:
        async with self._db.read() as conn:
            if await store.node_state(conn, node_id) is None:
                raise NotFound(f"node {node_id} not found")


class HistoryPruning:
    """The scheduler's job (services/scheduling): prune the history hourly."""

    name = "compliance-history"

    def __init__(self, service: ComplianceService) -> None:
        self._service = service

    async def tick(self, now: float) -> float | None:
        await self._service.prune_history(now)
        return now + PRUNE_INTERVAL
