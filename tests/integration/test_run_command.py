"""``corral run`` end to end: the operator CLI, a real server, several real agents (each in its
own state dir) and real scripts.  Each test checks what the scripts themselves recorded (files
they write), not only what the server says."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.harness import BIN, Agent, Server, run, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

Corral = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


@pytest.fixture
def corral(tmp_path: Path, server: Server) -> Corral:
    env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}

    def call(*args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    login = ("login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash)
    assert call(*login)[0] == 0
    return call


def agents(make_agent: Callable[..., Agent], server: Server, n: int, **tags: str) -> list[Agent]:
    activation = server.activation(registration_limit=n, tags=tags)
    started = []
    for i in range(n):
        agent = make_agent(f"n{i}")
        with (agent.state_dir / "agent.toml").open("a") as fh:
            fh.write("poll_wait_seconds = 5\nkill_grace_seconds = 1\n")
        assert agent.register(activation).returncode == 0
        agent.start()
        started.append(agent)
    for agent in started:
        wait_for(lambda a=agent: server.node(a.node_id)["status"] == "Online", 30, "Online")
    return started


def sent_id(out: str) -> str:
    command_id: str = json.loads(out)["command_id"]
    return command_id


def show(corral: Corral, command_id: str) -> dict[str, Any]:
    code, out, err = corral("commands", "show", command_id, "--output", "json")
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def done(corral: Corral, command_id: str) -> dict[str, Any] | None:
    result = show(corral, command_id)
    return result if result.get("completed_at") else None


def command_count(server: Server) -> int:
    with server.db() as db:
        count: int = db.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    return count


def test_exit_codes_steps_and_parameters_as_data(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    marks = tmp_path / "marks"
    marks.mkdir()
    doc = {
        "schemaVersion": "2.2",
        "description": "exit codes",
        "parameters": {
            "code": {"type": "String", "allowedPattern": "^[0-9]+$"},
            "msg": {"type": "String", "default": "hi", "interpolationType": "ENV_VAR"},
        },
        "mainSteps": [
            {
                "action": "aws:runShellScript",
                "name": "first",
                "inputs": {
                    "runCommand": [
                        f'printf "%s" "$SSM_msg" > {marks}/msg',
                        "echo out; echo err >&2",
                        "exit {{ code }}",
                    ]
                },
            },
            {
                "action": "aws:runShellScript",
                "name": "second",
                "inputs": {"runCommand": [f"touch {marks}/second-ran"]},
            },
        ],
    }
    path = tmp_path / "codes.json"
    path.write_text(json.dumps(doc))
    assert corral("documents", "create", "--name", "exit-codes", "--file", str(path))[0] == 0

    def run_with(code: int, msg: str = "hi") -> dict[str, Any]:
        (marks / "second-ran").unlink(missing_ok=True)
        rc, out, err = corral(
            "run", "--node", agent.node_id, "--document", "exit-codes",
            "--param", f"code={code}", "--param", f"msg={msg}", "--wait", "--output", "json",
        )  # fmt: skip
        result: dict[str, Any] = json.loads(out)
        assert rc == (0 if result["status"] == "Success" else 1), err
        inv: dict[str, Any] = result["invocations"][0]
        return inv

    inv = run_with(0)
    assert (inv["status"], inv["response_code"]) == ("Success", 0)
    assert [s["status"] for s in inv["steps"]] == ["Success", "Success"]
    assert (inv["steps"][0]["stdout"], inv["steps"][0]["stderr"]) == ("out\n", "err\n")
    assert (marks / "second-ran").exists()

    inv = run_with(1)
    assert (inv["status"], inv["response_code"]) == ("Failed", 1)
    assert inv["steps"][0]["status"] == "Failed"

    inv = run_with(168)  # success, and the remaining steps are skipped
    assert inv["status"] == "Success"
    assert [s["status"] for s in inv["steps"]] == ["Success", "Skipped"]
    assert not (marks / "second-ran").exists()

    inv = run_with(169)  # failure, and the remaining steps are skipped
    assert inv["status"] == "Failed"
    assert [s["status"] for s in inv["steps"]] == ["Failed", "Skipped"]
    assert not (marks / "second-ran").exists()

    # An ENV_VAR parameter is data: no injection runs, whatever the value holds.
    evil = f"; touch {marks}/p1 $(touch {marks}/p2) `touch {marks}/p3`\ntouch {marks}/p4 |&"
    inv = run_with(0, evil)
    assert inv["status"] == "Success"
    assert (marks / "msg").read_text() == evil
    assert sorted(p.name for p in marks.iterdir()) == ["msg", "second-ran"]

    # A value failing allowedPattern, an unknown and a missing parameter: nothing is sent.
    before = command_count(server)
    for params in (["code=1; reboot"], ["code=1", "nope=1"], []):
        args = [a for p in params for a in ("--param", p)]
        rc, _, err = corral("run", "--node", agent.node_id, "--document", "exit-codes", *args)
        assert rc != 0 and err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert command_count(server) == before

    # The full output of a step, and its stderr, from the blob store.
    command_id = json.loads(
        corral("commands", "list", "--node", agent.node_id, "--output", "json")[1]
    )[0]["command_id"]
    # Without --step: the last step that ran (here "second", which printed nothing).
    assert corral("commands", "output", command_id, "--node", agent.node_id)[1] == ""
    code, out, _ = corral(
        "commands", "output", command_id, "--node", agent.node_id, "--step", "first"
    )
    assert (code, out) == (0, "out\n")
    code, out, _ = corral(
        "commands", "output", command_id, "--node", agent.node_id, "--step", "first", "--stderr"
    )
    assert (code, out) == (0, "err\n")
    code, out, _ = corral("commands", "cancel", command_id, "--output", "json")
    assert code == 0 and "already" in json.loads(out)["message"]


def test_timeout_kills_the_whole_process_group(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pids}; (sleep 300; true) & echo $! >> {pids}; sleep 300"
    code, out, _ = corral(
        "run", "--node", agent.node_id, "--timeout", "5", "--wait", "--output", "json",
        "--", script,
    )  # fmt: skip
    result = json.loads(out)
    assert code == 1
    inv = result["invocations"][0]
    assert (inv["status"], inv["status_details"]) == ("TimedOut", "ExecutionTimedOut")
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_cancel_stops_running_processes(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    pid_file = tmp_path / "pid"
    code, out, _ = corral(
        "run", "--node", agent.node_id, "--output", "json",
        "--", f"echo $$ > {pid_file}; sleep 300",
    )  # fmt: skip
    command_id = sent_id(out)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 30, "script start")
    pid = int(pid_file.read_text())
    code, out, _ = corral("commands", "cancel", command_id, "--output", "json")
    assert code == 0
    result = wait_for(lambda: done(corral, command_id), 30, "cancel to land")
    assert result["invocations"][0]["status"] == "Cancelled"
    wait_for(lambda: not psutil.pid_exists(pid), 10, "the script to be gone")


def test_max_concurrency_is_observed_by_the_scripts(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    fleet = agents(make_agent, server, 4, team="web")
    log = tmp_path / "times"
    script = f'echo "start $(date +%s.%N)" >> {log}; sleep 1; echo "end $(date +%s.%N)" >> {log}'
    code, out, err = corral(
        "run", "--targets", "tag:team=web", "--max-concurrency", "2", "--wait",
        "--output", "json", "--", script,
    )  # fmt: skip
    assert code == 0, err
    assert [i["status"] for i in json.loads(out)["invocations"]] == ["Success"] * len(fleet)
    events = sorted(
        (float(t), 1 if kind == "start" else -1)
        for kind, t in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert len(events) == 8 and peak <= 2


def test_max_errors_stops_new_starts(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    agents(make_agent, server, 3, team="db")
    ran = tmp_path / "ran"
    code, out, _ = corral(
        "run", "--targets", "tag:team=db", "--max-concurrency", "1", "--max-errors", "0",
        "--wait", "--output", "json", "--", f"echo x >> {ran}; exit 3",
    )  # fmt: skip
    assert code == 1
    result = json.loads(out)
    assert sorted((i["status"], i["status_details"]) for i in result["invocations"]) == [
        ("Cancelled", "Terminated"),
        ("Cancelled", "Terminated"),
        ("Failed", "Failed"),
    ]
    assert ran.read_text() == "x\n"  # exactly one node ran it
    assert result["status"] == "Failed" and result["error_count"] == 1


def test_server_restart_mid_fan_out_loses_no_result(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    fleet = agents(make_agent, server, 3, team="app")
    go = tmp_path / "go"
    code, out, _ = corral(
        "run", "--targets", "tag:team=app", "--output", "json",
        "--", f"while [ ! -e {go} ]; do sleep 0.05; done; echo finished",
    )  # fmt: skip
    assert code == 0
    command_id = sent_id(out)
    wait_for(
        lambda: all(i["status"] == "InProgress" for i in show(corral, command_id)["invocations"]),
        30,
        "every node running",
    )
    server.stop()
    go.touch()  # the scripts finish while the server is down; results wait in the outboxes
    server.start()
    result = wait_for(lambda: done(corral, command_id), 60, "every result")
    assert [i["status"] for i in result["invocations"]] == ["Success"] * len(fleet)
    assert result["completed_count"] == 3


def test_a_gigabyte_of_output_is_capped_and_the_agent_stays_small(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    assert agent.proc is not None
    agent_proc = psutil.Process(agent.proc.popen.pid)
    peak = {"rss": 0}
    stop = threading.Event()

    def sample() -> None:
        # The agent, its fork server and the worker: every process of ours except the script's
        # own `head`/`tr`, which a user's command would be too.
        while not stop.is_set():
            try:
                procs = [agent_proc, *agent_proc.children(recursive=True)]
                rss = sum(
                    p.memory_info().rss
                    for p in procs
                    if p.name() not in ("head", "tr", "sh", "bash")
                )
                peak["rss"] = max(peak["rss"], rss)
            except psutil.Error:
                pass
            stop.wait(0.05)  # the sampling interval

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        code, out, err = corral(
            "run", "--node", agent.node_id, "--wait", "--output", "json",
            "--", "head -c 1073741824 /dev/zero | tr '\\0' a",
        )  # fmt: skip
    finally:
        stop.set()
        sampler.join()
    assert code == 0, err
    result = json.loads(out)
    step = result["invocations"][0]["steps"][0]
    assert step["stdout"] == "a" * 24000 and step["stdout_bytes"] == 1 << 30
    blob = run(
        BIN / "corral", "commands", "output", result["command_id"], "--node", agent.node_id,
        env={"CORRAL_CONFIG": str(tmp_path / "cli.toml")},
    )  # fmt: skip
    assert blob.returncode == 0 and blob.stdout == "a" * (16 << 20)
    assert peak["rss"] < 200 << 20, f"agent processes peaked at {peak['rss'] >> 20} MiB"


def test_bad_runs_are_refused_and_nothing_is_stored(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    big = tmp_path / "big.json"
    big.write_text(
        json.dumps(
            {
                "schemaVersion": "2.2",
                "description": "x" * (65 * 1024),
                "mainSteps": [
                    {
                        "action": "aws:runShellScript",
                        "name": "a",
                        "inputs": {"runCommand": ["true"]},
                    }
                ],
            }
        )
    )
    code, _, err = corral("documents", "create", "--name", "too-big", "--file", str(big))
    assert code != 0 and "64" in err
    before = command_count(server)
    cases: list[tuple[list[str], str]] = [
        (["--targets", "tag:team=nobody", "--", "true"], "match no registered node"),
        (["--node", agent.node_id, "--max-concurrency", "0", "--", "true"], "max-concurrency"),
        (["--node", agent.node_id, "--max-concurrency", "101%", "--", "true"], "max-concurrency"),
        (["--node", agent.node_id, "--max-errors", "-1", "--", "true"], "max-errors"),
        (["--node", agent.node_id, "--timeout", "4", "--", "true"], "timeout"),
        (["--node", agent.node_id, "--timeout", "172801", "--", "true"], "timeout"),
        (["--node", agent.node_id, "--document", "no-such-doc"], "not found"),
        (["--node", "mi-00000000000000000", "--", "true"], "mi-00000000000000000"),
    ]
    for args, needle in cases:
        code, _, err = corral("run", *args)
        assert code != 0, args
        assert needle in err.lower() and len(err.strip().splitlines()) == 1, (args, err)
    assert command_count(server) == before


def test_watch_prints_status_changes_until_the_end(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent], corral: Corral
) -> None:
    (agent,) = agents(make_agent, server, 1)
    go = tmp_path / "go"
    _, out, _ = corral(
        "run", "--node", agent.node_id, "--output", "json",
        "--", f"while [ ! -e {go} ]; do sleep 0.05; done",
    )  # fmt: skip
    command_id = sent_id(out)
    env = {**os.environ, "CORRAL_CONFIG": str(tmp_path / "cli.toml")}
    watcher = subprocess.Popen(
        [str(BIN / "corral"), "commands", "watch", command_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(
            lambda: show(corral, command_id)["invocations"][0]["status"] == "InProgress",
            30,
            "InProgress",
        )
        go.touch()
        out, err = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    assert "Success" in out.splitlines()[-1]
