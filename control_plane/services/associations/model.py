"""What an association is made of, checked as SSM checks CreateAssociation, and how it is shown.

The rules (AWS's CreateAssociation and its "Cron and rate expressions" reference): a name of
3-128 letters, digits, ``_ - .``; a schedule an association may take (agent/schedules:
rate() of 30 minutes to 31 days, cron() seconds only 0); ``--apply-only-at-cron-interval``
needs a schedule and not a rate(); ``--schedule-offset`` (1-6 days) takes a cron() only and
needs ``--apply-only-at-cron-interval``; rate and error control as Run Command; compliance
severity and sync as SSM's words.  Everything is checked before anything is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent import wire
from agent.errors import AgentError
from control_plane.errors import InvalidRequest
from control_plane.services.commands.rate import check_max_concurrency, check_max_errors
from control_plane.services.targets import check_specs

NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-]{3,128}$")
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNSPECIFIED")
SYNC_MODES = ("AUTO", "MANUAL")
OFFSET_DAYS = (1, 6)
MAX_CALENDARS = 10
EXECUTION_TIMEOUT = (5, 172_800)

# An execution's status, as SSM's association execution statuses.
PENDING, IN_PROGRESS, SUCCESS, FAILED, SKIPPED = (
    "Pending",
    "InProgress",
    "Success",
    "Failed",
    "Skipped",
)


@dataclass
class Spec:
    """The settable part of an association (create takes all of it, update any of it)."""

    name: str
    document: str
    document_version: str | None
    targets: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    timezone: str = "UTC"
    apply_only_at_cron_interval: bool = False
    schedule_offset: int | None = None
    max_concurrency: str = "50"
    max_errors: str = "0"
    compliance_severity: str = "UNSPECIFIED"
    sync_compliance: str = "AUTO"
    calendars: list[str] = field(default_factory=list)
    execution_timeout: int = 3600

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Spec:
        return cls(
            name=row["name"],
            document=row["document_name"],
            document_version=row["document_version"],
            targets=list(row["targets"]),
            parameters=dict(row["parameters"]),
            schedule=row["schedule"],
            timezone=row["timezone"],
            apply_only_at_cron_interval=bool(row["apply_only_at_cron_interval"]),
            schedule_offset=row["schedule_offset"],
            max_concurrency=row["max_concurrency"],
            max_errors=row["max_errors"],
            compliance_severity=row["compliance_severity"],
            sync_compliance=row["sync_compliance"],
            calendars=list(row["calendars"]),
            execution_timeout=row["execution_timeout"],
        )

    def columns(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "document_name": self.document,
            "document_version": self.document_version,
            "targets": self.targets,
            "parameters": self.parameters,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "apply_only_at_cron_interval": self.apply_only_at_cron_interval,
            "schedule_offset": self.schedule_offset,
            "max_concurrency": self.max_concurrency,
            "max_errors": self.max_errors,
            "compliance_severity": self.compliance_severity,
            "sync_compliance": self.sync_compliance,
            "calendars": self.calendars,
            "execution_timeout": self.execution_timeout,
        }


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"association name {str(name)[:140]!r} must be 3 to 128 letters, digits, _ - or ."
        )
    return name


def check(spec: Spec) -> Spec:
    """Refuse what SSM refuses, one line naming what was wrong."""
    check_name(spec.name)
    spec.targets = check_specs(spec.targets)
    check_max_concurrency(spec.max_concurrency)
    check_max_errors(spec.max_errors)
    if spec.compliance_severity not in SEVERITIES:
        raise InvalidRequest(f"compliance severity must be one of {', '.join(SEVERITIES)}")
    if spec.sync_compliance not in SYNC_MODES:
        raise InvalidRequest("sync compliance must be AUTO or MANUAL")
    lo, hi = EXECUTION_TIMEOUT
    if not lo <= spec.execution_timeout <= hi:
        raise InvalidRequest(f"execution timeout must be {lo} to {hi} seconds")
    if len(spec.calendars) > MAX_CALENDARS or len(set(spec.calendars)) != len(spec.calendars):
        raise InvalidRequest(f"at most {MAX_CALENDARS} distinct change calendars")
    _check_schedule(spec)
    return spec


def _check_schedule(spec: Spec) -> None:
    from agent import schedules

    try:
        schedules.check_zone(spec.timezone)
        parsed = schedules.parse(spec.schedule, "association") if spec.schedule else None
    except AgentError as exc:
        raise InvalidRequest(exc.message) from None
    if parsed is None:
        if spec.apply_only_at_cron_interval:
            raise InvalidRequest("--apply-only-at-cron-interval needs a schedule")
        if spec.schedule_offset is not None:
            raise InvalidRequest("a schedule offset needs a cron() schedule")
        return
    if spec.apply_only_at_cron_interval and parsed.kind != "cron":
        raise InvalidRequest("--apply-only-at-cron-interval is not allowed with rate()")
    if spec.schedule_offset is not None:
        lo, hi = OFFSET_DAYS
        if parsed.kind != "cron":
            raise InvalidRequest("a schedule offset is allowed with cron() only")
        if not lo <= spec.schedule_offset <= hi:
            raise InvalidRequest(f"the schedule offset must be {lo} to {hi} days")
        if not spec.apply_only_at_cron_interval:
            raise InvalidRequest("a schedule offset needs --apply-only-at-cron-interval")


def execution_status(row: dict[str, Any]) -> tuple[str, str]:
    """An execution's (status, detailed status): its own when nothing ran, else its command's
    in SSM's association words."""
    if row.get("status"):
        return str(row["status"]), str(row.get("detailed_status") or row["status"])
    command_status = row.get("command_status")
    if command_status is None:
        return PENDING, "Claimed"
    return invocation_status(str(command_status)), str(row.get("command_status_details") or "")


def invocation_status(status: str) -> str:
    if status in (wire.ST_PENDING, wire.ST_DELAYED):
        return PENDING
    if status == wire.ST_IN_PROGRESS:
        return IN_PROGRESS
    if status == wire.ST_SUCCESS:
        return SUCCESS
    return FAILED
