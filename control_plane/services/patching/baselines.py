"""Patch baselines, the default per operating system, and patch groups (SSM's
CreatePatchBaseline, UpdatePatchBaseline, GetPatchBaseline, DescribePatchBaselines,
DeletePatchBaseline, RegisterDefaultPatchBaseline, RegisterPatchBaselineForPatchGroup,
DeregisterPatchBaselineForPatchGroup, DescribePatchGroups).

A baseline is AWS's JSON (agent/patching/baseline.py checks it); the predefined ones are in
code (agent/patching/defaults.py), listed beside the operators' and never changed.  Each
operating system has one default (the predefined one until an operator sets another); a patch
group has at most one baseline per operating system, and a node's ``Patch Group`` (or
``PatchGroup``) tag picks it.  A baseline that is a default or serves a patch group cannot be
deleted (AWS's ResourceInUse).
"""

from __future__ import annotations

import secrets
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection

from agent.patching import defaults as predefined
from agent.patching.baseline import Baseline, BaselineError, parse
from agent.patching.names import PATCH_GROUP_RE
from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import audit_context
from control_plane.services.clock import Clock, rfc3339
from control_plane.store import patching as store
from control_plane.store.db import Database

PATCH_GROUP_TAGS: Final = ("Patch Group", "PatchGroup")


def check_group(name: str) -> str:
    if not isinstance(name, str) or not PATCH_GROUP_RE.match(name):
        raise InvalidRequest(
            f"patch group {str(name)[:60]!r}: 1 to 256 letters, digits, spaces and _.:/=+-@"
        )
    return name


def patch_group_of(tags: dict[str, str]) -> str:
    """The node's patch group: its ``Patch Group`` tag, else ``PatchGroup`` ("" if none)."""
    for key in PATCH_GROUP_TAGS:
        value = tags.get(key)
        if value:
            return value
    return ""


def new_id() -> str:
    return "pb-" + secrets.token_hex(9)[:17]


def _parse(raw: Any, baseline_id: str = "") -> Baseline:
    try:
        return parse(raw, baseline_id=baseline_id)
    except BaselineError as exc:
        raise InvalidRequest(str(exc)) from None


class BaselineService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    # Reading -------------------------------------------------------------------------------
    async def load(self, baseline_id: str) -> Baseline:
        """The baseline (predefined ones included), or NotFound."""
        found = _predefined(baseline_id)
        if found is not None:
            return found
        async with self._db.read() as conn:
            row = await store.baseline(conn, baseline_id)
            if row is None:
                row = await store.baseline_named(conn, baseline_id)
        if row is None:
            raise NotFound(f"patch baseline {baseline_id} not found")
        return _parse(row["content"], row["id"])

    async def get(self, baseline_id: str) -> dict[str, Any]:
        """GetPatchBaseline: the baseline's JSON, its patch groups, whether it is a default."""
        baseline = await self.load(baseline_id)
        async with self._db.read() as conn:
            row = await store.baseline(conn, baseline.baseline_id)
            groups = await store.groups(conn, baseline_id=baseline.baseline_id)
            chosen = await store.defaults(conn)
        view = baseline.to_json()
        view["PatchGroups"] = sorted({g["patch_group"] for g in groups})
        view["DefaultBaseline"] = self._effective_default(chosen, baseline.operating_system) == (
            baseline.baseline_id
        )
        view["Predefined"] = row is None
        if row is not None:
            view["CreatedDate"] = rfc3339(row["created_at"])
            view["ModifiedDate"] = rfc3339(row["modified_at"])
        return view

    async def summaries(self, operating_system: str | None = None) -> list[dict[str, Any]]:
        """DescribePatchBaselines: every baseline (predefined first), with whether it is its
        operating system's default."""
        async with self._db.read() as conn:
            rows = await store.baselines(conn)
            chosen = await store.defaults(conn)
        found: list[dict[str, Any]] = []
        for b in predefined.all_predefined():
            found.append(self._summary(b, chosen, predefined=True))
        for row in rows:
            found.append(self._summary(_parse(row["content"], row["id"]), chosen, False))
        if operating_system:
            found = [f for f in found if f["OperatingSystem"] == operating_system]
        return found

    def _summary(self, b: Baseline, chosen: dict[str, str], predefined: bool) -> dict[str, Any]:
        return {
            "BaselineId": b.baseline_id,
            "BaselineName": b.name,
            "OperatingSystem": b.operating_system,
            "BaselineDescription": b.description,
            "DefaultBaseline": self._effective_default(chosen, b.operating_system) == b.baseline_id,
            "Predefined": predefined,
        }

    @staticmethod
    def _effective_default(chosen: dict[str, str], operating_system: str) -> str:
        if operating_system in chosen:
            return chosen[operating_system]
        raw = predefined.PREDEFINED.get(operating_system)
        return str(raw["Name"]) if raw else ""

    # Changing ------------------------------------------------------------------------------
    async def create(self, raw: Any) -> dict[str, Any]:
        baseline = _parse(raw)
        if baseline.name in predefined.PREDEFINED_IDS:
            raise Conflict(f"{baseline.name} is a predefined baseline's name")
        now = self._clock()
        baseline_id = new_id()
        content = {k: v for k, v in baseline.to_json().items() if k != "BaselineId"}
        async with self._db.transaction() as conn:
            if await store.baseline_named(conn, baseline.name) is not None:
                raise Conflict(f"a patch baseline named {baseline.name} already exists")
            await store.insert_baseline(
                conn,
                {
                    "id": baseline_id,
                    "name": baseline.name,
                    "operating_system": baseline.operating_system,
                    "content": content,
                    "created_at": now,
                    "modified_at": now,
                },
            )
            audit_context.name_resource(f"baseline/{baseline_id}", name=baseline.name)
        return {"BaselineId": baseline_id, "Name": baseline.name}

    async def update(self, baseline_id: str, raw: Any) -> dict[str, Any]:
        """UpdatePatchBaseline with Replace: the given fields replace the baseline's; fields
        not given keep their values (the operating system cannot change)."""
        _refuse_predefined(baseline_id, "changed")
        if not isinstance(raw, dict):
            raise InvalidRequest("a patch baseline update is a JSON object of fields")
        now = self._clock()
        async with self._db.transaction() as conn:
            row = await _row(conn, baseline_id)
            baseline_id = row["id"]
            given_os = raw.get("OperatingSystem")
            if given_os is not None and given_os != row["operating_system"]:
                raise InvalidRequest(
                    f"OperatingSystem cannot change ({row['operating_system']}): create "
                    "another baseline"
                )
            merged = {**row["content"], **{k: v for k, v in raw.items() if k != "BaselineId"}}
            baseline = _parse(merged, baseline_id)
            if baseline.name != row["name"]:
                other = await store.baseline_named(conn, baseline.name)
                if other is not None or baseline.name in predefined.PREDEFINED_IDS:
                    raise Conflict(f"a patch baseline named {baseline.name} already exists")
            content = {k: v for k, v in baseline.to_json().items() if k != "BaselineId"}
            await store.update_baseline(
                conn, baseline_id, name=baseline.name, content=content, modified_at=now
            )
            audit_context.name_resource(f"baseline/{baseline_id}", name=baseline.name)
        return await self.get(baseline_id)

    async def delete(self, baseline_id: str) -> dict[str, Any]:
        _refuse_predefined(baseline_id, "deleted")
        async with self._db.transaction() as conn:
            row = await _row(conn, baseline_id)
            baseline_id = row["id"]
            chosen = await store.defaults(conn)
            if chosen.get(row["operating_system"]) == baseline_id:
                raise Conflict(
                    f"patch baseline {baseline_id} is the default for "
                    f"{row['operating_system']}: set another default first"
                )
            groups = await store.groups(conn, baseline_id=baseline_id)
            if groups:
                names = ", ".join(sorted({g["patch_group"] for g in groups})[:5])
                raise Conflict(
                    f"patch baseline {baseline_id} serves patch group(s) {names}: "
                    "deregister them first"
                )
            await store.delete_baseline(conn, baseline_id)
            audit_context.name_resource(f"baseline/{baseline_id}", name=row["name"])
        return {"BaselineId": baseline_id, "deleted": True}

    async def set_default(self, baseline_id: str) -> dict[str, Any]:
        """RegisterDefaultPatchBaseline: the baseline becomes its OS's default."""
        baseline = await self.load(baseline_id)
        async with self._db.transaction() as conn:
            if _predefined(baseline.baseline_id) is not None:
                await store.clear_default(conn, baseline.operating_system)
            else:
                await store.set_default(conn, baseline.operating_system, baseline.baseline_id)
            audit_context.name_resource(
                f"baseline/{baseline.baseline_id}", operating_system=baseline.operating_system
            )
        return {"BaselineId": baseline.baseline_id, "OperatingSystem": baseline.operating_system}

    async def defaults(self) -> dict[str, str]:
        """Every operating system's default baseline id."""
        async with self._db.read() as conn:
            chosen = await store.defaults(conn)
        return {os_name: self._effective_default(chosen, os_name) for os_name in
                predefined.PREDEFINED}  # fmt: skip

    # Patch groups --------------------------------------------------------------------------
    async def register_group(self, baseline_id: str, patch_group: str) -> dict[str, Any]:
        check_group(patch_group)
        baseline = await self.load(baseline_id)
        async with self._db.transaction() as conn:
            taken = await store.group_baseline(conn, patch_group, baseline.operating_system)
            if taken is not None:
                raise Conflict(
                    f"patch group {patch_group} already has baseline {taken} for "
                    f"{baseline.operating_system}: deregister it first"
                )
            await store.register_group(
                conn, patch_group, baseline.operating_system, baseline.baseline_id
            )
            audit_context.name_resource(f"baseline/{baseline.baseline_id}", patch_group=patch_group)
        return {"BaselineId": baseline.baseline_id, "PatchGroup": patch_group}

    async def deregister_group(self, baseline_id: str, patch_group: str) -> dict[str, Any]:
        check_group(patch_group)
        baseline = await self.load(baseline_id)
        async with self._db.transaction() as conn:
            taken = await store.group_baseline(conn, patch_group, baseline.operating_system)
            if taken != baseline.baseline_id:
                raise NotFound(
                    f"patch group {patch_group} is not registered with {baseline.baseline_id}"
                )
            await store.deregister_group(conn, patch_group, baseline.operating_system)
            audit_context.name_resource(f"baseline/{baseline.baseline_id}", patch_group=patch_group)
        return {"BaselineId": baseline.baseline_id, "PatchGroup": patch_group}

    async def groups(self) -> list[dict[str, Any]]:
        """DescribePatchGroups: each (patch group, operating system) and its baseline."""
        async with self._db.read() as conn:
            rows = await store.groups(conn)
        return [
            {
                "PatchGroup": r["patch_group"],
                "OperatingSystem": r["operating_system"],
                "BaselineId": r["baseline_id"],
            }
            for r in rows
        ]


async def _row(conn: AsyncConnection, baseline_id: str) -> dict[str, Any]:
    """An operator's baseline by id or name, or NotFound."""
    row = await store.baseline(conn, baseline_id) or await store.baseline_named(conn, baseline_id)
    if row is None:
        raise NotFound(f"patch baseline {baseline_id} not found")
    return row


def _predefined(baseline_id: str) -> Baseline | None:
    if baseline_id not in predefined.PREDEFINED_IDS:
        return None
    for b in predefined.all_predefined():
        if b.baseline_id == baseline_id:
            return b
    return None


def _refuse_predefined(baseline_id: str, what: str) -> None:
    if baseline_id in predefined.PREDEFINED_IDS:
        raise InvalidRequest(f"{baseline_id} is predefined: it cannot be {what}")
