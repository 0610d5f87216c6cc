"""The baselines an AWS-RunPatchBaseline command runs against, frozen when it is sent.

When a command whose document (or a document it nests) runs ``corral:runPatchBaseline`` is
sent, a snapshot is stored: every operating system's default baseline, the baselines of the
patch groups its nodes are in, and a BaselineOverride's baselines; the command keeps the
snapshot's id and each node's patch group (its ``Patch Group`` tag then).  When the command
is delivered to a node, the node gets, per operating system, the baseline its group had in the
snapshot (else that OS's default): a baseline changed after the send does not change what the
command does.  Commands given the same SnapshotId share the first one's snapshot (a Scan and an
Install in one maintenance window agree), as SSM's; the id takes precedence over a
BaselineOverride, as SSM's.  Snapshots are kept ``SNAPSHOT_RETENTION`` seconds.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.patching import defaults as predefined
from agent.patching.baseline import BaselineError, parse
from control_plane.errors import InvalidRequest
from control_plane.services.clock import Clock
from control_plane.services.patching.baselines import patch_group_of
from control_plane.store import nodes as node_store
from control_plane.store import patching as store
from control_plane.store.db import Database

ACTION: Final = "corral:runPatchBaseline"
SNAPSHOT_RETENTION: Final = 35 * 86_400.0  # beyond the longest delivery timeout (30 days)
_CACHE_SIZE: Final = 64


DELIVERY_BUDGET: Final = 96 * 1024  # bytes of baselines sent with one run_command
# distro.name() words -> the baseline operating system (agent/facts.py reports distro.name()).
_NAMES: Final = (
    ("ubuntu", "UBUNTU"),
    ("raspbian", "RASPBIAN"),
    ("debian", "DEBIAN"),
    ("red hat", "REDHAT_ENTERPRISE_LINUX"),
    ("fedora", "REDHAT_ENTERPRISE_LINUX"),
    ("amazon linux", "AMAZON_LINUX_2023"),
    ("centos", "CENTOS"),
    ("rocky", "ROCKY_LINUX"),
    ("alma", "ALMA_LINUX"),
    ("oracle", "ORACLE_LINUX"),
    ("suse", "SUSE"),
    ("sles", "SUSE"),
    ("arch", "ARCH"),
    ("alpine", "ALPINE"),
)


def guess_os(platform_name: str) -> str:
    lowered = platform_name.lower()
    return next((os_name for word, os_name in _NAMES if word in lowered), "")


def _family(platform: str) -> frozenset[str] | None:
    if platform == "Windows":
        return frozenset({"WINDOWS"})
    if platform == "MacOS":
        return frozenset({"MACOS"})
    if platform == "Linux":
        return frozenset(predefined.PREDEFINED) - {"WINDOWS", "MACOS"}
    return None  # not heard from yet: every one


def runs_patch_baseline(content: Any) -> bool:
    """Whether a document's content (nested documents embedded) runs the patch action."""
    if not isinstance(content, dict):
        return False
    steps = content.get("mainSteps")
    if isinstance(steps, list) and any(
        isinstance(step, dict) and step.get("action") == ACTION for step in steps
    ):
        return True
    config = content.get("runtimeConfig")
    if isinstance(config, dict) and ACTION in config:
        return True
    embedded = content.get("__embedded")
    if isinstance(embedded, dict):
        return any(runs_patch_baseline(doc) for doc in embedded.values())
    return False


def check_parameters(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """BaselineOverride's baselines by operating system (checked), or InvalidRequest."""
    override = str(parameters.get("BaselineOverride") or "").strip()
    install = str(parameters.get("InstallOverrideList") or "").strip()
    if override and install:
        raise InvalidRequest(
            "InstallOverrideList and BaselineOverride cannot be used together (as SSM)"
        )
    if not override:
        return {}
    try:
        raw = json.loads(override)
    except ValueError:
        raise InvalidRequest(
            "BaselineOverride is not a baseline: expected JSON, a baseline or a list of them "
            "(AWS's GetPatchBaseline)"
        ) from None
    entries = raw if isinstance(raw, list) else [raw]
    found: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries[:20]):
        try:
            baseline = parse(entry, default_name="BaselineOverride")
        except BaselineError as exc:
            raise InvalidRequest(f"BaselineOverride[{index}] is not a baseline: {exc}") from None
        if baseline.operating_system in found:
            raise InvalidRequest(f"BaselineOverride: two baselines for {baseline.operating_system}")
        json_form = baseline.to_json()
        json_form.setdefault("BaselineId", "BaselineOverride")
        found[baseline.operating_system] = json_form
    return found


class Snapshots:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._pruned_at: float | None = None

    async def freeze(
        self,
        conn: AsyncConnection,
        node_ids: list[str],
        parameters: dict[str, Any],
    ) -> dict[str, Any]:
        """Inside the send's transaction: the command's ``patch`` column."""
        tags = await node_store.tags_for(conn, node_ids)
        groups = {n: g for n in node_ids if (g := patch_group_of(tags.get(n, {})))}
        snapshot_id = str(parameters.get("SnapshotId") or "").strip()
        content = await store.snapshot(conn, snapshot_id) if snapshot_id else None
        if content is None:
            snapshot_id = snapshot_id or str(uuid.uuid4())
            content = await self._build(conn, sorted(set(groups.values())), parameters)
            await store.put_snapshot(conn, snapshot_id, content, self._clock())
        else:  # an existing snapshot: groups it lacks get what they have now, kept with it
            missing = sorted(set(groups.values()) - set(content.get("groups", {})))
            if missing:
                more = await self._build(conn, missing, {})
                content["groups"].update(more["groups"])
                content["baselines"].update(more["baselines"])
                await store.update_snapshot(conn, snapshot_id, content)
                self._cache.pop(snapshot_id, None)
        return {"snapshot_id": snapshot_id, "groups": groups}

    async def _build(
        self, conn: AsyncConnection, group_names: list[str], parameters: dict[str, Any]
    ) -> dict[str, Any]:
        chosen = await store.defaults(conn)
        defaults = {
            os_name: chosen.get(os_name, str(raw["Name"]))
            for os_name, raw in predefined.PREDEFINED.items()
        }
        rows = await store.groups(conn, names=group_names) if group_names else []
        groups: dict[str, dict[str, str]] = {}
        for row in rows:
            groups.setdefault(row["patch_group"], {})[row["operating_system"]] = row["baseline_id"]
        for name in group_names:
            groups.setdefault(name, {})
        wanted = {i for i in [*defaults.values(), *(i for g in groups.values() for i in g.values())]
                  if i not in predefined.PREDEFINED_IDS}  # fmt: skip
        custom = await store.baselines(conn, sorted(wanted)) if wanted else []
        baselines = {r["id"]: {**r["content"], "BaselineId": r["id"]} for r in custom}
        return {
            "defaults": defaults,
            "groups": groups,
            "baselines": baselines,
            "override": check_parameters(parameters),
        }

    async def content(self, snapshot_id: str) -> dict[str, Any] | None:
        cached = self._cache.get(snapshot_id)
        if cached is not None:
            self._cache.move_to_end(snapshot_id)
            return cached
        async with self._db.read() as conn:
            found = await store.snapshot(conn, snapshot_id)
        if found is not None:
            self._cache[snapshot_id] = found
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return found

    async def delivery(self, patch: dict[str, Any], node_id: str) -> dict[str, Any]:
        """The wire.PatchDelivery for ``node_id`` of a command whose ``patch`` column this is:
        the baselines of the operating systems of the node's platform (Windows: WINDOWS,
        macOS: MACOS, Linux: every Linux one, the agent picks its own), narrowed to the one
        its platform name says when the Linux ones together are over DELIVERY_BUDGET."""
        async with self._db.read() as conn:
            node = await node_store.get(conn, node_id) or {}
        baselines = await self._baselines_for(patch, node_id)
        wanted = _family(str(node.get("platform") or ""))
        if wanted is not None:
            baselines = {k: v for k, v in baselines.items() if k in wanted}
        if len(json.dumps(baselines)) > DELIVERY_BUDGET:
            guess = guess_os(str(node.get("platform_name") or ""))
            baselines = {k: v for k, v in baselines.items() if k == guess}
        return {
            "snapshot_id": str(patch.get("snapshot_id") or ""),
            "patch_group": str((patch.get("groups") or {}).get(node_id) or ""),
            "baselines": baselines,
        }

    async def _baselines_for(
        self, patch: dict[str, Any], node_id: str
    ) -> dict[str, dict[str, Any]]:
        snapshot_id = str(patch.get("snapshot_id") or "")
        group = str((patch.get("groups") or {}).get(node_id) or "")
        content = await self.content(snapshot_id) or {}
        defaults = content.get("defaults") or {}
        by_group = (content.get("groups") or {}).get(group) or {}
        stored = content.get("baselines") or {}
        override = content.get("override") or {}
        baselines: dict[str, dict[str, Any]] = {}
        for os_name, raw in predefined.PREDEFINED.items():
            if os_name in override:
                baselines[os_name] = override[os_name]
                continue
            baseline_id = by_group.get(os_name) or defaults.get(os_name) or str(raw["Name"])
            if baseline_id in stored:
                baselines[os_name] = stored[baseline_id]
                continue
            found = predefined.predefined(os_name)
            if baseline_id == str(raw["Name"]) and found is not None:
                baselines[os_name] = found.to_json()
        return baselines

    async def prune_if_due(self, now: float) -> int:
        """Drop snapshots past SNAPSHOT_RETENTION, at most once an hour."""
        if self._pruned_at is not None and now - self._pruned_at < 3600.0:
            return 0
        self._pruned_at = now
        async with self._db.transaction() as conn:
            return await store.prune_snapshots(conn, now - SNAPSHOT_RETENTION)
