"""Maintenance windows: create, register targets and tasks, enable/disable, read executions.

Every field is checked before anything is stored (one-line InvalidRequest); a task's document
and parameters are checked the way Run Command checks them when it sends (the document and
version exist, parameters pass its types and allowedPattern), with pseudo parameters
standing in as values shaped like the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control_plane.errors import Conflict, InvalidRequest, NotFound
from control_plane.services import paging
from control_plane.services.clock import Clock
from control_plane.services.commands.nesting import DocumentCheck
from control_plane.services.commands.rate import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_ERRORS,
    check_max_concurrency,
    check_max_errors,
)
from control_plane.services.commands.service import CommandService
from control_plane.services.parameters.refs import Decide
from control_plane.services.targets import check_specs
from control_plane.services.validation import check_text
from control_plane.services.windows import pseudo
from control_plane.services.windows.job import next_run
from control_plane.services.windows.model import (
    CONTINUE_TASK,
    CUTOFF_BEHAVIORS,
    TASK_TYPES,
    WINDOW_TARGET,
    check_dates,
    check_duration_cutoff,
    check_name,
    check_priority,
    check_schedule,
    execution_view,
    new_id,
    new_window_id,
    parse_date,
    target_view,
    task_execution_view,
    task_view,
    window_view,
)
from control_plane.store import windows as store
from control_plane.store.db import Database

TIMEOUT_SECONDS = (5, 172_800)
MAX_TARGETS_PER_WINDOW = 100
MAX_TASKS_PER_WINDOW = 20


class WindowService:
    def __init__(
        self,
        db: Database,
        commands: CommandService,
        clock: Clock,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._commands = commands
        self._clock = clock
        self.changed = changed  # wakes the scheduler (hub.py sets it)

    # Windows -------------------------------------------------------------------------------

    async def create(
        self,
        *,
        created_by: str,
        name: str,
        schedule: str,
        duration: int,
        cutoff: int,
        schedule_timezone: str = "UTC",
        schedule_offset: int | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        allow_unassociated_targets: bool = False,
        description: str = "",
        enabled: bool = True,
        window_id: str | None = None,
    ) -> dict[str, Any]:
        check_name("window", name)
        check_text("description", description, 128)
        check_duration_cutoff(duration, cutoff)
        check_schedule(schedule, schedule_timezone, schedule_offset)
        start = parse_date("start date", start_date, schedule_timezone)
        end = parse_date("end date", end_date, schedule_timezone)
        now = self._clock()
        check_dates(start, end, now)
        row: dict[str, Any] = {
            "id": window_id or new_window_id(),
            "name": name,
            "description": description,
            "schedule": schedule,
            "schedule_timezone": schedule_timezone,
            "schedule_offset": schedule_offset,
            "duration": duration,
            "cutoff": cutoff,
            "start_date": start,
            "end_date": end,
            "allow_unassociated_targets": allow_unassociated_targets,
            "enabled": enabled,
            "created_at": now,
            "modified_at": now,
            "created_by": created_by,
        }
        first = next_run(row, now)
        if first is None:
            raise InvalidRequest(
                f"the window would never start: {schedule} has no start after now"
                + (" and before the end date" if end is not None else "")
            )
        row["next_run_at"] = first if enabled else None
        async with self._db.transaction() as conn:
            await store.insert_window(conn, row)
        self.changed()
        return window_view(row)

    async def _window(self, window_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await store.get_window(conn, window_id)
        if row is None:
            raise NotFound(f"maintenance window {window_id} not found")
        return row

    async def get(self, window_id: str) -> dict[str, Any]:
        row = await self._window(window_id)
        async with self._db.read() as conn:
            targets = await store.targets_of(conn, window_id)
            tasks = await store.tasks_of(conn, window_id)
        return {
            **window_view(row),
            "targets": [target_view(t) for t in targets],
            "tasks": [task_view(t) for t in tasks],
        }

    async def list_page(
        self,
        *,
        limit: int = paging.DEFAULT_LIMIT,
        next_token: str | None = None,
        visible: Callable[[str], bool] = lambda _window_id: True,
    ) -> paging.Page[dict[str, Any]]:
        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            async with self._db.read() as conn:
                return await store.list_windows(
                    conn, n, None if after is None else (str(after[0]),)
                )

        page = await paging.scan(
            fetch,
            key=lambda r: (r["id"],),
            limit=limit,
            next_token=next_token,
            shape=(str,),
            visible=lambda r: visible(r["id"]),
        )
        return paging.Page([window_view(r) for r in page.items], page.next_token)

    async def set_enabled(self, window_id: str, enabled: bool) -> dict[str, Any]:
        """Enabling computes the next start from now (starts missed while disabled do not
        run); disabling clears it (a running execution goes on)."""
        row = await self._window(window_id)
        now = self._clock()
        changes = {
            "enabled": enabled,
            "modified_at": now,
            "next_run_at": next_run(row, now) if enabled else None,
        }
        async with self._db.transaction() as conn:
            await store.update_window(conn, window_id, **changes)
        self.changed()
        return window_view({**row, **changes})

    async def delete(self, window_id: str) -> None:
        async with self._db.transaction() as conn:
            if not await store.delete_window(conn, window_id):
                raise NotFound(f"maintenance window {window_id} not found")
        self.changed()

    # Targets -------------------------------------------------------------------------------

    async def register_targets(
        self,
        window_id: str,
        targets: list[Any],
        *,
        name: str = "",
        owner_information: str = "",
    ) -> dict[str, Any]:
        """Targets that match no node now are accepted: nodes may register before the window
        starts (they are resolved at each task's start)."""
        specs = check_specs(targets, allow_groups=True)
        if name:
            check_name("target", name)
        check_text("owner information", owner_information, 128)
        await self._window(window_id)
        row = {
            "id": new_id(),
            "window_id": window_id,
            "name": name,
            "targets": specs,
            "owner_information": owner_information,
            "created_at": self._clock(),
        }
        async with self._db.transaction() as conn:
            if len(await store.targets_of(conn, window_id)) >= MAX_TARGETS_PER_WINDOW:
                raise InvalidRequest(
                    f"a window may have at most {MAX_TARGETS_PER_WINDOW} registered targets"
                )
            await store.insert_target(conn, row)
        return target_view(row)

    async def deregister_target(self, window_id: str, target_id: str) -> None:
        async with self._db.transaction() as conn:
            for task in await store.tasks_of(conn, window_id):
                if f"{WINDOW_TARGET}{target_id}" in task["targets"]:
                    raise Conflict(
                        f"window target {target_id} is used by task {task['id']}: "
                        "deregister the task first"
                    )
            if not await store.delete_target(conn, window_id, target_id):
                raise NotFound(f"window {window_id} has no target {target_id}")

    # Tasks ---------------------------------------------------------------------------------

    async def register_task(
        self,
        window_id: str,
        *,
        task_type: str,
        document: str,
        document_version: str | None = None,
        targets: list[Any] | None = None,
        parameters: dict[str, Any] | None = None,
        priority: int = 1,
        max_concurrency: str = DEFAULT_MAX_CONCURRENCY,
        max_errors: str = DEFAULT_MAX_ERRORS,
        cutoff_behavior: str = CONTINUE_TASK,
        timeout_seconds: int = 3600,
        name: str = "",
        authorize_parameter: Decide | None = None,
        authorize_document: DocumentCheck | None = None,
    ) -> dict[str, Any]:
        """``authorize_*``: as Run Command's send, for the Parameter Store values and nested
        documents the task's document reads (checked now, on the registering caller)."""
        if task_type not in TASK_TYPES:
            raise InvalidRequest(
                f"task type {task_type[:32]!r} is not supported "
                f"(supported: {', '.join(TASK_TYPES)})"
            )
        if name:
            check_name("task", name)
        check_priority(priority)
        check_max_concurrency(max_concurrency)
        check_max_errors(max_errors)
        if cutoff_behavior not in CUTOFF_BEHAVIORS:
            raise InvalidRequest(
                f"cutoff behavior {cutoff_behavior[:32]!r} must be {' or '.join(CUTOFF_BEHAVIORS)}"
            )
        if isinstance(timeout_seconds, bool) or not (
            TIMEOUT_SECONDS[0] <= timeout_seconds <= TIMEOUT_SECONDS[1]
        ):
            raise InvalidRequest(
                f"timeout must be {TIMEOUT_SECONDS[0]} to {TIMEOUT_SECONDS[1]} seconds"
            )
        params = dict(parameters or {})
        resolved = await self._check_document(
            document, document_version, params, authorize_parameter, authorize_document
        )
        window = await self._window(window_id)
        async with self._db.read() as conn:
            registered = {t["id"] for t in await store.targets_of(conn, window_id)}
        specs = self._check_task_targets(window, list(targets or []), registered)
        row = {
            "id": new_id(),
            "window_id": window_id,
            "name": name,
            "task_type": task_type,
            "document": resolved,
            "document_version": document_version,
            "targets": specs,
            "parameters": params,
            "priority": priority,
            "max_concurrency": max_concurrency,
            "max_errors": max_errors,
            "cutoff_behavior": cutoff_behavior,
            "timeout_seconds": timeout_seconds,
            "created_at": self._clock(),
        }
        async with self._db.transaction() as conn:
            if len(await store.tasks_of(conn, window_id)) >= MAX_TASKS_PER_WINDOW:
                raise InvalidRequest(f"a window may have at most {MAX_TASKS_PER_WINDOW} tasks")
            await store.insert_task(conn, row)
        return task_view(row)

    async def _check_document(
        self,
        document: str,
        version: str | None,
        parameters: dict[str, Any],
        authorize_parameter: Decide | None,
        authorize_document: DocumentCheck | None,
    ) -> str:
        """The document's name, after a dry run of Run Command's own checks (the document
        and version exist, the parameters pass its types and allowedPattern), pseudo
        parameters standing in as values shaped like the real ones."""
        try:
            found = await self._commands.check_run(
                document,
                version,
                pseudo.substitute(parameters, pseudo.SAMPLE),
                authorize_parameter=authorize_parameter,
                authorize_document=authorize_document,
            )
        except NotFound as exc:
            raise InvalidRequest(exc.message) from None
        return str(found["name"])

    @staticmethod
    def _check_task_targets(
        window: dict[str, Any], targets: list[Any], registered: set[str]
    ) -> list[str]:
        if not targets:
            if not registered:
                raise InvalidRequest(
                    f"window {window['id']} has no registered targets: give the task --targets "
                    "or register targets first"
                )
            return []
        specs: list[str] = []
        plain: list[Any] = []
        for spec in targets:
            if isinstance(spec, str) and spec.startswith(WINDOW_TARGET):
                target_id = spec.removeprefix(WINDOW_TARGET)
                if target_id not in registered:
                    raise InvalidRequest(f"window {window['id']} has no target {target_id[:40]}")
                specs.append(spec)
            else:
                plain.append(spec)
        if plain:
            if not window["allow_unassociated_targets"]:
                raise InvalidRequest(
                    f"window {window['id']} does not allow unassociated targets: use "
                    "window-target:ID (register-targets first), or create the window with "
                    "--allow-unassociated-targets"
                )
            specs.extend(check_specs(plain))
        return specs

    async def deregister_task(self, window_id: str, task_id: str) -> None:
        async with self._db.transaction() as conn:
            if not await store.delete_task(conn, window_id, task_id):
                raise NotFound(f"window {window_id} has no task {task_id}")

    # Executions ----------------------------------------------------------------------------

    async def executions(
        self, window_id: str, *, limit: int = paging.DEFAULT_LIMIT, next_token: str | None = None
    ) -> paging.Page[dict[str, Any]]:
        """The window's executions, newest first."""
        await self._window(window_id)

        async def fetch(after: paging.Key | None, n: int) -> list[dict[str, Any]]:
            key = None if after is None else (-float(after[0]), str(after[1]))
            async with self._db.read() as conn:
                return await store.executions_of(conn, window_id, n, key)

        page = await paging.scan(
            fetch,
            key=lambda r: (-r["scheduled_at"], r["id"]),
            limit=limit,
            next_token=next_token,
            shape=(float, str),
        )
        return paging.Page([execution_view(r) for r in page.items], page.next_token)

    async def execution(self, execution_id: str) -> dict[str, Any]:
        """One execution with its task executions (in priority order)."""
        async with self._db.read() as conn:
            row = await store.get_execution(conn, execution_id)
            if row is None:
                raise NotFound(f"window execution {execution_id} not found")
            tasks = await store.task_executions_of(conn, execution_id)
        return {**execution_view(row), "tasks": [task_execution_view(t) for t in tasks]}
