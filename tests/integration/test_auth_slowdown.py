"""An attacker behind the same address as the operators and the agents (a NAT, a shared
bastion) is slowed down by its bad tokens; the valid CLI and agents there keep working
(issue 9, item 3)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import BIN, Agent, Server, run
from tests.integration.test_run_command import agents
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


class Attacker:
    """Sends bad tokens from 127.0.0.1 as fast as the server answers, until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stop = threading.Event()
        self.answers: list[tuple[int, str | None]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, verify=self.server.tls(), timeout=10) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                bad = {"authorization": f"Bearer crl_guess{n:040d}"}
                response = c.get("/v1/nodes", headers=bad)
                self.answers.append((response.status_code, response.headers.get("retry-after")))

    def __enter__(self) -> Attacker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_valid_callers_on_the_attackers_address_keep_working(
    tmp_path: Path, server: Server, make_agent: Callable[..., Agent]
) -> None:
    (agent,) = agents(make_agent, server, 1)
    env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}

    def corral(*args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=env)
        return result.returncode, result.stdout, result.stderr

    login = ("login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash)
    assert corral(*login)[0] == 0
    with Attacker(server) as attacker:
        # Wait until the attacker is being held back (its delay doubles to 30 s).
        deadline = 200
        while sum(1 for code, _ in attacker.answers if code == 429) < 3 and deadline:
            deadline -= 1
            code, _, err = corral("nodes", "list", "--output", "json")
            assert code == 0, err
        assert deadline, f"the attacker was never slowed down: {attacker.answers[-5:]}"
        for _ in range(5):
            code, out, err = corral("nodes", "list", "--output", "json")
            assert code == 0 and agent.node_id in out, err
            code, out, err = corral("run", "--targets", "all", "--wait", "--", "echo still-here")
            assert code == 0 and "still-here" in out, err
        # A token made now, used for the first time from the same address, works too.
        code, out, err = corral("tokens", "create", "--name", "late", "--role", "viewer",
                                "--output", "json")  # fmt: skip
        assert code == 0, err
    assert attacker.answers and attacker.answers[-1][0] == 429
    refused = [retry for code, retry in attacker.answers if code == 429]
    assert all(retry is not None and int(retry) >= 1 for retry in refused)
    # Its guesses are mostly refused unevaluated: far fewer 401s than 429s.
    evaluated = sum(1 for code, _ in attacker.answers if code == 401)
    assert evaluated < len(refused)
