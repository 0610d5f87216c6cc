"""The entry point: heavy libraries stay unimported until a command needs them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "rich", "json", "tomllib", "tomli_w", "cryptography", "ssl")

PROBE = """
import sys
from control_plane.cli.main import cli
code = cli.main({args!r}, standalone_mode=False)
print(code, *[m for m in {heavy!r} if m in sys.modules], file=sys.stderr)
"""


def probe(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    """Run the CLI in a fresh interpreter; return its exit code and the heavy modules loaded."""
    code = PROBE.format(args=args, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stderr.splitlines()[-1].split()


def test_help_imports_no_heavy_library() -> None:
    assert probe(["--help"]) == ["0"]
    assert probe(["nodes", "--help"]) == ["0"]
    assert probe(["activations", "create", "--help"]) == ["0"]


def test_a_command_imports_what_it_needs() -> None:
    env = {"CORRAL_CONFIG": "/nonexistent/config.toml", "PATH": "/usr/bin:/bin"}
    # No profile: fails after reading the (missing) config, before loading httpx.
    assert probe(["nodes", "list"], env=env) == ["1", "tomllib"]


def test_httpx_cli_module_is_never_imported() -> None:
    code = (
        "import sys\n"
        "import control_plane.cli.client\n"
        "print('httpx' in sys.modules, sys.modules.get('httpx._main', 'absent'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "None"]


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "control_plane.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert out.stdout.startswith("corral, version ")
