"""Issue 17's opening table, rerun with real processes: results queued on a node while the
server is away all arrive, intact; a node deregistered mid-command leaves nothing InProgress.

The outage is the table's, shortened (sleep, stop and outage halved) with its sizes and its
40 commands kept: 40 results of 24,000 characters of stdout and 8,000 of stderr are more than
one request of the server's 1 MiB limit can carry, which is what buried 39 of them once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Agent, Server, wait_for
from tests.unit.test_execution_support import kill_under

pytestmark = pytest.mark.integration

FINAL = {"Success", "Failed", "Cancelled", "TimedOut", "Undeliverable"}
COMMANDS = 40
STDOUT_CHARS = 24_000
STDERR_CHARS = 8_000
SLEEP = 6.0  # the table's 12 s, halved
STOP_AFTER = 1.5  # 3 s
OUTAGE = 7.0  # 14 s


@pytest.fixture(autouse=True)
def _kill_scripts(tmp_path: Path) -> Iterator[None]:
    yield
    kill_under(tmp_path)


def _agent(make_agent: Callable[..., Agent], server: Server, transport: str) -> Agent:
    agent = make_agent(transport)
    with (agent.state_dir / "agent.toml").open("a") as fh:
        fh.write(f'transport = "{transport}"\nkill_grace_seconds = 1\n')
    assert agent.register().returncode == 0
    agent.start()
    wait_for(lambda: server.node(agent.node_id)["status"] == "Online", 30, "the node Online")
    wait_for(lambda: (agent.state_dir / "status.json").exists(), 30, "the agent's first contact")
    return agent


def _view(server: Server, command_id: str) -> dict[str, Any]:
    with server.api() as api:
        answer = api.get(f"/v1/commands/{command_id}")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def _final(view: dict[str, Any]) -> bool:
    return view["status"] in FINAL and all(i["status"] in FINAL for i in view["invocations"])


def _dead_rows(agent: Agent) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{agent.state_dir / 'outbox.db'}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT type, reason FROM dead"))
    finally:
        conn.close()


@pytest.mark.server_config("rate_limit_per_second = 1000", "rate_limit_burst = 10000")
@pytest.mark.parametrize(
    ("transport", "char"),
    [("auto", "a"), ("https", "a"), ("https", "\u00e9")],
    ids=["websocket-ascii", "https-ascii", "https-two-byte-utf8"],
)
def test_forty_results_survive_a_server_outage(
    server: Server, make_agent: Callable[..., Agent], transport: str, char: str
) -> None:
    agent = _agent(make_agent, server, transport)
    script = [
        f"sleep {SLEEP:g}",
        f"yes '{char}' | head -n {STDOUT_CHARS} | tr -d '\\n'",
        f"yes '{char}' | head -n {STDERR_CHARS} | tr -d '\\n' >&2",
    ]
    with server.api() as api:
        ids = []
        for _ in range(COMMANDS):
            answer = api.post(
                "/v1/commands",
                json={"targets": [agent.node_id], "parameters": {"commands": script}},
            )
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["command_id"])
    sent = time.monotonic()
    # Every command reached the node before the outage (so every result is queued on it).
    wait_for(
        lambda: len(list((agent.state_dir / "commands").glob("*/request.json"))) == COMMANDS,
        30,
        "all 40 commands on the node",
    )
    time.sleep(max(0.0, STOP_AFTER - (time.monotonic() - sent)))
    server.stop()
    time.sleep(OUTAGE)  # the workers finish while the server is away: the outbox fills
    server.start()

    views: dict[str, dict[str, Any]] = {}

    def all_final() -> bool:
        with server.api() as api:
            for command_id in ids:
                if command_id not in views or not _final(views[command_id]):
                    answer = api.get(f"/v1/commands/{command_id}")
                    assert answer.status_code == 200, answer.text  # a refusal is not a wait
                    views[command_id] = answer.json()
        return all(_final(views[command_id]) for command_id in ids)

    try:
        wait_for(all_final, 120, "every command final", interval=0.5)  # gentle on the API
    except AssertionError as exc:
        if "timed out" not in str(exc):
            raise
        # else reported below, with what each one shows
    states = [
        (v["invocations"][0]["status"], v["invocations"][0]["status_details"])
        for v in views.values()
    ]
    assert all(_final(v) for v in views.values()), states
    want = (char * STDOUT_CHARS, char * STDERR_CHARS)
    outputs: dict[str, tuple[str, str]] = {}

    def all_intact() -> bool:
        # A step's full output may come after its final status (a blob upload): wait for it.
        with server.api() as api:
            for command_id in ids:
                inv = views[command_id]["invocations"][0]
                if outputs.get(command_id) == want or inv["status"] != "Success":
                    continue
                url = f"/v1/commands/{command_id}/invocations/{agent.node_id}/output"
                outputs[command_id] = (
                    api.get(url, params={"stream": "stdout"}).text,
                    api.get(url, params={"stream": "stderr"}).text,
                )
        return all(outputs.get(command_id) == want for command_id in ids)

    with contextlib.suppress(AssertionError):
        wait_for(all_intact, 60, "every output intact")
    intact = sum(outputs.get(command_id) == want for command_id in ids)
    sizes = sorted({(len(out), len(err)) for out, err in outputs.values()})
    assert intact == COMMANDS, (states, sizes)
    assert _dead_rows(agent) == []


def test_a_deregistered_nodes_running_command_ends_final(
    server: Server, make_agent: Callable[..., Agent]
) -> None:
    agent = _agent(make_agent, server, "auto")
    with server.api() as api:
        answer = api.post(
            "/v1/commands",
            json={"targets": [agent.node_id], "parameters": {"commands": ["sleep 30"]}},
        )
        assert answer.status_code == 201, answer.text
        command_id = answer.json()["command_id"]
        wait_for(
            lambda: _view(server, command_id)["invocations"][0]["status"] == "InProgress",
            30,
            "the sleep running on the node",
        )
        assert api.post(f"/v1/nodes/{agent.node_id}/deregister").status_code == 200

    # "Within seconds": well before the sleep could have ended (and a deregistered node
    # cannot report it anyway).
    def final_view() -> dict[str, Any] | None:
        view = _view(server, command_id)
        return view if _final(view) else None

    view = wait_for(final_view, 20, "the command final after the deregistration")
    inv = view["invocations"][0]
    assert inv["status"] in FINAL - {"Success"}, inv
    assert inv["status_details"], inv  # the reason is given
    assert view["status"] in FINAL - {"Success"}, view["status"]
