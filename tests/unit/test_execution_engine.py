"""The engine's flow rules with real scripts: onFailure / onSuccess / finallyStep, unknown and
foreign actions, preconditions, timeouts, cancel, reboot codes where they cannot reboot, and
aws:runDocument nesting."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from agent import wire
from agent.execution.engine import DocumentRun, Reboots
from agent.plugins import StopReason
from tests.unit.test_execution_support import document, run_engine, shell, wait_for


def statuses(steps: list[Any]) -> list[str]:
    return [s["status"] for s in steps]


def test_a_failed_step_does_not_stop_the_rest_by_default(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("a", "exit 2"), shell("b", "echo b"), shell("c", "exit 0")), tmp_path
    )
    assert statuses(outcome.steps) == [wire.ST_FAILED, wire.ST_SUCCESS, wire.ST_SUCCESS]
    assert (outcome.status, outcome.details) == (wire.ST_FAILED, wire.ST_FAILED)
    assert outcome.response_code == 2  # the failing step's, not the later 0


def test_on_failure_exit_skips_the_rest_but_not_the_finally_step(tmp_path: Path) -> None:
    outcome = run_engine(
        document(
            shell("a", "exit 2", onFailure="exit"),
            shell("b", "echo b"),
            shell("cleanup", "echo cleaned", finallyStep=True),
        ),
        tmp_path,
    )
    assert statuses(outcome.steps) == [wire.ST_FAILED, wire.ST_SKIPPED, wire.ST_SUCCESS]
    assert "onFailure: exit" in outcome.steps[1]["stdout"]
    assert outcome.steps[2]["stdout"] == "cleaned\n"
    assert outcome.status == wire.ST_FAILED


def test_success_and_exit_counts_the_failure_as_success(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("a", "exit 2", onFailure="successAndExit"), shell("b", "echo b")),
        tmp_path,
    )
    assert statuses(outcome.steps) == [wire.ST_SUCCESS, wire.ST_SKIPPED]
    assert outcome.steps[0]["response_code"] == 2
    assert outcome.status == wire.ST_SUCCESS


def test_on_success_exit(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("a", "true", onSuccess="exit"), shell("b", "echo b")), tmp_path
    )
    assert statuses(outcome.steps) == [wire.ST_SUCCESS, wire.ST_SKIPPED]
    assert outcome.status == wire.ST_SUCCESS


def test_169_stops_and_fails_and_the_finally_step_still_runs(tmp_path: Path) -> None:
    outcome = run_engine(
        document(
            shell("a", "exit 169"),
            shell("b", "echo b"),
            shell("f", "echo finally", finallyStep=True),
        ),
        tmp_path,
    )
    assert statuses(outcome.steps) == [wire.ST_FAILED, wire.ST_SKIPPED, wire.ST_SUCCESS]
    assert outcome.status == wire.ST_FAILED
    assert outcome.response_code == 169  # the failing step's, not the finally step's


def test_unknown_action_fails_its_step_with_a_clear_message(tmp_path: Path) -> None:
    content = document(
        {"action": "aws:configurePackage", "name": "pkg", "inputs": {"name": "x"}},
        shell("after", "echo after"),
    )
    outcome = run_engine(content, tmp_path)
    pkg, after = outcome.steps
    assert pkg["status"] == wire.ST_FAILED
    assert "unknown action 'aws:configurePackage'" in pkg["stderr"]
    assert "aws:runShellScript" in pkg["stderr"]
    assert after["status"] == wire.ST_SUCCESS
    assert outcome.status == wire.ST_FAILED


def test_an_action_foreign_to_this_platform_is_skipped(tmp_path: Path) -> None:
    outcome = run_engine(document(shell("sh", "echo hi")), tmp_path, platform="Windows")
    assert statuses(outcome.steps) == [wire.ST_SKIPPED]
    assert "incompatible platform" in outcome.steps[0]["stdout"]
    assert outcome.status == wire.ST_SUCCESS
    assert outcome.response_code is None


def test_precondition_skips_a_step(tmp_path: Path) -> None:
    windows_only = shell("win", "echo never")
    windows_only["precondition"] = {"StringEquals": ["platformType", "Windows"]}
    outcome = run_engine(document(windows_only, shell("linux", "echo yes")), tmp_path)
    assert statuses(outcome.steps) == [wire.ST_SKIPPED, wire.ST_SUCCESS]
    assert "Step execution skipped" in outcome.steps[0]["stdout"]


def test_execution_timeout_ends_the_run_timed_out(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("slow", "echo started", "sleep 300"), shell("next", "echo next")),
        tmp_path,
        seconds=3.0,
    )
    slow, following = outcome.steps
    assert (slow["status"], slow["status_details"]) == (
        wire.ST_TIMED_OUT,
        wire.DETAIL_EXECUTION_TIMED_OUT,
    )
    assert slow["stdout"] == "started\n"
    assert following["status"] == wire.ST_SKIPPED
    assert "timed out" in following["stdout"]
    assert (outcome.status, outcome.details) == (
        wire.ST_TIMED_OUT,
        wire.DETAIL_EXECUTION_TIMED_OUT,
    )


def test_cancel_reports_cancelled_and_skips_the_rest(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    runs: list[DocumentRun] = []

    def cancel_when_running() -> None:
        wait_for(marker.exists, 20, "the script to start")
        runs[0].request_stop(StopReason.CANCEL)

    thread = threading.Thread(target=cancel_when_running)
    thread.start()
    try:
        outcome = run_engine(
            document(shell("wait", f"touch {marker}", "sleep 300"), shell("next", "echo next")),
            tmp_path / "run",
            on_run=runs.append,
        )
    finally:
        thread.join()
    assert statuses(outcome.steps) == [wire.ST_CANCELLED, wire.ST_SKIPPED]
    assert (outcome.status, outcome.details) == (wire.ST_CANCELLED, wire.ST_CANCELLED)


def test_shutdown_stop_is_interrupted(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("a", "echo a")),
        tmp_path,
        on_run=lambda run: run.request_stop(StopReason.SHUTDOWN),
    )
    assert statuses(outcome.steps) == [wire.ST_SKIPPED]
    assert (outcome.status, outcome.details) == (wire.ST_FAILED, wire.DETAIL_INTERRUPTED)


def test_reboot_code_ends_the_run_where_it_may_reboot(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("a", "echo a"), shell("reboot", "exit 194"), shell("c", "echo c")),
        tmp_path,
    )
    assert outcome.reboot_step == 1
    assert outcome.status == wire.ST_IN_PROGRESS
    assert statuses(outcome.steps) == [wire.ST_SUCCESS, wire.ST_IN_PROGRESS]


def test_reboot_code_fails_where_it_may_not(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("reboot", "exit 194"), shell("c", "echo c")),
        tmp_path,
        reboots=Reboots.LOCAL,
    )
    assert outcome.reboot_step is None
    assert statuses(outcome.steps) == [wire.ST_FAILED, wire.ST_SUCCESS]
    assert "run-document does not reboot" in outcome.steps[0]["stderr"]


# aws:runDocument --------------------------------------------------------------------------
def run_doc(
    path: str, kind: str = "LocalPath", name: str = "nested", **inputs: Any
) -> dict[str, Any]:
    return {
        "action": "aws:runDocument",
        "name": name,
        "inputs": {"documentType": kind, "documentPath": path, **inputs},
    }


def test_run_document_from_a_local_file_shares_the_step_output(tmp_path: Path) -> None:
    inner = tmp_path / "inner.json"
    inner.write_text(
        json.dumps(
            document(
                shell("one", 'echo "inner $SSM_who"'),
                shell("two", "echo second >&2", "exit 5"),
                parameters={"who": {"type": "String", "interpolationType": "ENV_VAR"}},
            )
        )
    )
    outcome = run_engine(
        document(run_doc(str(inner), documentParameters={"who": "there"})), tmp_path / "run"
    )
    step = outcome.steps[0]
    assert step["status"] == wire.ST_FAILED
    assert step["response_code"] == 5
    assert step["stdout"] == "inner there\n"
    assert step["stderr"].startswith("second\nfailed to run commands: exit status 5\n")
    assert f"the document {inner} failed" in step["stderr"]


def test_run_document_embedded_by_the_server(tmp_path: Path) -> None:
    """The server embeds each document under the path the step names (NAME[:VERSION]);
    only that runs: another version of the same document was not authorized or resolved."""
    embedded = {"Org-Hello:3": document(shell("hi", "echo embedded"))}
    outcome = run_engine(
        document(
            run_doc("Org-Hello:3", "SSMDocument"), run_doc("Org-Hello:4", "SSMDocument", name="v4")
        ),
        tmp_path,
        embedded=embedded,
    )
    assert outcome.steps[0]["status"] == wire.ST_SUCCESS
    assert outcome.steps[0]["stdout"] == "embedded\n"
    assert outcome.steps[1]["status"] == wire.ST_FAILED
    assert "document Org-Hello:4 was not sent with the command" in outcome.steps[1]["stderr"]


def test_run_document_that_was_not_sent_fails(tmp_path: Path) -> None:
    outcome = run_engine(document(run_doc("Missing", "SSMDocument")), tmp_path)
    assert outcome.steps[0]["status"] == wire.ST_FAILED
    assert "document Missing was not sent with the command" in outcome.steps[0]["stderr"]


def test_run_document_bad_inputs_fail_the_step(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schemaVersion": "2.2", "mainSteps": "nope"}')
    outcome = run_engine(
        document(
            run_doc(str(tmp_path / "absent.json"), name="absent"),
            run_doc(str(bad), name="invalid"),
            run_doc("x", "S3Document", name="kind"),
        ),
        tmp_path / "run",
    )
    absent, invalid, kind = outcome.steps
    assert "cannot read" in absent["stderr"]
    assert invalid["status"] == wire.ST_FAILED and "mainSteps" in invalid["stderr"]
    assert "documentType S3Document is not supported" in kind["stderr"]


def test_run_document_nests_at_most_three_deep(tmp_path: Path) -> None:
    levels = {
        "L2": document(run_doc("L3", "SSMDocument")),
        "L3": document(run_doc("L4", "SSMDocument")),
        "L4": document(shell("deep", "echo too deep")),
    }
    outcome = run_engine(document(run_doc("L2", "SSMDocument")), tmp_path, embedded=levels)
    step = outcome.steps[0]
    assert step["status"] == wire.ST_FAILED
    assert "nest at most 3 levels" in step["stderr"]
    assert "too deep" not in step["stdout"]


def test_a_script_inside_run_document_cannot_reboot(tmp_path: Path) -> None:
    embedded = {"Rebooter": document(shell("r", "exit 194"))}
    outcome = run_engine(
        document(run_doc("Rebooter", "SSMDocument"), shell("after", "echo after")),
        tmp_path,
        embedded=embedded,
    )
    assert outcome.reboot_step is None
    nested, after = outcome.steps
    assert nested["status"] == wire.ST_FAILED
    assert "inside aws:runDocument cannot reboot" in nested["stderr"]
    assert after["status"] == wire.ST_SUCCESS
