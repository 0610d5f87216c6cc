"""A short run of the fault-injection harness (bench/chaos.py): a real server, three real
agents behind the fault proxy, 30 commands and 20 faults of every kind; nothing may be lost,
run twice, left hanging or buried in a dead table.

Each seed fixes the command stream and the fault schedule.  Seeds that once found a bug stay
here as regression tests (with what they found).  Select these runs with ``-k chaos``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Server
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"
# (seed, extra arguments): every kind of fault unless the arguments say otherwise.
RUNS = [
    pytest.param(1, [], id="seed-1"),
    # Found a bug: a run_command pushed on the websocket channel while the agent's disk was
    # full (journal and outbox writes fail) is never acknowledged, and the server never sends
    # it again on the open channel: InProgress forever, the command's other targets Pending.
    pytest.param(11, ["--agents", "2", "--commands", "20", "--faults", "6", "--duration", "30",
                      "--kinds", "disk_full"], id="seed-11-disk-full"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _kill_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def _term_with_parent() -> None:
    """In the child: SIGTERM (it cleans up) if the test process dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.mark.parametrize(("seed", "extra"), RUNS)
def test_chaos_short_run_loses_nothing(tmp_path: Path, seed: int, extra: list[str]) -> None:
    figures = tmp_path / "chaos.json"
    args = [
        sys.executable,
        str(CHAOS),
        "--agents", "3",
        "--commands", "30",
        "--faults", "20",
        "--duration", "40",
        "--settle", "180",
        "--seed", str(seed),
        "--json", str(figures),
        *extra,  # later options win
    ]  # fmt: skip
    with (tmp_path / "chaos.out").open("w") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(tmp_path)},  # its work dir under tmp_path
            start_new_session=True,
            preexec_fn=_term_with_parent if sys.platform == "linux" else None,
        )
        try:
            code = proc.wait(timeout=900)
        finally:
            if proc.poll() is None:  # it stops everything it started on SIGTERM
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=60)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = (tmp_path / "chaos.out").read_text(errors="replace")
    assert figures.exists(), text[-5000:]
    result = json.loads(figures.read_text())
    counts = {k: result[k] for k in ("lost", "doubled", "hanging", "dead")}
    details = {
        k: result[k]
        for k in ("lost_detail", "doubled_detail", "hanging_detail", "unexpected_exits")
    }
    assert counts == {"lost": 0, "doubled": 0, "hanging": 0, "dead": 0}, (
        f"seed {seed}: {json.dumps(details, indent=1)}\n{text[-3000:]}"
    )
    faults = int(extra[extra.index("--faults") + 1]) if "--faults" in extra else 20
    assert sum(result["faults"].values()) >= faults, result["faults"]
    assert code == 0, text[-3000:]


def test_the_proxy_refuses_requests_over_its_limit_as_nginx_does(server: Server) -> None:
    """The harness's proxy terminates TLS with the server's certificate (the agents' pinned CA
    accepts it), passes requests under its limit and answers 413 itself above it."""
    sys.path.insert(0, str(CHAOS.parent))
    try:
        from _proxy import FaultProxy  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(CHAOS.parent))
    proxy = FaultProxy(
        server.port,
        certfile=str(server.data_dir / "server.pem"),
        keyfile=str(server.data_dir / "server.key"),
        cafile=server.ca_file,
        limit_bytes=64 * 1024,
    )
    with proxy, httpx.Client(base_url=proxy.url, verify=server.tls(), timeout=30) as client:
        assert client.get("/readyz").status_code == 200
        small = client.post("/v1/agent/messages", content=b"x" * 1000)
        assert small.status_code == 401, small.text  # the server's answer: no token
        large = client.post("/v1/agent/messages", content=b"x" * (64 * 1024 + 1))
        assert large.status_code == 413
        assert large.headers["server"] == "chaos-proxy"
        assert client.get("/readyz").status_code == 200  # a new connection after the 413
        assert proxy.stats["413"] == 1
        proxy.reset()
        assert client.get("/readyz").status_code == 200
