"""The install script: the copy the server serves is the repository's, served publicly with the
server's URL filled in; it is valid POSIX sh and refuses bad arguments before doing anything.
(Its end-to-end run is tests/integration/test_install_script.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from control_plane.config import load_config
from control_plane.services.packages.install_script import render, server_url
from tests.unit.conftest import Api, RunApi, ServerDir

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "install.sh"
SHIPPED = REPO / "control_plane" / "assets" / "install.sh"


def test_the_served_copy_is_the_repository_script() -> None:
    """control_plane/assets/install.sh ships in the wheel; packaging/install.sh, where people
    look for it, is a link to it: one script."""
    assert SCRIPT.is_symlink() and SCRIPT.resolve() == SHIPPED.resolve()


def test_install_sh_is_public_and_names_the_server_it_came_from(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        response = await api.client.get("/install.sh")  # no credentials
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/x-shellscript")
        assert 'SERVED_FROM="https://corral.test"' in response.text
        assert response.text.replace('"https://corral.test"', '""') == SCRIPT.read_text()
        behind = await api.client.get("/install.sh", headers={"host": "corral.example:9443"})
        assert 'SERVED_FROM="https://corral.example:9443"' in behind.text

    run_api(scenario)


@pytest.mark.parametrize(
    "host", ['evil"; rm -rf /; "', "$(reboot)", "a`b`", "", "x" * 300, "h:99999999"]
)
def test_a_host_header_that_is_not_a_plain_host_is_not_written_into_the_script(
    server_dir: ServerDir, host: str
) -> None:
    config = load_config(server_dir.path)
    assert server_url(host, config) == "https://127.0.0.1:8443"  # from the config instead
    rendered = render(SCRIPT.read_text(), host, config)
    assert 'SERVED_FROM="https://127.0.0.1:8443"\n' in rendered


@pytest.mark.parametrize("shell", ["dash", "busybox sh", "sh"])
def test_the_script_parses_in_posix_shells(shell: str) -> None:
    argv = shell.split()
    if shutil.which(argv[0]) is None:
        pytest.skip(f"{argv[0]} is not installed")
    checked = subprocess.run([*argv, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_shellcheck_finds_nothing() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    checked = subprocess.run(
        ["shellcheck", "-s", "sh", str(SCRIPT)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout


HASH = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "--id is required"),
        (["--id", "x"], "--code is required"),
        (["--id", "x", "--code", "y"], "--ca-hash is required"),
        (["--id", "x", "--code", "y", "--ca-hash", HASH], "--server is required"),
        (["--id", "x", "--code", "y", "--ca-hash", "md5:00", "--server", "https://h"], "sha256"),
        (["--id", "x", "--code", "y", "--ca-hash", "sha256:00", "--server", "https://h"], "64"),
        (["--id", "x", "--code", "y", "--ca-hash", HASH, "--server", "http://h"], "https://"),
        (["--id", "x;y", "--code", "y", "--ca-hash", HASH, "--server", "https://h"], "letters"),
        (["--id", "x", "--code", "y", "--ca-hash", HASH, "--server", "https://h/$(id)"], "HOST"),
        (["--id"], "--id needs a value"),
        (["--tags", "a=b"], "unknown option --tags"),
    ],
)
def test_bad_arguments_are_refused_before_anything_happens(args: list[str], says: str) -> None:
    run = subprocess.run(
        ["sh", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("corral-install: error: ")
    assert says in run.stderr


def test_an_openssl_too_old_for_ed25519_is_refused_before_anything_happens(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the script checks for root first")
    fake = tmp_path / "bin" / "openssl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'OpenSSL 1.1.1w  11 Sep 2023'\n")
    fake.chmod(0o755)
    args = ["--id", "x", "--code", "y", "--ca-hash", HASH, "--server", "https://h"]
    run = subprocess.run(
        ["sh", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"},
    )
    assert run.returncode == 1
    assert run.stderr == (
        "corral-install: error: OpenSSL 3.0 or later is needed to verify the packages'"
        " signature (found: OpenSSL 1.1.1w  11 Sep 2023)\n"
    )
    assert run.stdout == ""
