"""What a script sees of where it runs: the node id under SSM Agent's name and Corral's, the
command id, the platform as SSM Agent sets it; no made-up AWS region.  The shell and the
PowerShell actions build their environment in one place (agent/plugins/_script.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from agent import wire
from agent.facts import platform_name_version
from tests.unit.test_execution_support import document, run_engine, shell

NODE = "mi-0123456789abcdef0"
NAMES = (
    "AWS_SSM_INSTANCE_ID",
    "CORRAL_NODE_ID",
    "CORRAL_COMMAND_ID",
    "AWS_SSM_PLATFORM_NAME",
    "AWS_SSM_PLATFORM_VERSION",
    "AWS_SSM_REGION_NAME",
)
ECHO = " ".join(f'"{name}=${{{name}-unset}}"' for name in NAMES)


def seen(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_a_shell_script_sees_the_node_and_command_ids(tmp_path: Path) -> None:
    outcome = run_engine(
        document(shell("ids", f"printf '%s\\n' {ECHO}")), tmp_path / "run", node_id=NODE
    )
    step = outcome.steps[0]
    assert step["status"] == wire.ST_SUCCESS, step
    env = seen(step["stdout"])
    name, version = platform_name_version()
    assert env == {
        "AWS_SSM_INSTANCE_ID": NODE,
        "CORRAL_NODE_ID": NODE,
        "CORRAL_COMMAND_ID": "test",
        "AWS_SSM_PLATFORM_NAME": name,
        "AWS_SSM_PLATFORM_VERSION": version,
        "AWS_SSM_REGION_NAME": "unset",  # a Corral server has no AWS region
    }


def test_the_ids_win_over_what_the_worker_inherited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SSM_INSTANCE_ID", "i-stale")
    monkeypatch.setenv("CORRAL_COMMAND_ID", "stale")
    outcome = run_engine(
        document(shell("ids", f"printf '%s\\n' {ECHO}")), tmp_path / "run", node_id=NODE
    )
    env = seen(outcome.steps[0]["stdout"])
    assert (env["AWS_SSM_INSTANCE_ID"], env["CORRAL_COMMAND_ID"]) == (NODE, "test")


def test_a_nested_document_sees_them_too(tmp_path: Path) -> None:
    inner = document(shell("inner", 'echo "node=$CORRAL_NODE_ID"'))
    outer = document(
        {
            "action": "aws:runDocument",
            "name": "nested",
            "inputs": {"documentType": "SSMDocument", "documentPath": "inner"},
        }
    )
    outcome = run_engine(outer, tmp_path / "run", node_id=NODE, embedded={"inner": inner})
    assert outcome.steps[0]["stdout"] == f"node={NODE}\n"


FAKE_PWSH = """#!{python}
import json, os, sys
names = {names!r}
print(json.dumps({{n: os.environ.get(n) for n in names}}))
"""


def test_a_powershell_script_gets_the_same_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pwsh here: a stand-in that prints the environment it was started with (the
    environment is what is under test, not PowerShell)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "pwsh"
    exe.write_text(FAKE_PWSH.format(python=sys.executable, names=NAMES))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    step = {
        "action": "aws:runPowerShellScript",
        "name": "ids",
        "inputs": {"runCommand": ["Get-ChildItem env:"]},
    }
    outcome = run_engine(document(step), tmp_path / "run", node_id=NODE)
    env = json.loads(outcome.steps[0]["stdout"])
    assert env["AWS_SSM_INSTANCE_ID"] == env["CORRAL_NODE_ID"] == NODE
    assert env["CORRAL_COMMAND_ID"] == "test"
    assert env["AWS_SSM_REGION_NAME"] is None


def test_without_a_node_run_document_sets_no_node_id(tmp_path: Path) -> None:
    outcome = run_engine(document(shell("ids", f"printf '%s\\n' {ECHO}")), tmp_path / "run")
    env = seen(outcome.steps[0]["stdout"])
    assert env["AWS_SSM_INSTANCE_ID"] == env["CORRAL_NODE_ID"] == "unset"
    assert env["CORRAL_COMMAND_ID"] == "test"
