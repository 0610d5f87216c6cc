"""``corral-agent run-document``: a real agent process runs a document file, no server."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Proc, run, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    """Scripts run in sessions of their own, in step directories under tmp_path: whatever a
    test leaves running there is killed."""
    yield
    kill_under(tmp_path)


AGENT = str(BIN / "corral-agent")

DOC = {
    "schemaVersion": "2.2",
    "description": "Say hello, then report the disk.",
    "parameters": {
        "who": {"type": "String", "default": "world", "interpolationType": "ENV_VAR"},
        "code": {"type": "Integer", "default": 0},
    },
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": "hello",
            "inputs": {"runCommand": ['printf "hello %s\\n" "$SSM_who"', "echo warn >&2"]},
        },
        {
            "action": "aws:runShellScript",
            "name": "exit",
            "inputs": {"runCommand": ["exit {{ code }}"]},
        },
    ],
}

YAML_DOC = """\
schemaVersion: "2.2"
description: YAML works too
mainSteps:
  - action: aws:runShellScript
    name: yaml
    inputs:
      runCommand:
        - echo from yaml
"""


def write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_runs_a_document_and_prints_each_step(tmp_path: Path) -> None:
    doc = write(tmp_path, "hello.json", DOC)
    result = run(AGENT, "run-document", str(doc), "--param", "who=Ada")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[1] hello  aws:runShellScript  Success  exit 0",
        "--- stdout",
        "hello Ada",
        "--- stderr",
        "warn",
        "[2] exit  aws:runShellScript  Success  exit 0",
        "Status: Success, response code 0",
    ]


def test_json_output_and_a_failing_document(tmp_path: Path) -> None:
    doc = write(tmp_path, "hello.json", DOC)
    result = run(AGENT, "run-document", str(doc), "--param", "code=169", "--output", "json")
    assert result.returncode == 1
    shown = json.loads(result.stdout)
    assert (shown["status"], shown["response_code"]) == ("Failed", 169)
    assert [s["status"] for s in shown["steps"]] == ["Success", "Failed"]
    assert shown["steps"][0]["stdout"] == "hello world\n"


def test_yaml_documents(tmp_path: Path) -> None:
    result = run(AGENT, "run-document", str(write(tmp_path, "d.yaml", YAML_DOC)))
    assert result.returncode == 0, result.stderr
    assert "from yaml" in result.stdout


def test_parameters_are_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}`; touch {marker}"
    doc = write(tmp_path, "hello.json", DOC)
    result = run(AGENT, "run-document", str(doc), "--param", f"who={value}", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"][0]["stdout"] == f"hello {value}\n"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{doc}", "--param", "nope=1"], "error: parameters.nope: unknown parameter"),
        (["{doc}", "--param", "code=abc"], "error: parameters.code:"),
        (["{bad}"], "error: mainSteps"),
        (["{missing}"], "error: cannot read"),
    ],
)
def test_bad_documents_and_parameters_are_one_line_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    paths = {
        "doc": write(tmp_path, "hello.json", DOC),
        "bad": write(tmp_path, "bad.json", {"schemaVersion": "2.2", "mainSteps": "x"}),
        "missing": tmp_path / "missing.json",
    }
    result = run(AGENT, "run-document", *[a.format(**paths) for a in args])
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(AGENT, "run-document").returncode == 2
    doc = write(tmp_path, "hello.json", DOC)
    assert run(AGENT, "run-document", str(doc), "--output", "xml").returncode == 2
    assert run(AGENT, "run-document", str(doc), "--timeout", "0").returncode == 2


def test_ctrl_c_cancels_the_running_step(tmp_path: Path) -> None:
    running, pids = tmp_path / "running", tmp_path / "pids"
    doc = write(
        tmp_path,
        "slow.json",
        {
            "schemaVersion": "2.2",
            "description": "slow",
            "mainSteps": [
                {
                    "action": "aws:runShellScript",
                    "name": "slow",
                    "inputs": {
                        "runCommand": [
                            f"sleep 300 & echo $! > {pids}",
                            f"touch {running}",
                            "wait",
                        ]
                    },
                }
            ],
        },
    )
    proc = Proc([AGENT, "run-document", str(doc)], tmp_path, "run-document")
    try:
        wait_for(running.exists, 30, "the script to start")
        proc.signal(signal.SIGINT)
        assert proc.wait(30) == 1
    finally:
        proc.kill9()
    assert "[1] slow  aws:runShellScript  Cancelled" in proc.stdout
    assert "Status: Cancelled" in proc.stdout
    sleeper = int(pids.read_text())
    wait_for(lambda: not Path(f"/proc/{sleeper}").exists() or _zombie(sleeper), 10, "sleep killed")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
