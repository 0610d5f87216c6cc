"""What a maintenance window is made of, and the rules its fields follow (AWS's rules for
CreateMaintenanceWindow, RegisterTargetWithMaintenanceWindow and
RegisterTaskWithMaintenanceWindow): each check raises a one-line InvalidRequest naming the
field, before anything is stored."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
import zoneinfo
from typing import Any, Final

from agent.errors import ScheduleError
from agent.schedules import Schedule, check_offset, check_zone, parse
from control_plane.errors import InvalidRequest
from control_plane.services.clock import rfc3339

# Window execution and task execution statuses, as SSM's.
PENDING: Final = "PENDING"
IN_PROGRESS: Final = "IN_PROGRESS"
SUCCESS: Final = "SUCCESS"
FAILED: Final = "FAILED"
TIMED_OUT: Final = "TIMED_OUT"
CANCELLING: Final = "CANCELLING"
CANCELLED: Final = "CANCELLED"
SKIPPED_OVERLAPPING: Final = "SKIPPED_OVERLAPPING"
RUNNING: Final = frozenset({PENDING, IN_PROGRESS, CANCELLING})

RUN_COMMAND: Final = "RUN_COMMAND"
TASK_TYPES: Final = (RUN_COMMAND,)
CONTINUE_TASK: Final = "CONTINUE_TASK"
CANCEL_TASK: Final = "CANCEL_TASK"
CUTOFF_BEHAVIORS: Final = (CONTINUE_TASK, CANCEL_TASK)

# A task's targets: "window-target:<id>" (a registered target) or a Run Command target spec.
WINDOW_TARGET: Final = "window-target:"

_NAME = re.compile(r"[a-zA-Z0-9_\-.]{3,128}")
_WINDOW_ID = re.compile(r"mw-[0-9a-f]{17}")
DURATION_HOURS: Final = (1, 24)
CUTOFF_HOURS: Final = (0, 23)
OFFSET_DAYS: Final = (1, 6)
PRIORITY: Final = (0, 1000)


def new_window_id() -> str:
    return "mw-" + secrets.token_hex(9)[:17]


def new_id() -> str:
    return str(uuid.uuid4())


def check_window_id(window_id: str) -> str:
    if not _WINDOW_ID.fullmatch(window_id):
        raise InvalidRequest(f"window id {window_id[:40]!r} is not mw- and 17 hex digits")
    return window_id


def check_name(what: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"{what} name {name[:140]!r} must be 3 to 128 characters of letters, digits, _ - ."
        )
    return name


def _check_int(what: str, value: object, bounds: tuple[int, int], unit: str = "") -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (bounds[0] <= value <= bounds[1])
    ):
        raise InvalidRequest(f"{what} must be a whole number from {bounds[0]} to {bounds[1]}{unit}")
    return value


def check_duration_cutoff(duration: object, cutoff: object) -> tuple[int, int]:
    hours = _check_int("duration", duration, DURATION_HOURS, " hours")
    cut = _check_int("cutoff", cutoff, CUTOFF_HOURS, " hours")
    if hours < cut + 1:
        raise InvalidRequest(
            f"duration ({hours} h) must be at least cutoff + 1 ({cut + 1} h): "
            "a window must leave time to start its tasks"
        )
    return hours, cut


def check_priority(priority: object) -> int:
    return _check_int("priority", priority, PRIORITY)


def check_schedule(expression: str, zone: str, offset: int | None) -> Schedule:
    """The parsed window schedule; the zone and offset checked with it."""
    if offset is not None:
        _check_int("schedule offset", offset, OFFSET_DAYS, " days")
    try:
        check_zone(zone)
        schedule = parse(expression, "window")
        if offset is not None:
            check_offset(schedule, offset)
    except ScheduleError as exc:
        raise InvalidRequest(exc.message) from None
    return schedule


def expand_targets(task_targets: list[str], window_targets: list[dict[str, Any]]) -> list[str]:
    """A task's targets as Run Command specs: ``window-target:ID`` replaced by that registered
    target's specs; no targets at all means every target registered with the window."""
    by_id = {t["id"]: list(t["targets"]) for t in window_targets}
    if not task_targets:
        return sorted({spec for specs in by_id.values() for spec in specs})
    out: list[str] = []
    for spec in task_targets:
        if spec.startswith(WINDOW_TARGET):
            out.extend(by_id.get(spec.removeprefix(WINDOW_TARGET), []))
        else:
            out.append(spec)
    return list(dict.fromkeys(out))


def parse_date(what: str, text: str | None, zone: str) -> float | None:
    """An ISO 8601 date or date-time (a time without an offset is in the window's zone)."""
    if text is None or text == "":
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{what} {text[:64]!r} is not an ISO 8601 date-time (2027-01-31T02:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return when.timestamp()


def check_dates(start: float | None, end: float | None, now: float) -> None:
    if end is not None and start is not None and end <= start:
        raise InvalidRequest(
            f"end date {rfc3339(end)} is not after the start date {rfc3339(start)}"
        )
    if end is not None and end <= now:
        raise InvalidRequest(f"end date {rfc3339(end)} is in the past")


def window_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "schedule": row["schedule"],
        "schedule_timezone": row["schedule_timezone"],
        "schedule_offset": row["schedule_offset"],
        "duration": row["duration"],
        "cutoff": row["cutoff"],
        "start_date": rfc3339(row["start_date"]),
        "end_date": rfc3339(row["end_date"]),
        "allow_unassociated_targets": row["allow_unassociated_targets"],
        "enabled": row["enabled"],
        "next_execution_time": rfc3339(row["next_run_at"]) if row["enabled"] else None,
        "created_at": rfc3339(row["created_at"]),
        "modified_at": rfc3339(row["modified_at"]),
        "created_by": row["created_by"],
    }


def target_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_target_id": row["id"],
        "window_id": row["window_id"],
        "name": row["name"],
        "targets": row["targets"],
        "owner_information": row["owner_information"],
        "created_at": rfc3339(row["created_at"]),
    }


def task_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_task_id": row["id"],
        "window_id": row["window_id"],
        "name": row["name"],
        "type": row["task_type"],
        "document": row["document"],
        "document_version": row["document_version"],
        "targets": row["targets"],
        "parameters": row["parameters"],
        "priority": row["priority"],
        "max_concurrency": row["max_concurrency"],
        "max_errors": row["max_errors"],
        "cutoff_behavior": row["cutoff_behavior"],
        "timeout_seconds": row["timeout_seconds"],
        "created_at": rfc3339(row["created_at"]),
    }


def execution_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "window_execution_id": row["id"],
        "window_id": row["window_id"],
        "scheduled_time": rfc3339(row["scheduled_at"]),
        "start_time": rfc3339(row["start_time"]),
        "end_time": rfc3339(row["end_time"]),
        "cutoff_time": rfc3339(row["cutoff_at"]),
        "window_end_time": rfc3339(row["ends_at"]),
        "status": row["status"],
        "status_details": row["status_details"],
    }


def task_execution_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_execution_id": row["id"],
        "window_execution_id": row["window_execution_id"],
        "window_task_id": row["task_id"],
        "type": row["task_type"],
        "priority": row["priority"],
        "document": row["document"],
        "parameters": row["parameters"],
        "targets": row["targets"],
        "max_concurrency": row["max_concurrency"],
        "max_errors": row["max_errors"],
        "per_target": row["per_target"],
        "command_ids": command_ids(row),
        "status": row["status"],
        "status_details": row["status_details"],
        "start_time": rfc3339(row["start_time"]),
        "end_time": rfc3339(row["end_time"]),
    }


_PER_NODE = uuid.UUID("9a1f0c52-2b8e-4c1e-9d0a-6f4b7f0e5c31")


def node_command_id(task_execution_id: str, node_id: str) -> str:
    """The command id of a per-target task's run on one node: derived, so a crash between
    recording and sending is recovered by sending again (an existing id was sent)."""
    return str(uuid.uuid5(_PER_NODE, f"{task_execution_id}/{node_id}"))


def command_ids(row: dict[str, Any]) -> list[str]:
    """Every command a task execution sends (or would): its own id, or one per node."""
    if row["start_time"] is None:  # not started (yet, or ever)
        return []
    if row["per_target"]:
        return [node_command_id(row["id"], n) for n in row["node_ids"] or []]
    return [row["id"]]
