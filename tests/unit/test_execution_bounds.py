"""No single agent message is larger than wire.MAX_MESSAGE_BYTES, whatever it carries: each
kind at the largest size its contract allows, in characters that JSON escapes to six bytes
(U+2028, control characters) or twelve (non-BMP: a surrogate pair), as the agent sends them
(ensure_ascii: agent/transport/base.py ``encode``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agent import facts, wire
from agent.execution.bounds import bound_update, cut_to_bytes, encoded_size
from agent.execution.journal import Journal
from agent.execution.outcomes import agent_failure, to_report
from agent.outbox import Outbox
from agent.state_recovery import quarantine
from agent.transport.base import encode
from agent.wire import Message

SIX = "\u2028"  # three bytes of UTF-8, six escaped
CONTROL = "\x01"  # one byte of UTF-8, six escaped
TWELVE = "\U0001f600"  # four bytes of UTF-8, twelve escaped
WIDE = [SIX, CONTROL, TWELVE]


def size_of(msg_type: str, body: dict[str, Any]) -> int:
    message = wire.make_message(msg_type, body)
    message["id"] = "f" * 64
    return len(encode(message))


def full_step(index: int, char: str, name: str = "") -> dict[str, Any]:
    return {
        "name": name or f"step{index}",
        "action": "aws:runShellScript",
        "status": wire.ST_FAILED,
        "status_details": wire.ST_FAILED,
        "response_code": 1,
        "started_at": time.time(),
        "ended_at": time.time(),
        "stdout": char * wire.STDOUT_RECORD_CHARS,
        "stderr": char * wire.STDERR_RECORD_CHARS,
        "stdout_bytes": wire.OUTPUT_BLOB_MAX_BYTES,
        "stderr_bytes": wire.OUTPUT_BLOB_MAX_BYTES,
    }


def final(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "command_id": "c" * 64,
        "status": wire.ST_FAILED,
        "status_details": wire.ST_FAILED,
        "response_code": 1,
        "started_at": 1.0,
        "ended_at": 2.0,
        "steps": steps,
        **extra,
    }


@pytest.mark.parametrize("char", WIDE)
@pytest.mark.parametrize("count", [1, 2, 12, 100, 2_600])
def test_a_final_report_fits_one_message_however_many_full_steps(char: str, count: int) -> None:
    """Every step's record full (24,000 + 8,000 characters); 2,600 steps is about what a
    64 KiB document can hold."""
    body = final([full_step(i, char) for i in range(count)])
    bounded, cut = bound_update(body)
    assert size_of(wire.MSG_INVOCATION_UPDATE, bounded) <= wire.MAX_MESSAGE_BYTES
    assert len(bounded["steps"]) == min(count, wire.MAX_REPORTED_STEPS)
    if count > wire.MAX_REPORTED_STEPS:
        assert "more steps are not reported" in bounded["steps"][-1]["stderr"]
    # What was shortened is said, so it is uploaded; nothing else is touched.
    for index, step in enumerate(bounded["steps"]):
        for stream in ("stdout", "stderr"):
            whole = step[stream] == body["steps"][index][stream]
            assert whole or (index, stream) in cut
    assert body["steps"][0]["stdout"] == char * wire.STDOUT_RECORD_CHARS  # not changed


def test_a_small_report_is_left_whole() -> None:
    body = final([full_step(0, "a")])
    assert bound_update(body) == (body, set())


def test_long_texts_of_a_step_are_cut() -> None:
    """An action name is any string of the document (up to 64 KiB)."""
    step = full_step(0, "a")
    step["action"] = SIX * wire.MAX_DOCUMENT_BYTES
    step["status_details"] = TWELVE * 10_000
    body = final([step], status_details=SIX * 100_000)
    bounded, _ = bound_update(body)
    assert size_of(wire.MSG_INVOCATION_UPDATE, bounded) <= wire.MAX_MESSAGE_BYTES
    assert len(bounded["steps"][0]["action"]) <= 256


@pytest.mark.parametrize("char", [*WIDE, "a"])
def test_cut_to_bytes_keeps_the_longest_prefix_that_fits(char: str) -> None:
    text = char * 1000
    for limit in (0, 5, 6, 11, 12, 13, 600, 10**6):
        cut = cut_to_bytes(text, limit)
        assert encoded_size(cut) - 2 <= limit
        assert cut == text or encoded_size(text[: len(cut) + 1]) - 2 > limit


def test_a_shortened_record_sends_its_stream_to_the_blob_store(tmp_path: Path) -> None:
    """24,000 control characters are 24,000 bytes of output (all in the record by size) but
    144,000 bytes escaped: with four such steps the record is shortened, and the stream,
    though small, must go to the blob store."""
    cmd = Journal(tmp_path / "commands").record("cmd-1", {"body": {}})
    assert cmd is not None
    cmd.output_dir.mkdir()
    steps = []
    for index in range(4):
        step = full_step(index, CONTROL)
        step["stderr"] = ""
        (cmd.output_dir / f"{index}.stdout").write_text(step["stdout"])
        steps.append(step)
    cmd.write("result.json", final(steps))
    result, _, outputs = to_report(cmd)
    assert size_of(wire.MSG_INVOCATION_UPDATE, result) <= wire.MAX_MESSAGE_BYTES
    assert outputs == [(i, "stdout") for i in range(4)]


@pytest.mark.parametrize("char", WIDE)
def test_an_agent_failure_report_and_a_node_event_fit(tmp_path: Path, char: str) -> None:
    reason = char * 1_000_000
    report = agent_failure("c" * 64, reason)
    assert size_of(wire.MSG_INVOCATION_UPDATE, report) <= wire.MAX_MESSAGE_BYTES
    (tmp_path / "state").mkdir()
    victim = tmp_path / "state" / "status.json"
    victim.write_text("{")
    event = quarantine(tmp_path / "state", victim, reason=reason, consequence=reason).event()
    assert len(encode(event)) <= wire.MAX_MESSAGE_BYTES


@pytest.mark.parametrize("char", WIDE)
def test_a_message_failure_event_fits(tmp_path: Path, char: str) -> None:
    from agent.backoff import Backoff
    from agent.execution.executor import Executor, RebootSettings
    from agent.execution.launcher import Launcher
    from agent.execution.settings import WorkerSettings

    async def scenario() -> list[Message]:
        outbox = Outbox(tmp_path / "outbox.db")
        executor = Executor(
            journal=Journal(tmp_path / "commands"),
            outbox=outbox,
            transport=None,
            launcher=Launcher(WorkerSettings(platform="Linux")),
            node_id="mi-0123456789abcdef0",
            reboot=RebootSettings(False, ("true",)),
            backoff=lambda: Backoff(0.01, 0.02),
        )
        message = {"id": char * 10_000, "type": char * 10_000, "body": {"command_id": char}}
        await executor.report_message_failure(message, char * 1_000_000)
        try:
            return await outbox.peek(10)
        finally:
            outbox.close()

    [event] = asyncio.run(scenario())
    assert len(encode(event)) <= wire.MAX_MESSAGE_BYTES


@pytest.mark.parametrize("char", WIDE)
def test_a_heartbeat_fits_on_a_host_with_thousands_of_addresses(
    monkeypatch: pytest.MonkeyPatch, char: str
) -> None:
    import socket
    from types import SimpleNamespace

    import psutil

    addresses = {
        f"eth{n}": [SimpleNamespace(family=socket.AF_INET6, address=f"2001:db8::{n:x}:{m:x}")]
        for n in range(200)
        for m in range(50)
    }
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addresses)
    monkeypatch.setattr(socket, "gethostname", lambda: char * 100_000)
    monkeypatch.setattr(facts, "platform_name_version", lambda: (char * 10**5, char * 10**5))
    body = facts.collect()
    body["outbox_depth"], body["outbox_dead"] = 10**9, 10**9
    assert size_of(wire.MSG_HEARTBEAT, body) <= wire.MAX_MESSAGE_BYTES
    assert len(body["ip_addresses"]) == facts.MAX_ADDRESSES
