"""Session Manager end to end: a real server (TLS), a real agent, and the real `corral` CLI
driven through a pseudo-terminal, as an operator types.

A shell: `echo $((6*7))` prints 42, a resize shows in `stty size`, `exit 7` is the CLI's exit
status, the recording replays to the same bytes and exports as asciicast; `~.` disconnects and
ends the session, killing what the shell left in the background; the client's connection cut
mid-session resumes without losing a byte.  Port forwarding: two connections at once to a TCP
echo server, and psql through the forwarded port to the PostgreSQL on 127.0.0.1:5432.
Refusals: a run-as user missing on the node, a token without sessions:Start."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.sessions import recording
from tests.integration.harness import BIN, Agent, Server, wait_for
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_run_agent import started_agent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server_config('session_run_as_default_user = "nobody"'),
    pytest.mark.skipif(os.geteuid() != 0, reason="run-as needs root"),
]


def cli_env(server: Server, url: str | None = None, token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        CORRAL_URL=url or server.url,
        CORRAL_TOKEN=token or server.token,
        CORRAL_CA_FILE=server.ca_file,
        CORRAL_CONFIG="/nonexistent/corral.toml",
    )
    return env


class Terminal:
    """`corral ARGS` on the slave side of a real PTY; the test types on the master."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 24, cols: int = 80):
        pid, fd = pty.fork()
        if pid == 0:  # the child: its terminal has a size before the CLI reads it
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                os.execve(str(BIN / "corral"), ["corral", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = bytearray()
        self.status: int | None = None

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[bytes]:
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.output)
            if found:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{pattern!r} not seen; output: {bytes(self.output)[-2000:]!r}"
                )
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.wait(1)
                    raise AssertionError(
                        f"{pattern!r} not seen before the CLI ended ({self.status}): "
                        f"{bytes(self.output)[-2000:]!r}"
                    )
                self.output.extend(chunk)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.kill(self.pid, signal.SIGWINCH)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.status is None:
            with_output = select.select([self.fd], [], [], 0.1)[0]
            if with_output:
                with contextlib.suppress(OSError):
                    self.output.extend(os.read(self.fd, 65536))
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                raise AssertionError(f"the CLI did not end: {bytes(self.output)[-2000:]!r}")
        return self.status

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait()
        os.close(self.fd)


@pytest.fixture
def node(server: Server, make_agent: Callable[..., Agent]) -> Agent:
    agent = started_agent(make_agent)
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "node online")
    return agent


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    yield made
    for term in made:
        term.close()


def sessions(server: Server, node_id: str) -> list[dict[str, Any]]:
    with server.api() as api:
        found: list[dict[str, Any]] = []
        for state in ("Active", "History"):
            answer = api.get("/v1/sessions", params={"state": state, "node_id": node_id})
            assert answer.status_code == 200, answer.text
            found += answer.json()["sessions"]
    return found


def corral(server: Server, *args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "corral"), *args], env=cli_env(server, **kw), capture_output=True, timeout=60
    )


def test_a_shell_in_a_real_terminal(server: Server, node: Agent, terminals: list[Terminal]) -> None:
    term = Terminal(["session", "start", node.node_id], cli_env(server))
    terminals.append(term)
    term.type("echo $((6*7))\r")
    term.expect(r"(?<![0-9(*])42\r\n")
    term.type("id -un\r")
    term.expect(r"(?<!-)\bnobody\r\n")
    term.resize(33, 101)
    # The CLI sends the resize when SIGWINCH reaches it; what is typed may overtake that
    # signal, so ask again until the node's terminal has the new size.
    for attempt in range(10):
        term.type("stty size\r")
        try:
            term.expect(r"\b33 101\r\n", timeout=3)
            break
        except AssertionError:
            if attempt == 9:
                raise
    term.type("exit 7\r")
    assert term.wait() == 7

    (shown,) = sessions(server, node.node_id)
    wait_for(lambda: sessions(server, node.node_id)[0]["status"] == "Terminated", 30, "ended")
    shown = sessions(server, node.node_id)[0]
    assert shown["exit_status"] == 7 and shown["run_as"] == "nobody"
    with server.api() as api:
        raw = api.get(f"/v1/sessions/{shown['session_id']}/recording").content
    printed = recording.output_bytes(raw)
    assert b"42" in printed and b"33 101" in printed
    typed = b"".join(e.data for e in recording.events(raw) if e.kind == recording.INPUT)
    assert b"echo $((6*7))" in typed and b"id -un\r" in typed
    replay = corral(server, "sessions", "replay", shown["session_id"], "--speed", "0")
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == printed
    export = corral(server, "sessions", "export", shown["session_id"], "--format", "asciicast")
    lines = export.stdout.decode().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert "42" in "".join(json.loads(line)[2] for line in lines[1:])


def test_disconnecting_ends_the_session_and_kills_what_it_left_behind(
    server: Server, node: Agent, terminals: list[Terminal]
) -> None:
    term = Terminal(["session", "start", node.node_id], cli_env(server))
    terminals.append(term)
    term.type("sleep 1000 & echo PID=$!\r")
    pid = int(term.expect(r"PID=(\d+)").group(1))
    os.kill(pid, 0)  # it runs, on this machine (the node)
    term.type("\r~.")
    term.wait()
    wait_for(lambda: not _alive(pid), 30, f"background sleep {pid} killed")
    wait_for(lambda: sessions(server, node.node_id)[0]["status"] == "Terminated", 30, "ended")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(") ")[-1][0] != "Z"


def test_a_cut_client_connection_resumes_without_losing_a_byte(
    server: Server, node: Agent, terminals: list[Terminal]
) -> None:
    proxy = TcpProxy(server.port)
    try:
        term = Terminal(["session", "start", node.node_id], cli_env(server, url=proxy.url))
        terminals.append(term)
        term.type("echo ready\r")
        term.expect(r"(?<!echo )ready\r\n")
        term.type("seq 1 20000 | md5sum; sleep 1; seq 1 30000 | tail -n 1\r")
        assert proxy.cut() >= 1  # the CLI's websocket (and its API client's, if open)
        term.expect(r"\b30000\r\n", timeout=60)
        expected = (
            subprocess.run("seq 1 20000 | md5sum", shell=True, capture_output=True, check=True)
            .stdout.decode()
            .split()[0]
        )
        assert expected.encode() in term.output
        term.type("exit\r")
        assert term.wait() == 0
    finally:
        proxy.close()


class EchoServer:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


@pytest.fixture
def forward(server: Server, node: Agent) -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(remote_port: int, *more: str) -> int:
        proc = subprocess.Popen(
            [str(BIN / "corral"), "session", "port-forward", node.node_id,
             "--remote-port", str(remote_port), "--local-port", "0", *more],
            env=cli_env(server), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        assert proc.stderr is not None
        seen = ""
        for _ in range(5):  # "Starting session with SessionId: ...", then "Forwarding ..."
            line = proc.stderr.readline().decode()
            seen += line
            found = re.search(r"Forwarding 127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
            if not line:
                break
        raise AssertionError(f"no Forwarding line: {seen!r}")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            leftover = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            assert "Traceback" not in leftover, leftover


def test_port_forwarding_carries_many_connections_at_once(
    server: Server, node: Agent, forward: Callable[..., int]
) -> None:
    echo = EchoServer()
    local = forward(echo.port)
    a = socket.create_connection(("127.0.0.1", local), timeout=30)
    b = socket.create_connection(("127.0.0.1", local), timeout=30)
    payload = os.urandom(3 * 1024 * 1024)
    a.sendall(b"first")

    def write() -> None:  # while the echo is read below (else both ends' buffers fill)
        b.sendall(payload)
        b.shutdown(socket.SHUT_WR)  # half-close: the echo still comes back

    writer = threading.Thread(target=write)
    writer.start()
    assert _read(a, 5) == b"first"
    assert _read(b, len(payload)) == payload
    writer.join(30)
    assert b.recv(1) == b""  # and then the node's side closed too
    a.close()
    b.close()
    (shown,) = sessions(server, node.node_id)
    assert shown["document"] == "Corral-StartPortForwarding" and shown["recording"] is None


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs psql")
def test_psql_through_a_forwarded_port(
    server: Server, node: Agent, forward: Callable[..., int]
) -> None:
    local = forward(5432, "--remote-host", "127.0.0.1")
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(local), "-U", "postgres", "-d", "test",
         "-tAc", "select 6*7"],
        capture_output=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "20"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"42"
    assert sessions(server, node.node_id)[0]["document"] == (
        "Corral-StartPortForwardingToRemoteHost"
    )


def _read(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data.extend(chunk)
    return bytes(data)


@pytest.mark.server_config('session_run_as_default_user = "no-such-user"')
def test_a_missing_run_as_user_fails_the_session_with_that_reason(
    server: Server, node: Agent, terminals: list[Terminal]
) -> None:
    term = Terminal(["session", "start", node.node_id], cli_env(server))
    terminals.append(term)
    term.expect(r"run-as user 'no-such-user' does not exist on this node")
    assert term.wait() == 1
    # --run-as names another user: one that exists works.
    term = Terminal(["session", "start", node.node_id, "--run-as", "nobody"], cli_env(server))
    terminals.append(term)
    term.type("id -un; exit\r")
    term.expect(r"(?<!-)\bnobody\r\n")
    assert term.wait() == 0


def test_a_token_without_sessions_start_is_refused(server: Server, node: Agent) -> None:
    with server.api() as api:
        made = api.post("/v1/tokens", json={"name": "viewer", "role": "viewer"})
    assert made.status_code == 201, made.text
    refused = corral(server, "session", "start", node.node_id, token=made.json()["secret"])
    assert refused.returncode != 0
    err = refused.stderr.decode()
    assert "may not sessions:Start" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert sessions(server, node.node_id) == []


def test_unknown_documents_and_bad_ports_are_one_line_errors(server: Server, node: Agent) -> None:
    bad = corral(server, "session", "start", node.node_id, "--document", "Corral-Nope")
    assert bad.returncode != 0 and "no session document 'Corral-Nope'" in bad.stderr.decode()
    bad = corral(
        server, "session", "port-forward", node.node_id, "--remote-port", "70000",
        "--local-port", "0",
    )  # fmt: skip
    assert bad.returncode != 0 and "70000" in bad.stderr.decode()
    assert "Traceback" not in bad.stderr.decode()
    assert sessions(server, node.node_id) == []
