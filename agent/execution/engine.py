"""Run a document's steps, in order, with SSM's rules; synchronous, one step at a time.

Used by the document worker (the command's own document), by ``aws:runDocument`` (a nested
document, sharing its parent step's output) and by ``corral-agent run-document``.

Flow rules:

- a step whose precondition does not hold is Skipped; an unrecognized one Fails the step;
- an action missing from ``agent.plugins.ACTIONS`` fails its step; an action that does not run
  on this platform is Skipped;
- a failed step does not stop the document unless ``onFailure: exit`` (the remaining steps are
  skipped) or ``onFailure: successAndExit`` (the same, and the step counts as Success);
  ``onSuccess: exit`` skips the rest after a success; exit codes 168 / 169 skip the rest;
  a ``finallyStep`` runs even then;
- a stop (cancel, timeout, shutdown) ends the running step and skips the rest, finally steps
  included; the invocation's status follows from the stop's reason;
- a reboot exit code (194 / 3010) ends the run where it is: the worker records where to resume,
  and the same step runs again after the reboot.

Parameter Store values (``ssm_values``, the references' values sent with the command) go to
the steps' interpolation and to nested documents.  A SecureString value is never pasted into
a script's text (the script file is on disk): such a step fails, naming the reference; and
the messages the engine itself writes to a step's stderr have SecureString values masked.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import wire
from agent.documents import Document, Step, evaluate_precondition, interpolate_step
from agent.errors import DocumentError
from agent.execution.journal import invocation_response_code
from agent.execution.ssm_values import secure_values
from agent.plugins import ACTIONS, Control, Plugin, PluginResult, StepContext, StopReason
from agent.plugins.base import InventorySettings, NestedOutcome, PatchSettings
from agent.plugins.output import CappedOutput
from agent.wire import StepResult

log = logging.getLogger("corral.agent.worker")

_SECURE_REF_RE = re.compile(r"\{\{\s*(" + wire.SSM_SECURE_PREFIX + r"[^\s{}]+)\s*\}\}")
MASK = "****"


class Reboots(enum.Enum):
    """What a reboot exit code may do here."""

    ALLOWED = "allowed"  # the worker of a command: record the resume point and end
    DISABLED = "disabled"  # reboots_enabled = false in agent.toml
    NESTED = "nested"  # inside aws:runDocument
    LOCAL = "local"  # corral-agent run-document

    def refusal(self, code: int) -> str:
        why = {
            Reboots.ALLOWED: "",
            Reboots.DISABLED: "reboots are disabled on this node (reboots_enabled = false "
            "in agent.toml)",
            Reboots.NESTED: "a script inside aws:runDocument cannot reboot the node",
            Reboots.LOCAL: "corral-agent run-document does not reboot the node",
        }[self]
        return f"the script exited with {code} to ask for a reboot, but {why}"


@dataclass(frozen=True)
class EngineSettings:
    platform: str  # Linux | MacOS | Windows
    kill_grace_seconds: float = 5.0
    reboots: Reboots = Reboots.ALLOWED
    inventory: InventorySettings | None = None
    patching: PatchSettings | None = None


@dataclass
class StepOutputs:
    stdout: CappedOutput
    stderr: CappedOutput
    owned: bool = True  # False: a nested document writing into its parent step's streams


OutputFactory = Callable[[Step], StepOutputs]
StepHook = Callable[[int, StepResult], None]


@dataclass
class Outcome(NestedOutcome):
    details: str = wire.ST_SUCCESS
    steps: list[StepResult] = field(default_factory=list)
    reboot_step: int | None = None  # the step to run again after a reboot


def file_outputs(out_dir: Path) -> OutputFactory:
    """Each step's streams in ``out_dir/<index>.stdout`` and ``.stderr``, 16 MiB each."""

    def make(step: Step) -> StepOutputs:
        return StepOutputs(
            CappedOutput(out_dir / f"{step.index}.stdout"),
            CappedOutput(out_dir / f"{step.index}.stderr"),
        )

    return make


class DocumentRun:
    def __init__(
        self,
        doc: Document,
        values: dict[str, Any],
        *,
        command_id: str,
        settings: EngineSettings,
        outputs: OutputFactory,
        work_dir: Path,
        deadline: float,
        depth: int = 1,
        embedded: dict[str, Any] | None = None,
        on_step: StepHook | None = None,
        ssm_values: Mapping[str, str] | None = None,
        node_id: str = "",
    ) -> None:
        self.doc = doc
        self.values = values
        self.command_id = command_id
        self.settings = settings
        self.outputs = outputs
        self.work_dir = work_dir
        self.deadline = deadline  # time.monotonic() at which the whole run times out
        self.depth = depth
        self.embedded = embedded or {}
        self.on_step = on_step
        self.node_id = node_id
        self.ssm_values: Mapping[str, str] = ssm_values or {}
        self._secrets = secure_values(self.ssm_values)
        self.stopped: StopReason | None = None
        self._plugin: Plugin | None = None

    def request_stop(self, reason: StopReason) -> None:
        """Stop the running step and skip the rest; the first reason given is the one kept.
        Safe from a signal handler."""
        if self.stopped is None:
            self.stopped = reason
        plugin = self._plugin
        if plugin is not None:
            plugin.request_stop(reason)

    # The run ------------------------------------------------------------------------------
    def run(self, start: int = 0, previous: list[StepResult] | None = None) -> Outcome:
        results: list[StepResult] = list(previous or [])[:start]
        early: str | None = None  # why the remaining (non-finally) steps are skipped
        for step in self.doc.steps[start:]:
            if self.stopped is None and time.monotonic() >= self.deadline:
                self.stopped = StopReason.TIMEOUT
            if self.stopped is not None:
                results.append(self._skipped(step, f"Step skipped: {self._stop_text()}"))
                continue
            if early is not None and not step.finally_step:
                results.append(self._skipped(step, early))
                continue
            result, control = self._run_step(step)
            if control is Control.REBOOT and self.settings.reboots is Reboots.ALLOWED:
                result["status"] = result["status_details"] = wire.ST_IN_PROGRESS
                results.append(result)
                self._record(step.index, result)
                return self._outcome(results, reboot_step=step.index)
            results.append(result)
            self._record(step.index, result)
            if self.stopped is None and time.monotonic() >= self.deadline:
                self.stopped = StopReason.TIMEOUT
            early = self._after(step, result, control) or early
        return self._outcome(results)

    def _after(self, step: Step, result: StepResult, control: Control) -> str | None:
        """Apply SSM's exit codes and onFailure / onSuccess; why the rest is skipped, if so."""
        status = result["status"]
        if control is Control.EXIT_SUCCESS:
            return f"Step skipped: step {step.name} exited with 168 (success, stop the document)"
        if control is Control.EXIT_FAILURE:
            return f"Step skipped: step {step.name} exited with 169 (failure, stop the document)"
        if status in (wire.ST_FAILED, wire.ST_TIMED_OUT):
            if step.on_failure == "exit":
                return f"Step skipped: step {step.name} failed (onFailure: exit)"
            if step.on_failure == "successAndExit":
                result["status"] = result["status_details"] = wire.ST_SUCCESS
                self._record(step.index, result)
                return f"Step skipped: step {step.name} failed (onFailure: successAndExit)"
        elif status == wire.ST_SUCCESS and step.on_success == "exit":
            return f"Step skipped: step {step.name} succeeded (onSuccess: exit)"
        return None

    def _stop_text(self) -> str:
        if self.stopped is StopReason.TIMEOUT:
            return "the command timed out"
        return self.stopped.describe if self.stopped else ""

    def _record(self, index: int, result: StepResult) -> None:
        if self.on_step is not None and self.depth == 1:
            self.on_step(index, result)

    # One step -----------------------------------------------------------------------------
    def _run_step(self, step: Step) -> tuple[StepResult, Control]:
        started = time.time()
        self._record(
            step.index,
            StepResult(
                name=step.name,
                action=step.action,
                status=wire.ST_IN_PROGRESS,
                status_details=wire.ST_IN_PROGRESS,
                response_code=None,
                started_at=started,
                ended_at=None,
            ),
        )
        outputs = self.outputs(step)
        try:
            result = self._execute(step, outputs)
        finally:
            if outputs.owned:
                outputs.stdout.close()
                outputs.stderr.close()
        record = StepResult(
            name=step.name,
            action=step.action,
            status=result.status,
            status_details=self._details(result),
            response_code=result.response_code,
            started_at=started,
            ended_at=time.time(),
            stdout_bytes=outputs.stdout.total,
            stderr_bytes=outputs.stderr.total,
        )
        if outputs.owned:
            record["stdout"] = outputs.stdout.head(wire.STDOUT_RECORD_CHARS)
            record["stderr"] = outputs.stderr.head(wire.STDERR_RECORD_CHARS)
        if result.compliance is not None and result.status == wire.ST_SUCCESS:
            record["compliance"] = result.compliance
        return record, result.control

    def _details(self, result: PluginResult) -> str:
        if result.status == wire.ST_TIMED_OUT:
            return wire.DETAIL_EXECUTION_TIMED_OUT
        if result.status == wire.ST_FAILED and self.stopped is StopReason.SHUTDOWN:
            return wire.DETAIL_INTERRUPTED
        return result.status

    def _execute(self, step: Step, outputs: StepOutputs) -> PluginResult:
        result = self._prepare_and_execute(step, outputs)
        if result.message:
            outputs.stderr.note(self._masked(result.message))
            result.message = ""
        if result.control is Control.REBOOT and self.settings.reboots is not Reboots.ALLOWED:
            code = result.response_code or 0
            outputs.stderr.note(self.settings.reboots.refusal(code))
            return PluginResult(wire.ST_FAILED, code)
        return result

    def _prepare_and_execute(self, step: Step, outputs: StepOutputs) -> PluginResult:
        verdict = evaluate_precondition(step, self.doc, self.settings.platform, self.values)
        if verdict.outcome == "skip":
            outputs.stdout.note(verdict.reason)
            return PluginResult(wire.ST_SKIPPED)
        if verdict.outcome == "fail":
            return PluginResult.failed(verdict.reason, None)
        action = ACTIONS.get(step.action)
        if action is None:
            known = ", ".join(sorted(ACTIONS))
            return PluginResult.failed(
                f"unknown action {step.action!r} in step {step.name}; this agent runs {known}",
                None,
            )
        if self.settings.platform not in action.platforms:
            outputs.stdout.note(
                f"Step execution skipped due to incompatible platform. Step name: {step.name}"
            )
            return PluginResult(wire.ST_SKIPPED)
        try:
            inputs, env = interpolate_step(step, self.doc, self.values, ssm_values=self.ssm_values)
            pasted = self._secure_refs_in_script(step)
        except DocumentError as exc:
            return PluginResult.failed(exc.message, None)
        if pasted:
            names = ", ".join(f"{{{{{ref}}}}}" for ref in pasted)
            return PluginResult.failed(
                f"a SecureString parameter cannot be pasted into script text: {names}; "
                "give it to a parameter with interpolationType ENV_VAR and read $SSM_<name>",
                None,
            )
        timeout = inputs.get("timeoutSeconds")
        seconds = timeout if isinstance(timeout, int) else step.timeout_seconds
        work_dir = self.work_dir / str(step.index)
        work_dir.mkdir(parents=True, exist_ok=True)
        ctx = StepContext(
            command_id=self.command_id,
            step_name=step.name,
            work_dir=work_dir,
            stdout=outputs.stdout,
            stderr=outputs.stderr,
            deadline=min(time.monotonic() + seconds, self.deadline),
            platform=self.settings.platform,
            kill_grace_seconds=self.settings.kill_grace_seconds,
            depth=self.depth,
            embedded=self.embedded,
            run_nested=self._nested,
            node_id=self.node_id,
            inventory=self.settings.inventory,
            patching=self.settings.patching,
        )
        plugin = action.factory()
        self._plugin = plugin
        try:
            if self.stopped is not None:
                plugin.request_stop(self.stopped)
            return plugin.execute(ctx, inputs, env)
        except Exception as exc:  # a plugin bug must fail its step, not lose the command
            log.exception("plugin failed", extra={"command_id": self.command_id})
            return PluginResult.failed(f"internal error in {step.action}: {exc!r}", None)
        finally:
            self._plugin = None

    def _secure_refs_in_script(self, step: Step) -> list[str]:
        """The SecureString references whose value would be written into the step's script
        (directly, or through a parameter, ENV_VAR ones included, named in the text)."""
        if not self._secrets:
            return []
        unresolved, _ = interpolate_step(step, self.doc, self.values)
        commands = unresolved.get("runCommand")
        texts = commands if isinstance(commands, list) else [commands]
        found: dict[str, None] = {}
        for text in texts:
            for match in _SECURE_REF_RE.finditer(text if isinstance(text, str) else ""):
                if match.group(1) in self.ssm_values:
                    found.setdefault(match.group(1), None)
        return list(found)

    def _masked(self, text: str) -> str:
        """``text`` with every SecureString value replaced by MASK."""
        for secret in self._secrets:
            text = text.replace(secret, MASK).replace(repr(secret)[1:-1], MASK)
        return text

    def _nested(self, doc: Document, params: dict[str, Any], ctx: StepContext) -> DocumentRun:
        from agent.documents import resolve_parameters

        values = resolve_parameters(doc, params)
        shared = StepOutputs(ctx.stdout, ctx.stderr, owned=False)
        settings = EngineSettings(
            self.settings.platform,
            self.settings.kill_grace_seconds,
            Reboots.NESTED,
            self.settings.inventory,
            self.settings.patching,
        )
        return DocumentRun(
            doc,
            values,
            command_id=self.command_id,
            settings=settings,
            outputs=lambda _step: shared,
            work_dir=ctx.work_dir / "nested",
            deadline=ctx.deadline,
            depth=self.depth + 1,
            embedded=self.embedded,
            ssm_values=self.ssm_values,
            node_id=self.node_id,
        )

    def _skipped(self, step: Step, why: str) -> StepResult:
        outputs = self.outputs(step)
        outputs.stdout.note(why)
        if outputs.owned:
            outputs.stdout.close()
            outputs.stderr.close()
        now = time.time()
        result = StepResult(
            name=step.name,
            action=step.action,
            status=wire.ST_SKIPPED,
            status_details=wire.ST_SKIPPED,
            response_code=None,
            started_at=None,
            ended_at=now,
            stdout=why + "\n" if outputs.owned else "",
            stderr="",
            stdout_bytes=outputs.stdout.total if outputs.owned else 0,
            stderr_bytes=0,
        )
        self._record(step.index, result)
        return result

    # The verdict --------------------------------------------------------------------------
    def _outcome(self, results: list[StepResult], reboot_step: int | None = None) -> Outcome:
        response_code = invocation_response_code(results)
        statuses = {r.get("status") for r in results}
        if reboot_step is not None:
            status, details = wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS
        elif self.stopped is StopReason.CANCEL:
            status, details = wire.ST_CANCELLED, wire.ST_CANCELLED
        elif self.stopped is StopReason.TIMEOUT or wire.ST_TIMED_OUT in statuses:
            status, details = wire.ST_TIMED_OUT, wire.DETAIL_EXECUTION_TIMED_OUT
        elif self.stopped is StopReason.SHUTDOWN:
            status, details = wire.ST_FAILED, wire.DETAIL_INTERRUPTED
        elif statuses & {wire.ST_FAILED, wire.ST_CANCELLED}:
            status, details = wire.ST_FAILED, wire.ST_FAILED
        else:
            status, details = wire.ST_SUCCESS, wire.ST_SUCCESS
        return Outcome(
            status=status,
            response_code=response_code,
            details=details,
            steps=results,
            reboot_step=reboot_step,
        )
