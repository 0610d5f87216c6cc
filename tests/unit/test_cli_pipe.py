"""A closed pipe (``corral ... | head``, ``| less`` then q) ends the CLI as it ends git and
kubectl: nothing on stderr, and death by SIGPIPE, which a shell reports as 141.

Real processes and real pipes: the CLI in a fresh interpreter, reading from a small HTTP
server on loopback, writing into a pipe whose reader has gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")

COMMAND = {
    "command_id": "0b7f7bde-9d1c-4a4e-9f39-3f1b1f0c2a10",
    "document_name": "AWS-RunShellScript",
    "status": "Success",
    "status_details": "Success",
    "target_count": 1,
    "created_at": "2026-12-04T05:00:00Z",
}


class _Commands(BaseHTTPRequestHandler):
    rows = 2000  # well beyond a pipe's buffer

    def do_GET(self) -> None:
        body = json.dumps({"commands": [COMMAND] * self.rows, "next_token": None}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Commands)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CORRAL_CONFIG": "/nonexistent/config.toml",
            "CORRAL_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "CORRAL_TOKEN": "crl_test",
        }
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


CLI = [sys.executable, "-m", "control_plane.cli"]


def run_into_closed_pipe(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run the CLI with stdout a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*CLI, *args], stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=60
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["commands", "list", "--output", "json"],  # the case
        ["commands", "list"],  # a table (rich)
        ["--help"],  # click's own output, while parsing
    ],
)
def test_a_closed_pipe_ends_the_cli_by_sigpipe_and_prints_nothing(
    args: list[str], env: dict[str, str]
) -> None:
    code, stderr = run_into_closed_pipe(args, env)

    assert stderr == b""
    assert code == -signal.SIGPIPE


def test_the_shell_sees_141_as_from_git(env: dict[str, str]) -> None:
    line = " ".join([*CLI, "commands", "list", "--output", "json"])
    script = f"{line} | head -c 0; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=True
    )

    assert done.stderr == ""
    assert done.stdout.split() == ["141"]


def test_a_reader_that_reads_everything_sees_it_all_and_exit_0(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*CLI, "commands", "list", "--output", "json"], capture_output=True, env=env, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == _Commands.rows
