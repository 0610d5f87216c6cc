"""The ends bench/sessions.py drives: a program in a pseudo-terminal (the `corral` CLI or
`ssh`, typed at as an operator types), a throw-away sshd on loopback, a TCP source that sends
a given number of bytes, a reader that times a byte stream, and sessions opened from this
process with the CLI's own stream code (control_plane/cli/session_stream.py: Channel, an
Endpoint over a TLS websocket) against a real server and agent."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from _common import BenchError, Proc, free_port, wait_until

CHUNK = 1024 * 1024
ERASE = b"\x7f"  # a cooked terminal (ECHOE) echoes it as "\b \b": the line never grows
ECHOES = {b"x": b"x", ERASE: b"\x08 \x08"}


# A program in a pseudo-terminal ---------------------------------------------------------------
class Terminal:
    """``argv`` on the slave side of a new PTY (24x80); this process types on the master."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                os.execvpe(argv[0], list(argv), env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = bytearray()
        self.status: int | None = None

    def read(self, timeout: float) -> bytes:
        """What the program printed within ``timeout`` (b"" if nothing)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return b""
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            raise BenchError(f"{self.what()} ended: {bytes(self.output[-500:])!r}")
        self.output += chunk
        return chunk

    def expect(self, needle: bytes, timeout: float) -> None:
        start = len(self.output)
        end = time.monotonic() + timeout
        while needle not in self.output[start:]:
            if time.monotonic() > end:
                raise BenchError(f"{needle!r} not seen: {bytes(self.output[-500:])!r}")
            self.read(end - time.monotonic())

    def drain(self, quiet: float = 0.2) -> None:
        while self.read(quiet):
            pass

    def what(self) -> str:
        return f"the program in the terminal (pid {self.pid})"

    def close(self, polite: bytes = b"") -> None:
        if polite:
            with contextlib.suppress(OSError):
                os.write(self.fd, polite)
            end = time.monotonic() + 5
            while self.status is None and time.monotonic() < end:
                with contextlib.suppress(BenchError):
                    self.read(0.1)
                self._reap()
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def _reap(self) -> None:
        done, status = os.waitpid(self.pid, os.WNOHANG)
        if done:
            self.status = os.waitstatus_to_exitcode(status)


def echo_latency(term: Terminal, samples: int, gap: float) -> list[float]:
    """Type one byte at a time (``x``, then an erase, ...) and time until its echo is back;
    seconds per sample."""
    term.drain()
    times: list[float] = []
    for i in range(samples):
        key = b"x" if i % 2 == 0 else ERASE
        want = ECHOES[key]
        start = len(term.output)
        t0 = time.perf_counter()
        os.write(term.fd, key)
        while not term.output[start:].endswith(want):
            if time.perf_counter() - t0 > 5:
                raise BenchError(f"no echo of {key!r}: {bytes(term.output[-200:])!r}")
            term.read(5)
        times.append(time.perf_counter() - t0)
        time.sleep(gap)
    return times


# sshd on loopback -----------------------------------------------------------------------------
@dataclass
class Ssh:
    argv: list[str]  # ssh with its options, then root@127.0.0.1
    version: str
    cipher: str = "default"


@contextlib.contextmanager
def sshd(root: Path) -> Iterator[Ssh]:
    """Our own sshd on a free loopback port (a throw-away host key, one authorized key,
    root allowed); BenchError with the reason if it cannot run."""
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin) or not shutil.which("ssh"):
        raise BenchError("no sshd or ssh on this machine")
    if os.geteuid() != 0:
        raise BenchError("sshd for root needs root here")
    work = root / "ssh"
    work.mkdir()
    for name in ("host_key", "client_key"):
        made = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if made.returncode != 0:
            raise BenchError(f"ssh-keygen failed: {made.stderr.strip()}")
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    port = free_port()
    (work / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
        "PrintMotd no\nPrintLastLog no\nSubsystem sftp internal-sftp\n"
    )
    privsep = Path("/run/sshd")  # sshd's compiled-in privilege separation directory
    made_privsep = not privsep.exists()
    if made_privsep:
        privsep.mkdir(mode=0o755)
    proc = Proc([sshd_bin, "-D", "-e", "-f", str(work / "sshd_config"), "-p", str(port)],
                root, "sshd")  # fmt: skip
    try:
        wait_until(lambda: _accepts(port) or _dead(proc), 10, "sshd to listen")
        if not proc.alive():
            raise BenchError(f"sshd did not start: {proc.stderr_tail(3)}")
        argv = ["ssh", "-i", str(work / "client_key"), "-p", str(port), "-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1"]  # fmt: skip
        probe = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            raise BenchError(f"ssh to the bench's sshd failed: {probe.stderr.strip()[-300:]}")
        version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        cipher = _negotiated_cipher(argv)
        yield Ssh(argv, version.split(",")[0], cipher)
    finally:
        proc.stop()
        if made_privsep:
            with contextlib.suppress(OSError):
                privsep.rmdir()


def _negotiated_cipher(argv: list[str]) -> str:
    debug = subprocess.run([*argv[:-1], "-v", argv[-1], "true"], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
    for line in debug.stderr.splitlines():
        if "kex: server->client cipher:" in line:
            return line.split("cipher:")[1].split()[0]
    return "default"


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _dead(proc: Proc) -> bool:
    return not proc.alive()


# Byte streams ---------------------------------------------------------------------------------
class Source:
    """A TCP server on loopback (the node's side): each connection that sends one byte gets
    ``size`` zero bytes, then EOF.  (A connection that sends nothing gets nothing: probes.)"""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True, name="source").start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket) -> None:
        block = memoryview(bytes(CHUNK))
        with conn, contextlib.suppress(OSError):
            if not conn.recv(1):
                return
            left = self.size
            while left > 0:
                n = min(left, CHUNK)
                conn.sendall(block[:n])
                left -= n
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Stream:
    """How a byte stream went: bytes, seconds from the first byte to EOF, and from the start."""

    nbytes: int
    from_first: float
    total: float
    extra: dict[str, Any] = field(default_factory=dict)

    def mb_s(self) -> float:
        return self.nbytes / 1e6 / self.from_first if self.from_first > 0 else float("nan")


def read_stream(pipe: IO[bytes], t0: float) -> Stream:
    buf = bytearray(CHUNK)
    got, first = 0, 0.0
    while n := pipe.readinto(buf):  # type: ignore[attr-defined]
        if not got:
            first = time.perf_counter()
        got += n
    end = time.perf_counter()
    return Stream(got, end - (first or end), end - t0)


def pull(port: int, t0: float | None = None) -> Stream:
    """Connect to ``port``, ask (one byte) and read to EOF."""
    t0 = t0 if t0 is not None else time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * CHUNK)
        sock.sendall(b"g")
        with sock.makefile("rb", buffering=0) as pipe:
            return read_stream(pipe, t0)


def command_stream(argv: list[str], env: dict[str, str], size: int, log: Path) -> Stream:
    with log.open("ab") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, bufsize=0,
                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        assert child.stdout is not None
        try:
            got = read_stream(child.stdout, t0)
            child.wait(60)
        finally:
            _stop(child)
    if got.nbytes != size or child.returncode != 0:
        raise BenchError(f"{argv[0]}: {got.nbytes} of {size} bytes, status {child.returncode}; "
                         f"{log.read_text(errors='replace')[-400:]}")  # fmt: skip
    return got


def _stop(child: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def forwarded_stream(
    argv: list[str], env: dict[str, str], size: int, local: int | None, log: Path
) -> Stream:
    """A forwarder (``argv``) started, its local port (``local``, or the CLI's "Forwarding
    127.0.0.1:PORT" line), SIZE bytes pulled through it; the forwarder stopped (SIGINT), what
    it printed then kept in ``log``."""
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    assert child.stderr is not None
    try:
        said = ""
        while local is None:  # "Starting session with SessionId: ...", then "Forwarding ..."
            line = child.stderr.readline().decode(errors="replace")
            said += line
            found = re.search(r"Forwarding 127\.0\.0\.1:(\d+)", line)
            if found:
                local = int(found.group(1))
            elif not line or said.count("\n") > 5:
                raise BenchError(f"port-forward said: {said.strip()[-300:]}")
        if said:
            child.stderr.readline()  # "Waiting for connections..."
        else:
            port = local
            wait_until(lambda: _accepts(port) or child.poll() is not None, 20, "the forwarder")
        got = pull(local)
    finally:
        _stop(child, signal.SIGINT)
        with log.open("ab") as out:
            out.write(child.stderr.read())
    if got.nbytes != size:
        raise BenchError(f"{argv[0]} forwarded {got.nbytes} of {size} bytes")
    return got


# Sessions opened from this process (the CLI's stream code) ------------------------------------
@dataclass
class Opened:
    session_id: str
    channel: Any  # control_plane.cli.session_stream.Channel
    output: bytearray = field(default_factory=bytearray)
    echoes: list[float] = field(default_factory=list)


async def open_shell(api: Any, server: Any, node_id: str, prompt: bytes) -> Opened:
    """POST /v1/sessions (Corral-StartShell), attach as the CLI does, wait for the prompt."""
    from control_plane.cli.session_stream import Channel, StreamTarget, stream_url

    answer = await api.post("/v1/sessions", json={"node_id": node_id})
    if answer.status_code != 201:
        raise BenchError(f"POST /v1/sessions: {answer.status_code} {answer.text[:300]}")
    body = answer.json()
    target = StreamTarget(stream_url(server.url, body["stream_path"]), server.token, server.tls())
    opened = Opened(body["session_id"], Channel(body["session_id"], target))
    await opened.channel.__aenter__()
    await _read_until(opened, prompt, 60)
    return opened


async def _read_until(opened: Opened, want: bytes, within: float) -> None:
    from agent.sessions import datachannel as dc

    ep = opened.channel.endpoint
    start = len(opened.output)
    async with asyncio.timeout(within):
        while not opened.output[start:].endswith(want):
            frame = await ep.receive()
            if frame is None or frame.type in (dc.CLOSED, dc.TERMINATE, dc.EXIT):
                raise BenchError(f"session {opened.session_id} ended: {ep.ended}")
            if frame.type == dc.DATA:
                opened.output += frame.payload


async def echo(opened: Opened, samples: int, gap: float) -> None:
    """As ``echo_latency``, with DATA frames: type a byte, time until its echo is back."""
    from agent.sessions import datachannel as dc

    loop = asyncio.get_running_loop()
    for i in range(samples):
        key = b"x" if i % 2 == 0 else ERASE
        t0 = loop.time()
        await opened.channel.endpoint.send(dc.DATA, key)
        await _read_until(opened, ECHOES[key], 30)
        opened.echoes.append(loop.time() - t0)
        await asyncio.sleep(gap)


async def close_shell(opened: Opened) -> None:
    """``exit`` typed; the channel closed once the session has ended (bounded)."""
    from agent.sessions import datachannel as dc

    ep = opened.channel.endpoint
    with contextlib.suppress(Exception):
        await ep.send(dc.DATA, b"exit\n")
        async with asyncio.timeout(10):
            while (frame := await ep.receive()) is not None and frame.type not in (
                dc.CLOSED,
                dc.TERMINATE,
            ):
                pass
    await opened.channel.__aexit__(None, None, None)
