"""Shell completion: `corral completion SHELL` and `corral --install-completion`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from control_plane.cli.main import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("CORRAL_CONFIG", str(home / ".config" / "corral" / "config.toml"))
    return home


def install(shell: str) -> Result:
    return CliRunner().invoke(cli, ["--install-completion"], env={"SHELL": shell})


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _corral_completion corral"),
        ("zsh", "compdef _corral_completion corral"),
        ("fish", "complete --no-files --command corral"),
    ],
)
def test_completion_prints_click_script(shell: str, marker: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert marker in result.stdout
    assert "_CORRAL_COMPLETE" in result.stdout


def test_completion_json_wraps_the_script() -> None:
    result = CliRunner().invoke(cli, ["completion", "fish", "-o", "json"])
    data = json.loads(result.stdout)
    assert data["shell"] == "fish"
    assert "_CORRAL_COMPLETE" in data["script"]


def test_completion_rejects_unknown_shells() -> None:
    assert CliRunner().invoke(cli, ["completion", "tcsh"]).exit_code == 2


@pytest.mark.parametrize(("shell", "rc"), [("bash", ".bashrc"), ("zsh", ".zshrc")])
def test_install_writes_script_and_sources_it_once(home: Path, shell: str, rc: str) -> None:
    (home / rc).write_text("export EDITOR=vi")  # no trailing newline

    first = install(f"/usr/bin/{shell}")
    second = install(f"/bin/{shell}")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    script = home / ".config" / "corral" / f"completion.{shell}"
    assert "_CORRAL_COMPLETE" in script.read_text()
    lines = (home / rc).read_text().splitlines()
    assert lines[0] == "export EDITOR=vi"
    assert len(lines) == 2
    assert str(script) in lines[1]
    assert "already sourced" in second.stdout


def test_install_fish_uses_fish_completions_dir(home: Path) -> None:
    result = install("/usr/bin/fish")
    assert result.exit_code == 0, result.output
    assert "_CORRAL_COMPLETE" in (home / ".config/fish/completions/corral.fish").read_text()


@pytest.mark.parametrize("shell", ["/bin/tcsh", ""])
def test_install_refuses_unknown_shells(home: Path, shell: str) -> None:
    result = install(shell)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot install completion for shell")
    assert "corral completion SHELL" in result.stderr
    assert list(home.iterdir()) == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_subcommands(home: Path) -> None:
    """The installed completion really answers bash: `corral no<TAB>` offers `nodes`."""
    env = {
        **os.environ,
        "_CORRAL_COMPLETE": "bash_complete",
        "COMP_WORDS": "corral no",
        "COMP_CWORD": "1",
    }
    code = "from control_plane.cli.main import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert "plain,nodes" in out.stdout.splitlines()
