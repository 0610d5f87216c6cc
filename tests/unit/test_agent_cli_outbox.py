"""``corral-agent status`` shows the dead table's count; ``corral-agent outbox list-dead`` and
``retry-dead`` show and resend what the server rejected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agent import cli, wire
from agent.config import load_config
from agent.outbox import Outbox
from agent.state import Registration, save_registration


def agent(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    code = exit_info.value.code
    return int(code or 0), capsys.readouterr().out


def fill(state_dir: Path, dead: int, queued: int) -> list[str]:
    """``dead`` messages in the dead table (ids returned), ``queued`` in the queue."""

    async def main() -> list[str]:
        box = Outbox(state_dir / "outbox.db")
        ids = []
        try:
            for n in range(dead + queued):
                message = wire.make_message(wire.MSG_INVOCATION_UPDATE, {"n": n})
                await box.put(message)
                if n < dead:
                    await box.bury([message["id"]], f"result rejected: reason {n}")
                    ids.append(message["id"])
        finally:
            box.close()
        return ids

    return asyncio.run(main())


def test_list_dead_and_retry_dead(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path)
    assert agent(capsys, "outbox", "list-dead", "--state-dir", state) == (0, "no dead messages\n")
    ids = fill(tmp_path, dead=3, queued=1)
    code, out = agent(capsys, "outbox", "list-dead", "--state-dir", state, "--output", "json")
    rows = json.loads(out)
    assert code == 0
    assert [r["id"] for r in rows] == ids
    assert rows[0]["type"] == wire.MSG_INVOCATION_UPDATE
    assert rows[0]["reason"] == "result rejected: reason 0"
    assert isinstance(rows[0]["dead_at"], float)
    code, out = agent(capsys, "outbox", "list-dead", "--state-dir", state)
    assert code == 0 and len(out.splitlines()) == 3 and "result rejected: reason 2" in out

    # One by id, then the rest.
    assert agent(capsys, "outbox", "retry-dead", ids[1], "--state-dir", state) == (
        0,
        "1 message back in the outbox\n",
    )
    code, out = agent(capsys, "outbox", "retry-dead", "--state-dir", state, "--output", "json")
    assert (code, json.loads(out)) == (0, {"moved": 2})

    box = Outbox(tmp_path / "outbox.db")
    try:
        assert box.counts() == (4, 0)
        queued = asyncio.run(box.peek(10))
        # Back at the end of the queue, with the body they had.
        assert [m["id"] for m in queued[1:]] == [ids[1], ids[0], ids[2]]
        assert queued[1]["body"] == {"n": 1}
    finally:
        box.close()


def test_status_counts_the_dead_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = load_config(tmp_path)
    save_registration(
        config,
        Registration(
            node_id="mi-0123456789abcdef0",
            url="https://corral.example:8443",
            registered_at=1.0,
            credential_expires_at=2e9,
            credential_issued_at=1.0,
            ca_hash="sha256:00",
        ),
    )
    code, out = agent(capsys, "status", "--state-dir", str(tmp_path), "--output", "json")
    assert code == 0 and (json.loads(out)["outbox_depth"], json.loads(out)["dead"]) == (0, 0)
    fill(tmp_path, dead=2, queued=3)
    code, out = agent(capsys, "status", "--state-dir", str(tmp_path), "--output", "json")
    info = json.loads(out)
    assert (info["outbox_depth"], info["dead"]) == (3, 2)
    assert info["node_id"] == "mi-0123456789abcdef0"  # the other keys are still there
    code, out = agent(capsys, "status", "--state-dir", str(tmp_path))
    assert code == 0
    assert any(line.split() == ["dead", "2"] for line in out.splitlines())


def test_an_unreadable_outbox_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outbox.db").write_bytes(b"not a database" * 100)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["outbox", "list-dead", "--state-dir", str(tmp_path)])
    assert exit_info.value.code != 0
    assert "outbox" in capsys.readouterr().err
