"""aws:runShellScript with real child processes: exit codes, process-group kills on timeout and
cancel, output caps, bounded memory, and parameters that must stay data."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent import wire
from agent.plugins import StepContext, StopReason
from agent.plugins.output import CappedOutput
from agent.plugins.run_shell_script import RunShellScript
from tests.unit.test_execution_support import (
    document,
    group_members,
    live,
    read_pids,
    run_engine,
    shell,
    wait_for,
)

MIB = 1024 * 1024


def context(root: Path, seconds: float = 60.0, grace: float = 1.0) -> StepContext:
    root.mkdir(parents=True, exist_ok=True)
    return StepContext(
        command_id="c1",
        step_name="s",
        work_dir=root,
        stdout=CappedOutput(root / "out"),
        stderr=CappedOutput(root / "err", cap=wire.OUTPUT_BLOB_MAX_BYTES),
        deadline=time.monotonic() + seconds,
        platform="Linux",
        kill_grace_seconds=grace,
    )


@pytest.mark.parametrize(
    ("code", "status", "next_status"),
    [
        (0, wire.ST_SUCCESS, wire.ST_SUCCESS),
        (1, wire.ST_FAILED, wire.ST_SUCCESS),  # a failure does not stop the document
        (168, wire.ST_SUCCESS, wire.ST_SKIPPED),
        (169, wire.ST_FAILED, wire.ST_SKIPPED),
    ],
)
def test_exit_codes_as_ssm(tmp_path: Path, code: int, status: str, next_status: str) -> None:
    content = document(
        shell("first", "echo before", f"exit {code}"),
        shell("second", "echo second ran"),
    )
    outcome = run_engine(content, tmp_path)
    first, second = outcome.steps
    assert (first["status"], first["response_code"]) == (status, code)
    assert first["stdout"] == "before\n"
    assert second["status"] == next_status
    if next_status == wire.ST_SKIPPED:
        assert "second ran" not in second["stdout"]
        assert f"exited with {code}" in second["stdout"]
    overall = wire.ST_FAILED if status == wire.ST_FAILED else wire.ST_SUCCESS
    assert outcome.status == overall
    # The first failing step's code, else the last step's that ran.
    expected_code = code if status == wire.ST_FAILED or next_status == wire.ST_SKIPPED else 0
    assert outcome.response_code == expected_code


def test_failed_step_says_why(tmp_path: Path) -> None:
    outcome = run_engine(document(shell("s", "echo oops >&2", "exit 7")), tmp_path)
    step = outcome.steps[0]
    assert step["status"] == wire.ST_FAILED
    assert step["stderr"] == "oops\nfailed to run commands: exit status 7\n"


def _spawner(pids: Path) -> list[str]:
    """A script whose children (and a grandchild) all write their pids, then wait."""
    return [
        f"echo $$ >> {pids}",
        f"sleep 300 & echo $! >> {pids}",
        f"sh -c 'echo $$ >> {pids}; sleep 300' &",
        f"while [ $(wc -l < {pids}) -lt 3 ]; do sleep 0.01; done",
        "echo ready",
        "wait",
    ]


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    ctx = context(tmp_path / "w", seconds=3.0)
    plugin = RunShellScript()
    result = plugin.execute(ctx, {"runCommand": _spawner(pids)}, {})
    assert result.status == wire.ST_TIMED_OUT
    started = read_pids(pids)
    assert len(started) == 3
    pgid = started[0]
    assert not [p for p in started if live(p)]
    assert group_members(pgid) == []
    assert (tmp_path / "w" / "out").read_text() == "ready\n"


def test_timeout_sigkills_what_ignores_sigterm(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    ctx = context(tmp_path / "w", seconds=2.0, grace=0.5)
    script = [
        "trap '' TERM",  # inherited by the sleep: only SIGKILL ends them
        f"echo $$ >> {pids}",
        f"sleep 300 & echo $! >> {pids}",
        "wait",
        "wait",
    ]
    result = RunShellScript().execute(ctx, {"runCommand": script}, {})
    assert result.status == wire.ST_TIMED_OUT
    started = read_pids(pids)
    assert len(started) == 2
    assert not [p for p in started if live(p)]
    assert group_members(started[0]) == []


def test_cancel_stops_the_group_and_reports_cancelled(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    ctx = context(tmp_path / "w")
    plugin = RunShellScript()

    def cancel_when_ready() -> None:
        wait_for(lambda: len(read_pids(pids)) == 3, 20, "the script's children")
        plugin.request_stop(StopReason.CANCEL)

    thread = threading.Thread(target=cancel_when_ready)
    thread.start()
    try:
        result = plugin.execute(ctx, {"runCommand": _spawner(pids)}, {})
    finally:
        thread.join()
    assert result.status == wire.ST_CANCELLED
    assert not [p for p in read_pids(pids) if live(p)]
    assert group_members(read_pids(pids)[0]) == []


def test_output_is_capped_on_disk_and_in_the_record(tmp_path: Path) -> None:
    content = document(
        shell(
            "loud",
            "yes | head -c 100000000",  # 100 MB: far past the 16 MiB blob cap
            "yes e | head -c 3000000 >&2",
        )
    )
    outcome = run_engine(content, tmp_path)
    step = outcome.steps[0]
    assert step["status"] == wire.ST_SUCCESS
    assert step["stdout_bytes"] == 100_000_000
    assert step["stderr_bytes"] == 3_000_000
    assert (tmp_path / "output" / "0.stdout").stat().st_size == wire.OUTPUT_BLOB_MAX_BYTES
    assert (tmp_path / "output" / "0.stderr").stat().st_size == 3_000_000
    assert len(step["stdout"]) == wire.STDOUT_RECORD_CHARS
    assert step["stdout"].startswith("y\ny\n")
    assert len(step["stderr"]) == wire.STDERR_RECORD_CHARS


def test_memory_stays_bounded_however_much_is_printed(tmp_path: Path) -> None:
    """A worker pumping 1 GB through its pipes keeps a small, bounded RSS."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        f"""
import resource, sys, time
from pathlib import Path
from agent.plugins.output import CappedOutput
from agent.plugins.base import StepContext
from agent.plugins.run_shell_script import RunShellScript
root = Path({str(tmp_path)!r})
ctx = StepContext("c", "s", root, CappedOutput(root / "out"), CappedOutput(root / "err"),
                  time.monotonic() + 600, "Linux")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = RunShellScript().execute(ctx, {{"runCommand": ["head -c 1000000000 /dev/zero"]}}, {{}})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.status, ctx.stdout.total, before, after)
"""
    )
    done = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, timeout=300, check=True
    )
    status, total, before, after = done.stdout.split()
    assert status == wire.ST_SUCCESS
    assert int(total) == 1_000_000_000
    assert (tmp_path / "out").stat().st_size == wire.OUTPUT_BLOB_MAX_BYTES
    # ru_maxrss is in KiB: the pump added less than 8 MiB (it holds one 64 KiB chunk).
    assert int(after) - int(before) < 8 * 1024


@pytest.mark.parametrize(
    "value",
    [
        "; rm -rf / ; touch {marker}",
        "$(touch {marker})",
        "`touch {marker}`",
        "a\ntouch {marker}\n",
        "' \" $HOME && touch {marker} || touch {marker}",
    ],
)
def test_env_var_parameters_are_data_not_code(tmp_path: Path, value: str) -> None:
    marker = tmp_path / "injected"
    value = value.format(marker=marker)
    content = document(
        shell("echo", 'printf "%s" "$SSM_x"'),
        parameters={"x": {"type": "String", "interpolationType": "ENV_VAR"}},
    )
    outcome = run_engine(content, tmp_path / "run", {"x": value})
    assert outcome.status == wire.ST_SUCCESS
    assert outcome.steps[0]["stdout"] == value
    assert not marker.exists()


def test_working_directory(tmp_path: Path) -> None:
    there = tmp_path / "there"
    there.mkdir()
    content = document(
        shell("here", "pwd", workingDirectory=str(there)),
        shell("missing", "pwd", workingDirectory=str(tmp_path / "nope")),
    )
    outcome = run_engine(content, tmp_path / "run")
    assert outcome.steps[0]["stdout"] == f"{there}\n"
    assert outcome.steps[1]["status"] == wire.ST_FAILED
    assert "does not exist" in outcome.steps[1]["stderr"]


def test_a_background_process_does_not_hold_the_step(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    content = document(shell("bg", f"sleep 300 & echo $! > {pids}", "echo started"))
    try:
        outcome = run_engine(content, tmp_path / "run")
        assert outcome.status == wire.ST_SUCCESS
        assert outcome.steps[0]["stdout"] == "started\n"
        assert [p for p in read_pids(pids) if live(p)]  # left running, as SSM does
    finally:
        for pid in read_pids(pids):
            subprocess.run(["kill", "-9", str(pid)], check=False)


def test_script_sees_its_command_id_and_runs_in_its_step_dir(tmp_path: Path) -> None:
    outcome = run_engine(document(shell("env", 'echo "$CORRAL_COMMAND_ID"', "pwd")), tmp_path)
    assert outcome.steps[0]["stdout"] == f"test\n{tmp_path / 'work' / '0'}\n"
    assert json.loads(json.dumps(outcome.steps))  # the record is plain JSON
