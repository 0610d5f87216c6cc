"""The fork server: a small process that forks one document worker per command on request.

A fresh interpreter costs tens of milliseconds of CPU (the imports); a fork of a process that
has already imported the worker's modules costs a millisecond or two.  The fork server is a
new interpreter (``python -m agent.execution.forkserver FD``, never a fork of the agent, which
runs threads and holds the daemon's modules) that preloads the worker's modules (engine,
plugins, the document model; not the JSON Schema validator, see documents/_loader.py), freezes
them out of the garbage collector (so its children do not dirty those pages), and then only
waits on its socket.  The launcher stops it after a while without commands and starts it again
on the next one (agent.toml ``fork_server_idle_seconds``): an idle agent is one process.

Protocol, over a Unix socketpair: each message is a 4-byte big-endian length and a JSON
object.  The agent sends ``{"command_dir", "settings", "ssm_values"}`` with the write end of
the worker's event pipe attached (SCM_RIGHTS); the fork server answers ``{"pid"}`` or
``{"error"}``.  The Parameter Store values (ssm_values.py) reach the worker this way, in
memory: the fork server drops its copy as soon as it has forked.  When the agent goes away
(exit, crash, kill -9) or closes its end, the fork server reads EOF and exits; the workers,
each in its own session, carry on.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from agent.errors import AgentError

_HEADER = struct.Struct(">I")
# A request carries up to wire.MAX_SSM_VALUES_BYTES of values, which JSON may escape to a few
# times their size.
MAX_MESSAGE = 512 * 1024


class ForkServerError(AgentError):
    pass


def _send(sock: socket.socket, obj: dict[str, Any], fds: list[int] | None = None) -> None:
    payload = json.dumps(obj).encode()
    if len(payload) > MAX_MESSAGE:  # the other side would refuse it and stop
        raise ForkServerError("fork server message too large")
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        if sent < len(data):
            sock.sendall(data[sent:])
    else:
        sock.sendall(data)


def _recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the fds that came with it; (None, []) at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE + _HEADER.size, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    while len(data) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(data))
        if not more:
            return None, fds
        data += more
    (length,) = _HEADER.unpack(data[: _HEADER.size])
    if length > MAX_MESSAGE:
        raise ForkServerError("fork server message too large")
    body = data[_HEADER.size :]
    while len(body) < length:
        more = sock.recv(length - len(body))
        if not more:
            return None, fds
        body += more
    obj = json.loads(body)
    return (obj if isinstance(obj, dict) else None), fds


class ForkServer:
    """The agent's side: start it, ask it for workers, close it."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.pid = proc.pid
        self._proc = proc
        self._sock = sock
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> ForkServer:
        """Start the fork server (a new interpreter).  Blocking for the exec only: it preloads
        while the agent goes on, and answers its first request once ready."""
        if not hasattr(os, "fork"):
            raise ForkServerError("this platform has no fork()")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.execution.forkserver", str(child.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=[child.fileno()],
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        return cls(proc, parent)

    def spawn(
        self,
        command_dir: Path,
        settings: dict[str, Any],
        events_fd: int,
        ssm_values: dict[str, str] | None = None,
    ) -> int:
        """Fork a worker for ``command_dir``, with the command's Parameter Store values; its
        pid.  Blocking (a millisecond or two): call it from a thread."""
        request = {
            "command_dir": str(command_dir),
            "settings": settings,
            "ssm_values": ssm_values or {},
        }
        with self._lock:
            try:
                _send(self._sock, request, [events_fd])
                reply, fds = _recv(self._sock)
            except OSError as exc:
                raise ForkServerError(f"the fork server is gone: {exc}") from None
        for fd in fds:
            os.close(fd)
        if reply is None:
            raise ForkServerError("the fork server is gone")
        if "pid" not in reply:
            raise ForkServerError(f"the fork server could not fork: {reply.get('error')}")
        return int(reply["pid"])

    def close(self) -> None:
        """Stop it (it exits on EOF) and reap it."""
        with contextlib.suppress(OSError):
            self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# The fork server process ---------------------------------------------------------------------
def preload() -> None:
    """Import what a worker needs, and warm the document model, once: no JSON Schema (a
    worker does not validate what the server validated, document_from_content)."""
    # The engine, plugins and documents; the worker's log file.
    import agent.execution.worker
    import agent.logs  # noqa: F401
    from agent.documents import document_from_content
    from agent.errors import DocumentError

    with contextlib.suppress(DocumentError):
        document_from_content(
            {
                "schemaVersion": "2.2",
                "description": "warm-up",
                "mainSteps": [
                    {
                        "action": "aws:runShellScript",
                        "name": "warm",
                        "inputs": {"runCommand": ["true"]},
                    }
                ],
            },
            validated=True,
        )


def serve(sock: socket.socket) -> None:  # pragma: no cover - runs in the fork server
    # Ctrl-C and SIGTERM are for the agent; this process ends when the agent's end closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Workers are reaped by the kernel: nobody here waits for them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    preload()
    gc.collect()
    gc.freeze()
    while True:
        try:
            request, fds = _recv(sock)
        except (OSError, ValueError, ForkServerError):
            return
        if request is None:
            return
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": str(exc)})
            continue
        if pid == 0:
            code = 1
            try:
                sock.close()
                code = _worker(request, fds)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                os._exit(code)
        request.clear()  # the values live on in the worker only
        for fd in fds:
            os.close(fd)
        _send(sock, {"pid": pid})


def _worker(request: dict[str, Any], fds: list[int]) -> int:  # pragma: no cover - a worker
    from agent.execution.settings import WorkerSettings
    from agent.execution.worker import run_worker

    os.setsid()  # its own session: it outlives the agent and its process group
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    command_dir = Path(request["command_dir"])
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(command_dir / "worker.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    os.chdir(command_dir)
    for fd in fds:  # fds received with SCM_RIGHTS are inheritable: keep them from scripts
        os.set_inheritable(fd, False)
    settings = WorkerSettings.from_json(request["settings"])
    ssm_values = request.get("ssm_values")
    return run_worker(
        command_dir,
        settings,
        fds[0] if fds else None,
        ssm_values if isinstance(ssm_values, dict) else {},
    )


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - the fork server
    """``python -m agent.execution.forkserver FD``: serve the socket the agent passed."""
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    try:
        serve(sock)
    finally:
        sys.stdout.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
