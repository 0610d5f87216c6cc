"""aws:runPowerShellScript on Linux: pwsh is not installable here, so a fake ``pwsh`` on the
PATH replays output recorded from PowerShell 7.4 for the scripts these tests send; without any
``pwsh`` the step fails and says so."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent import wire
from tests.unit.test_execution_support import document, run_engine

# Recorded from `pwsh -NoProfile -NonInteractive -ExecutionPolicy Bypass -File _script.ps1`
# (PowerShell 7.4.1, Debian 12): what each script printed, and its exit code.
RECORDED = {
    'Write-Output "hello from pwsh"\n$PSVersionTable.PSEdition\nexit 0': (
        "hello from pwsh\nCore\n",
        "",
        0,
    ),
    'Write-Error "disk full"\nexit 3': ("", "Write-Error: disk full\n", 3),
    'Write-Output "stop here"\nexit 168': ("stop here\n", "", 168),
    # The reboot codes (for the tests of the reboot flow): nothing printed.
    "exit 194": ("", "", 194),
    "exit 1": ("", "", 1),
}

FAKE_PWSH = """#!{python}
# A stand-in for pwsh: checks how it was called, then replays a recorded run.
import json, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
expected = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
if args[:-1] != expected:
    sys.stderr.write("fake pwsh: unexpected arguments %r\\n" % (args,))
    sys.exit(64)
raw = open(args[-1], "rb").read()
if not raw.startswith(b"\\xef\\xbb\\xbf"):
    sys.stderr.write("fake pwsh: the script has no UTF-8 BOM\\n")
    sys.exit(65)
script = raw[3:].decode("utf-8").rstrip("\\n")
recorded = {recorded}
if script not in recorded:
    sys.stderr.write("fake pwsh: no recording for %r\\n" % script)
    sys.exit(66)
out, err, code = recorded[script]
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(code)
"""


def step(name: str, script: str) -> dict[str, object]:
    return {
        "action": "aws:runPowerShellScript",
        "name": name,
        "inputs": {"runCommand": script.split("\n")},
    }


@pytest.fixture
def fake_pwsh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "pwsh-calls.log"
    exe = bin_dir / "pwsh"
    exe.write_text(FAKE_PWSH.format(python=sys.executable, log=str(log), recorded=repr(RECORDED)))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_runs_scripts_with_pwsh_and_maps_exit_codes(tmp_path: Path, fake_pwsh: Path) -> None:
    scripts = list(RECORDED)
    content = document(
        step("hello", scripts[0]),
        step("fails", scripts[1]),
        step("stops", scripts[2]),
        step("skipped", scripts[0]),
    )
    outcome = run_engine(content, tmp_path / "run")
    hello, fails, stops, skipped = outcome.steps
    assert (hello["status"], hello["stdout"]) == (wire.ST_SUCCESS, "hello from pwsh\nCore\n")
    assert (fails["status"], fails["response_code"]) == (wire.ST_FAILED, 3)
    assert fails["stderr"].startswith("Write-Error: disk full\n")
    assert (stops["status"], stops["response_code"]) == (wire.ST_SUCCESS, 168)
    assert skipped["status"] == wire.ST_SKIPPED
    assert outcome.status == wire.ST_FAILED
    assert len(fake_pwsh.read_text().splitlines()) == 3  # the skipped step never ran


def test_without_pwsh_the_step_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    outcome = run_engine(document(step("ps", "Write-Output hi")), tmp_path / "run")
    only = outcome.steps[0]
    assert only["status"] == wire.ST_FAILED
    assert "pwsh not found" in only["stderr"]
    assert only["response_code"] is None
    assert outcome.status == wire.ST_FAILED


def test_194_asks_for_a_reboot_on_linux_only(tmp_path: Path, fake_pwsh: Path) -> None:
    from agent.execution.engine import Reboots

    linux = run_engine(
        document(step("reboot", "exit 194"), step("other", "exit 1")),
        tmp_path / "linux",
        reboots=Reboots.DISABLED,
    )
    asks, other = linux.steps
    assert asks["status"] == wire.ST_FAILED
    assert "exited with 194 to ask for a reboot" in asks["stderr"]
    assert "reboots are disabled" in asks["stderr"]
    assert other["stderr"] == "failed to run commands: exit status 1\n"
    # On Windows the reboot code is 3010 (it cannot come through a POSIX exit status, which
    # is 8 bits: 3010 arrives as 194, the reason Linux uses 194): there 194 is a failure.
    windows = run_engine(
        document(step("reboot", "exit 194")),
        tmp_path / "windows",
        platform="Windows",
        reboots=Reboots.DISABLED,
    )
    assert windows.steps[0]["stderr"] == "failed to run commands: exit status 194\n"
