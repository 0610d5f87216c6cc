"""Run Command: send a document to many nodes, follow it, cancel it, read its output.

Sending validates everything first (document, parameters, targets, rate values): a command
that cannot run is refused whole and nothing is stored.  The dispatcher does the fan-out.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agent import wire
from agent.documents import resolve_parameters, ssm_references
from agent.errors import DocumentError
from control_plane.errors import CorralError, InvalidRequest, NotFound, OutOfScope
from control_plane.services import paging
from control_plane.services.channel import AgentChannel
from control_plane.services.clock import Clock
from control_plane.services.commands.dispatcher import Dispatcher
from control_plane.services.commands.nesting import DocumentCheck, embed_nested_documents
from control_plane.services.commands.rate import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_ERRORS,
    check_max_concurrency,
    check_max_errors,
)
from control_plane.services.commands.reports import UpdateStore, check_update
from control_plane.services.commands.views import (
    NoOutput,
    OutputAccess,
    command_view,
    invocation_view,
    readable_nodes,
)
from control_plane.services.documents import DocumentService
from control_plane.services.parameters import refs as parameter_refs
from control_plane.services.parameters.refs import Decide
from control_plane.services.parameters.service import ParameterService
from control_plane.services.patching.snapshots import Snapshots, runs_patch_baseline
from control_plane.services.patching.snapshots import check_parameters as check_patch_parameters
from control_plane.services.targets import check_specs, resolve
from control_plane.services.validation import check_text
from control_plane.store import commands as store
from control_plane.store import nodes as node_store
from control_plane.store.db import Database

# The targets (node id -> tags) the sender may not run on; empty: all allowed.
NodeCheck = Callable[[dict[str, dict[str, str]]], list[str]]
# What a command resolved to (its nodes, every document it runs), for its audit entry.
AuditDetails = Callable[[dict[str, Any]], None]
# Runs inside the transaction that stores the command, with its nodes: whoever sends it
# records its own side there (an association execution claims its scheduled slot), so the
# two are stored together or not at all.  Raising aborts the send; nothing is stored.
Inside = Callable[[AsyncConnection, list[str]], Awaitable[None]]

log = logging.getLogger("corral.commands")

# What a batch's caller stores in the batch's transaction, before the commands: given each
# command with its live nodes (none: it will not be stored), it answers the ids of those it
# will not have stored after all (a scheduled slot another pass claimed first).
BatchInside = Callable[[AsyncConnection, list[tuple["Planned", list[str]]]], Awaitable[set[str]]]


@dataclass
class Planned:
    """A command another service decided to send (an association's run), checked as send()
    checks one and stored with others in one transaction (CommandService.send_batch)."""

    command_id: str
    requested_by: str
    targets: list[str]  # what the nodes were chosen by, for the record
    node_ids: list[str]
    document: str
    document_version: str | None
    parameters: dict[str, Any]
    max_concurrency: str = DEFAULT_MAX_CONCURRENCY
    max_errors: str = DEFAULT_MAX_ERRORS
    timeout_seconds: int = 3600
    delivery_timeout_seconds: int = 600
    comment: str = ""


EXECUTION_TIMEOUT = (5, 172_800)
DELIVERY_TIMEOUT = (30, 2_592_000)


def _check_range(name: str, value: int, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise InvalidRequest(f"{name} must be {bounds[0]} to {bounds[1]} seconds")
    return value


class CommandService:
    def __init__(
        self,
        db: Database,
        documents: DocumentService,
        dispatcher: Dispatcher,
        channel: AgentChannel,
        clock: Clock,
        parameters: ParameterService | None = None,
    ) -> None:
        self._db = db
        self._parameters = parameters
        self._documents = documents
        self._dispatcher = dispatcher
        self._clock = clock
        # AWS-RunPatchBaseline's baselines, frozen in the send's transaction (the hub wires
        # Patch Manager's snapshots in; None: no command may run the patch action).
        self.patching: Snapshots | None = None
        # Corral-UpdateAgent's version must be a package the server has (the hub wires
        # services/packages/ in): raises InvalidRequest with the versions there are.
        self.agent_update_check: Callable[[str, dict[str, Any]], None] | None = None
        reports = UpdateStore(dispatcher, clock)
        channel.register_validator(wire.MSG_INVOCATION_UPDATE, check_update)
        channel.register_batch_handler(wire.MSG_INVOCATION_UPDATE, reports.store)
        # output_uploaded: the blob was stored by the upload itself; nothing more to record.

    async def _pin_references(
        self, doc: Any, values: dict[str, Any], allowed: Decide
    ) -> dict[str, dict[str, Any]]:
        found = ssm_references(doc, values)
        if not found:
            return {}
        if self._parameters is None:
            raise InvalidRequest("Parameter Store references need Parameter Store")
        refs = parameter_refs.references(doc, values, found)
        pins: dict[str, dict[str, Any]] = {}
        names: dict[str, tuple[str, str]] = {}
        for ref in refs:
            name, version, type_ = await self._parameters.pin(ref.selector)
            pins[ref.text] = {"name": name, "version": version, "secure": ref.secure}
            names[ref.text] = (name, type_)
        parameter_refs.check_access(refs, names, allowed)
        return pins

    async def send(
        self,
        *,
        requested_by: str,
        targets: list[Any],
        document: str,
        document_version: str | None,
        parameters: dict[str, Any],
        max_concurrency: str = DEFAULT_MAX_CONCURRENCY,
        max_errors: str = DEFAULT_MAX_ERRORS,
        timeout_seconds: int = 3600,
        delivery_timeout_seconds: int = 600,
        comment: str = "",
        authorize: NodeCheck | None = None,
        authorize_parameter: Decide | None = None,
        authorize_document: DocumentCheck | None = None,
        audit_details: AuditDetails | None = None,
        command_id: str | None = None,
        node_ids: list[str] | None = None,
        inside: Inside | None = None,
    ) -> dict[str, Any]:
        """``node_ids``: the nodes, already chosen (those still registered run; ``targets``
        is then what they were chosen by, kept for the record); ``inside``: see Inside.
        ``authorize`` sees every resolved target with its tags before anything is stored,
        and refuses the whole command if any is out of the sender's scope;
        ``authorize_document`` is asked for every document the command nests, at any depth;
        ``audit_details`` hears which nodes and documents it resolved to, before the commit."""
        specs = check_specs(targets)
        check_max_concurrency(max_concurrency)
        check_max_errors(max_errors)
        _check_range("timeout", timeout_seconds, EXECUTION_TIMEOUT)
        _check_range("delivery timeout", delivery_timeout_seconds, DELIVERY_TIMEOUT)
        check_text("comment", comment, 100)
        resolved, values, pins, content, nested = await self._prepare(
            document, document_version, parameters, authorize_parameter, authorize_document
        )
        now = self._clock()
        row = self._row(
            command_id or str(uuid.uuid4()), resolved, content, values, pins, specs, now,
            requested_by,
        )  # fmt: skip
        row.update(
            comment=comment,
            max_concurrency=max_concurrency,
            max_errors=max_errors,
            execution_timeout=timeout_seconds,
            delivery_timeout=delivery_timeout_seconds,
        )
        async with self._db.transaction() as conn:
            if node_ids is None:
                node_ids = await resolve(conn, specs)
            else:
                node_ids = await node_store.live_ids(conn, node_ids)
            if not node_ids:
                raise InvalidRequest(f"the targets {' '.join(specs)} match no registered node")
            if audit_details is not None:
                audit_details(
                    {
                        "nodes": sorted(node_ids)[:1000],
                        "documents": [f"{resolved.name}:{resolved.version}", *nested.runs],
                    }
                )
            if authorize is not None:
                out = authorize(await node_store.tags_for(conn, node_ids))
                if out:
                    raise OutOfScope(out)
            row["target_count"] = len(node_ids)
            if inside is not None:  # first: a claim it makes fails before anything is written
                await inside(conn, node_ids)
            row["patch"] = await self._freeze_patch(conn, content, node_ids, values)
            await store.insert(conn, row, node_ids, now)
        self._dispatcher.submit(row, node_ids)
        log.info(
            "command sent",
            extra={
                "command_id": row["id"],
                "document": resolved.name,
                "targets": len(node_ids),
                "requested_by": requested_by,
            },
        )
        return await self.get(row["id"], NoOutput())

    async def send_batch(
        self, planned: list[Planned], inside: BatchInside
    ) -> tuple[dict[str, CorralError], set[str]]:
        """Store many commands in one transaction (a scheduler's due runs: one round trip
        to the database for hundreds, not hundreds).  Each is checked as send() checks one
        (documents prepared once per document, version and parameters); the answer: the
        errors of those refused (nothing stored for them), and the ids ``inside`` dropped or
        that had no registered node left."""
        errors: dict[str, CorralError] = {}
        prepared: dict[str, Any] = {}
        rows: list[tuple[Planned, dict[str, Any]]] = []
        now = self._clock()
        for item in planned:
            try:
                specs = check_specs(item.targets)
                check_max_concurrency(item.max_concurrency)
                check_max_errors(item.max_errors)
                _check_range("timeout", item.timeout_seconds, EXECUTION_TIMEOUT)
                _check_range("delivery timeout", item.delivery_timeout_seconds, DELIVERY_TIMEOUT)
                key = json.dumps(
                    [item.document, item.document_version, item.parameters], sort_keys=True
                )
                if key not in prepared:
                    prepared[key] = await self._prepare(
                        item.document, item.document_version, item.parameters, None, None
                    )
            except CorralError as exc:
                errors[item.command_id] = exc
                continue
            resolved, values, pins, content, _nested = prepared[key]
            row = self._row(
                item.command_id, resolved, content, values, pins, specs, now, item.requested_by
            )
            row.update(
                comment=item.comment,
                max_concurrency=item.max_concurrency,
                max_errors=item.max_errors,
                execution_timeout=item.timeout_seconds,
                delivery_timeout=item.delivery_timeout_seconds,
            )
            rows.append((item, row))
        stored: list[tuple[dict[str, Any], list[str]]] = []
        async with self._db.transaction() as conn:
            wanted = list(dict.fromkeys(n for item, _row in rows for n in item.node_ids))
            live = set(await node_store.live_ids(conn, wanted))
            ready = [(item, [n for n in item.node_ids if n in live]) for item, _row in rows]
            dropped = await inside(conn, ready)
            dropped |= {item.command_id for item, nodes in ready if not nodes}
            for (item, row), (_item, nodes) in zip(rows, ready, strict=True):
                if item.command_id not in dropped:
                    row["target_count"] = len(nodes)
                    row["patch"] = await self._freeze_patch(
                        conn, row["document_content"], nodes, row["parameters"]
                    )
                    stored.append((row, nodes))
            await store.insert_many(conn, stored, now)
        for row, nodes in stored:
            self._dispatcher.submit(row, nodes)
        if stored:
            log.info("commands sent", extra={"count": len(stored)})
        return errors, dropped

    @staticmethod
    def _row(
        command_id: str,
        resolved: Any,
        content: Any,
        values: dict[str, Any],
        pins: dict[str, dict[str, Any]],
        specs: list[str],
        now: float,
        requested_by: str,
    ) -> dict[str, Any]:
        return {
            "id": command_id,
            "document_name": resolved.name,
            "document_version": resolved.version,
            "document_sha256": resolved.sha256,
            "document_content": content,
            "parameters": values,
            "targets": specs,
            "status": wire.ST_PENDING,
            "status_details": wire.ST_PENDING,
            "requested_by": requested_by,
            "created_at": now,
            "completed_at": None,
            "cancel_requested_at": None,
            "parameter_refs": pins or None,
        }

    async def _prepare(
        self,
        document: str,
        document_version: str | None,
        parameters: dict[str, Any],
        authorize_parameter: Decide | None,
        authorize_document: DocumentCheck | None,
    ) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]], Any, Any]:
        resolved = await self._documents.resolve(document, document_version)
        try:
            values = resolve_parameters(resolved.document, parameters)
        except DocumentError as exc:
            raise InvalidRequest(exc.message) from None
        pins = await self._pin_references(
            resolved.document, values, authorize_parameter or (lambda _action, _res, _type: True)
        )
        content, nested = await embed_nested_documents(
            self._documents,
            resolved.name,
            resolved.document,
            values,
            authorize_document or (lambda _name: True),
        )
        if self.agent_update_check is not None:
            self.agent_update_check(resolved.name, values)
        if runs_patch_baseline(content):
            if self.patching is None:
                raise InvalidRequest("this server does not run Patch Manager documents")
            check_patch_parameters(values)
        return resolved, values, pins, content, nested

    async def _freeze_patch(
        self, conn: AsyncConnection, content: Any, node_ids: list[str], values: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The command's baseline snapshot (services/patching/snapshots.py), if it patches."""
        if self.patching is None or not runs_patch_baseline(content):
            return None
        return await self.patching.freeze(conn, node_ids, values)

    async def check_run(
        self,
        document: str,
        document_version: str | None,
        parameters: dict[str, Any],
        *,
        authorize_parameter: Decide | None = None,
        authorize_document: DocumentCheck | None = None,
    ) -> dict[str, Any]:
        """Everything send() checks of a document run, storing nothing (for what runs later:
        an association, a maintenance window task): the resolved document (``name``,
        ``version``, ``sha256``, ``content`` with nested documents embedded), the parameters
        with defaults (``parameters``), and whether it reads Parameter Store (``pins``)."""
        resolved, values, pins, content, _nested = await self._prepare(
            document, document_version, parameters, authorize_parameter, authorize_document
        )
        return {
            "name": resolved.name,
            "version": resolved.version,
            "sha256": resolved.sha256,
            "content": content,
            "parameters": values,
            "pins": pins,
        }

    async def get(self, command_id: str, output: OutputAccess) -> dict[str, Any]:
        """The command with every invocation; step output only where ``output`` may read."""
        async with self._db.read() as conn:
            row = await store.get(conn, command_id)
            if row is None:
                raise NotFound(f"command {command_id} not found")
            invocations = await store.invocations_of(conn, command_id)
            readable = await self._readable(conn, output, invocations)
        return command_view(row, invocations, readable)

    async def invocations(
        self,
        command_id: str,
        output: OutputAccess,
        *,
        node_ids: list[str] | None = None,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
    ) -> paging.Page[dict[str, Any]]:
        """The command's invocations in send order (only ``node_ids`` when given), a page at
        a time, with output where ``output`` may read it."""
        paging.check_limit(limit)
        after = paging.decode(next_token, (int,))
        async with self._db.read() as conn:
            if await store.get(conn, command_id) is None:
                raise NotFound(f"command {command_id} not found")
            rows = await store.invocations_of(
                conn,
                command_id,
                node_ids=node_ids,
                after_seq=None if after is None else int(after[0]),
                limit=limit + 1,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            readable = await self._readable(conn, output, rows)
        views = [invocation_view(r, r["node_id"] in readable) for r in rows]
        return paging.Page(views, paging.encode((rows[-1]["seq"],)) if more else None)

    async def invocation_detail(
        self, command_id: str, node_id: str, output: OutputAccess
    ) -> dict[str, Any]:
        page = await self.invocations(command_id, output, node_ids=[node_id], limit=1)
        if not page.items:
            raise NotFound(f"command {command_id} has no invocation on {node_id}")
        return page.items[0]

    @staticmethod
    async def _readable(
        conn: AsyncConnection, output: OutputAccess, invocations: list[dict[str, Any]]
    ) -> set[str]:
        node_ids = [i["node_id"] for i in invocations]
        tags = await node_store.tags_for(conn, node_ids) if output.uses_node_tags else None
        return readable_nodes(output, node_ids, tags)

    async def list_page(
        self,
        status: str | None,
        node_id: str | None,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
        visible: Callable[[str], bool] = lambda _command_id: True,
    ) -> paging.Page[dict[str, Any]]:
        """Commands newest first, those ``visible(command_id)``, a page at a time."""

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (-after[0], after[1])
            async with self._db.read() as conn:
                return await store.list_commands(conn, status, node_id, n, key)

        page = await paging.scan(
            fetch,
            key=lambda row: (-row["created_at"], row["id"]),
            limit=limit,
            next_token=next_token,
            shape=(float, str),
            visible=lambda row: visible(row["id"]),
        )
        return paging.Page([command_view(r) for r in page.items], page.next_token)

    async def invocation(self, command_id: str, node_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            inv = await store.invocation(conn, command_id, node_id)
        if inv is None:
            raise NotFound(f"command {command_id} has no invocation on {node_id}")
        return inv

    async def cancel(self, command_id: str, node_ids: list[str] | None) -> dict[str, Any]:
        command = await self.get(command_id, NoOutput())
        if node_ids:
            known = {i["node_id"] for i in command["invocations"]}
            unknown = [n for n in node_ids if n not in known]
            if unknown:
                raise InvalidRequest(f"command {command_id} does not target {unknown[0]}")
        if command["completed_at"] is not None or not self._dispatcher.is_active(command_id):
            return {
                "command_id": command_id,
                "cancelled": False,
                "message": f"command already finished ({command['status']}); nothing to cancel",
            }
        if not node_ids:
            async with self._db.transaction() as conn:
                await store.update_command(conn, command_id, cancel_requested_at=self._clock())
        self._dispatcher.cancel(command_id, node_ids or None)
        return {"command_id": command_id, "cancelled": True, "message": "cancellation requested"}
