"""What every action plugin is: a name, ``execute`` and ``request_stop`` (as the SSM agent's
plugin interface), and what it is given and gives back.

A plugin runs inside a document worker, synchronously: one step at a time, its child processes
in their own process group.  ``request_stop`` may be called from a signal handler while
``execute`` runs; it carries the reason, and the reported status follows from it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent import wire
from agent.plugins.output import CappedOutput

if TYPE_CHECKING:
    from agent.documents import Document


class StopReason(enum.Enum):
    """Why a running step is stopped; the step's status follows from it."""

    CANCEL = "cancel"  # a user cancelled the command
    TIMEOUT = "timeout"  # the step's timeoutSeconds or the invocation's execution timeout
    SHUTDOWN = "shutdown"  # the worker was told to stop (the host is shutting down)

    @property
    def status(self) -> str:
        return {
            StopReason.CANCEL: wire.ST_CANCELLED,
            StopReason.TIMEOUT: wire.ST_TIMED_OUT,
            StopReason.SHUTDOWN: wire.ST_FAILED,
        }[self]

    @property
    def details(self) -> str:
        return {
            StopReason.CANCEL: wire.ST_CANCELLED,
            StopReason.TIMEOUT: wire.DETAIL_EXECUTION_TIMED_OUT,
            StopReason.SHUTDOWN: wire.DETAIL_INTERRUPTED,
        }[self]

    @property
    def describe(self) -> str:
        return {
            StopReason.CANCEL: "the command was cancelled",
            StopReason.TIMEOUT: "the step timed out",
            StopReason.SHUTDOWN: "the document worker was stopped",
        }[self]


class Control(enum.Enum):
    """What a script's exit code asks of the rest of the document (SSM's special codes)."""

    NONE = "none"
    EXIT_SUCCESS = "exit_success"  # 168: this step Success, the remaining steps skipped
    EXIT_FAILURE = "exit_failure"  # 169: this step Failed, the remaining steps skipped
    REBOOT = "reboot"  # 194 (Linux, macOS) / 3010 (Windows): reboot, then run this step again


@dataclass
class PluginResult:
    status: str  # Success | Failed | TimedOut | Cancelled | Skipped
    response_code: int | None = None
    control: Control = Control.NONE
    message: str = ""  # why it failed; the engine writes it to the step's stderr
    compliance: wire.StepCompliance | None = None  # corral:putComplianceItems: its items

    @classmethod
    def failed(cls, message: str, response_code: int | None = None) -> PluginResult:
        return cls(wire.ST_FAILED, response_code, message=message)


@dataclass
class NestedOutcome:
    status: str
    response_code: int | None


class NestedRun(Protocol):
    """A nested document's run (aws:runDocument), made by the engine so that a plugin never
    imports the engine."""

    def run(self) -> NestedOutcome: ...

    def request_stop(self, reason: StopReason) -> None: ...


NestedRunFactory = Callable[["Document", dict[str, Any], "StepContext"], NestedRun]


@dataclass(frozen=True)
class InventorySettings:
    """What aws:softwareInventory needs of the agent: its state dir (the outbox it queues
    uploads in, the custom inventory folder) and where AWS:File may look."""

    state_dir: Path
    file_roots: tuple[str, ...]

    @property
    def outbox_file(self) -> Path:
        return self.state_dir / "outbox.db"

    @property
    def custom_dir(self) -> Path:
        return self.state_dir / "inventory" / "custom"


@dataclass(frozen=True)
class PatchSettings:
    """What corral:runPatchBaseline needs of the agent: its state dir (the outbox its
    report is queued in, the pending-reboot record), the tree whose packages it patches
    (``/``; an image or a test's throw-away root), whether it may reboot the node, and the
    baselines the server delivered with the command (wire.PatchDelivery; None: none)."""

    state_dir: Path | None
    root: str = "/"
    reboots_allowed: bool = True
    delivery: dict[str, Any] | None = None

    @property
    def outbox_file(self) -> Path | None:
        return self.state_dir / "outbox.db" if self.state_dir is not None else None

    @property
    def pending_file(self) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / "patching" / "pending-reboot.json"


@dataclass
class StepContext:
    """Everything a plugin may use: nothing global, nothing patched."""

    command_id: str
    step_name: str
    work_dir: Path  # scripts, downloads with relative paths
    stdout: CappedOutput
    stderr: CappedOutput
    deadline: float  # time.monotonic() by which the step must end
    platform: str  # Linux | MacOS | Windows
    kill_grace_seconds: float = 5.0
    depth: int = 1  # 1 for the command's own document, 2-3 inside aws:runDocument
    embedded: dict[str, Any] = field(default_factory=dict)  # documents sent with the command
    run_nested: NestedRunFactory | None = None
    node_id: str = ""  # the node's id (mi-...); empty where there is none (run-document)
    # aws:softwareInventory's settings; None where there is no agent state (run-document).
    inventory: InventorySettings | None = None
    patching: PatchSettings | None = None  # corral:runPatchBaseline (None: run-document)


class Plugin(Protocol):
    name: str

    def execute(
        self, ctx: StepContext, inputs: dict[str, Any], env: dict[str, str]
    ) -> PluginResult:
        """Run the step to its end; never raises for a failure of the step itself."""

    def request_stop(self, reason: StopReason) -> None:
        """Stop the running step soon (kill its process group); safe from a signal handler."""


class PluginFactory(Protocol):
    def __call__(self) -> Plugin: ...


class Stoppable:
    """For a plugin that checks between its changes whether to stop: remembers the first
    reason it was asked to, in ``self._stopped``."""

    def __init__(self) -> None:
        self._stopped: StopReason | None = None

    def request_stop(self, reason: StopReason) -> None:
        if self._stopped is None:
            self._stopped = reason
