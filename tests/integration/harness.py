"""Real processes for integration tests: a `corral-server serve` on a free loopback port and
`corral-agent` processes in temporary state dirs.  Every wait has a deadline; every process
started here is stopped by the fixture that owns it."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    """In the child: be killed if the test process dies (Linux), so nothing outlives a run."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)  # between checks of the condition, within the deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A short command; ``input`` is its stdin (else /dev/null)."""
    if input is not None:
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            input=input,
        )
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


class Proc:
    """A long-running child with its output in files (no pipe can fill up)."""

    def __init__(
        self, args: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.out_path = log_dir / f"{name}.out"
        self.err_path = log_dir / f"{name}.err"
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # the tests start children from the main thread
            )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.popen.returncode

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


class Server:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "server"
        self.log_dir = root
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.url = f"https://127.0.0.1:{self.port}"
        result = run(
            str(BIN / "corral-server"),
            "init",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.listen,
            "--output",
            "json",
        )
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        self.token: str = info["admin_token"]
        self.ca_hash: str = info["ca_hash"]
        self.ca_file: str = info["ca_file"]
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = Proc(
            [
                str(BIN / "corral-server"),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                self.listen,
            ],
            self.log_dir,
            f"server-{self.starts}",
        )
        wait_for(self._ready, 30, "server /readyz")

    def _ready(self) -> bool:
        assert self.proc is not None
        if not self.proc.alive():
            raise AssertionError(f"server exited: {self.proc.stderr}")
        try:
            return httpx.get(self.url + "/readyz", verify=self.tls(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=self.tls(),
            timeout=60,
            headers={"authorization": f"Bearer {self.token}"},
        )

    def activation(self, **body: Any) -> dict[str, Any]:
        with self.api() as api:
            response = api.post("/v1/activations", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def node(self, node_id: str) -> dict[str, Any]:
        with self.api() as api:
            response = api.get(f"/v1/nodes/{node_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def run_document(
        self, node_id: str, document: str, parameters: dict[str, Any], timeout: float = 60
    ) -> dict[str, Any]:
        """Send ``document`` to the node; its invocation once it has ended."""
        with self.api() as api:
            sent = api.post(
                "/v1/commands",
                json={"targets": [node_id], "document": document, "parameters": parameters},
            )
        assert sent.status_code == 201, sent.text
        command_id = sent.json()["command_id"]

        def ended() -> dict[str, Any] | None:
            with self.api() as api:
                shown = api.get(f"/v1/commands/{command_id}/invocations/{node_id}").json()
            return shown if shown["status"] not in ("Pending", "InProgress", "Delayed") else None

        invocation: dict[str, Any] = wait_for(ended, timeout, f"{document} to end")
        return invocation

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "corral.db", timeout=10)


class Agent:
    def __init__(self, root: Path, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.state_dir = root / f"agent-{name}"
        self.log_dir = root
        self.node_id = ""
        self.proc: Proc | None = None
        self.runs = 0

    def configure(self, **settings: float) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k} = {v}" for k, v in settings.items()]
        (self.state_dir / "agent.toml").write_text("\n".join(lines) + "\n")

    def register(
        self, activation: dict[str, Any] | None = None, **kw: str
    ) -> subprocess.CompletedProcess[str]:
        activation = activation or self.server.activation()
        args = [
            BIN / "corral-agent",
            "register",
            "--url",
            kw.get("url", self.server.url),
            "--id",
            kw.get("id", activation["activation_id"]),
            "--code",
            kw.get("code", activation["activation_code"]),
            "--ca-hash",
            kw.get("ca_hash", self.server.ca_hash),
            "--state-dir",
            str(self.state_dir),
            "--output",
            "json",
        ]
        if "name" in kw:
            args += ["--name", kw["name"]]
        if kw.get("force"):
            args.append("--force")
        result = run(*map(str, args))
        if result.returncode == 0:
            self.node_id = json.loads(result.stdout)["node_id"]
        return result

    def start(self, env: dict[str, str] | None = None) -> None:
        self.runs += 1
        self.proc = Proc(
            [
                str(BIN / "corral-agent"),
                "run",
                "--state-dir",
                str(self.state_dir),
                "--log-format",
                "json",
            ],
            self.log_dir,
            f"agent-{self.name}-{self.runs}",
            env=env,
        )

    def status(self) -> dict[str, Any]:
        agent = str(BIN / "corral-agent")
        result = run(agent, "status", "--state-dir", str(self.state_dir), "--output", "json")
        assert result.returncode == 0, result.stderr
        info: dict[str, Any] = json.loads(result.stdout)
        return info

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def kill9(self) -> None:
        if self.proc:
            self.proc.kill9()
