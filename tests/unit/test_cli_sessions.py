"""`corral session` and `corral sessions` without a server: ssh's `~.` escape over chunks, the
terminal put back after raw mode, a recording replayed to exactly its output bytes with its
pauses, the records listed, shown and terminated and the asciicast export written (against a
stub transport), and bad arguments refused with one line before anything is sent."""

from __future__ import annotations

import json
import os
import pty
import termios
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from agent.sessions import recording
from control_plane.cli.main import cli
from control_plane.cli.session_terminal import EscapeFilter, raw_mode
from control_plane.cli.sessions import IDLE_LIMIT, play
from tests.unit.test_cli_nodes import profile, run  # noqa: F401 (profile: the fixture)

URL = "https://corral.test:8443"
SID = "s-0123456789abcdef0123"
NODE = "mi-0123456789abcdef0"
RECORD: dict[str, Any] = {
    "session_id": SID,
    "node_id": NODE,
    "owner": {"token_id": "tok-1", "name": "alice"},
    "document": "Corral-StartShell",
    "session_type": "Standard_Stream",
    "run_as": "ops",
    "status": "Terminated",
    "reason": "ticket 42",
    "started_at": "2026-11-28T03:45:00Z",
    "ended_at": "2026-11-28T03:47:00Z",
    "duration_seconds": 120.0,
    "exit_status": 0,
    "recording": {"bytes": 99, "sha256": "ab" * 32, "input_logged": False},
}
Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Answers each request with ``reply(request)`` and remembers what it was asked."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def a_recording() -> bytes:
    events = [
        recording.Event(0.0, recording.RESIZE, b"80x24"),
        recording.Event(0.25, recording.OUTPUT, b"$ "),
        recording.Event(1.0, recording.INPUT, b"ls\r"),
        recording.Event(1.5, recording.OUTPUT, b"ls\r\n\xe2\x82"),  # a split UTF-8 character
        recording.Event(9.5, recording.OUTPUT, b"\xac a.txt\r\n"),  # after 8 s idle
        recording.Event(9.5, recording.OUTPUT, b"$ "),
    ]
    return b"".join(recording.encode(e) for e in events)


# The escape ----------------------------------------------------------------------------------


def feed_all(chunks: list[bytes]) -> tuple[bytes, bool]:
    escape = EscapeFilter()
    sent = b""
    for chunk in chunks:
        data, leave = escape.feed(chunk)
        sent += data
        if leave:
            return sent, True
    return sent, False


@pytest.mark.parametrize(
    ("chunks", "sent", "leave"),
    [
        ([b"~."], b"", True),  # the very first input
        ([b"ls\r~.rest"], b"ls\r", True),  # after Enter; what follows is not sent
        ([b"ls\n", b"~", b"."], b"ls\n", True),  # split across three reads
        ([b"echo a~.\r"], b"echo a~.\r", False),  # not at the start of a line
        ([b"~~.\r"], b"~.\r", False),  # ~~ sends one ~, and the line has begun
        ([b"\r~", b"~"], b"\r~", False),
        ([b"~x\r~?"], b"~x\r~?", False),  # another byte after ~ goes with it
        ([b"ab\r~"], b"ab\r", False),  # a ~ at line start is held for the next byte
        ([b"~\r~."], b"~\r", True),  # ~ then Enter: sent, and a new line starts
        ([b"x", b"~."], b"x~.", False),
    ],
)
def test_escape_is_recognised_at_line_start_only(
    chunks: list[bytes], sent: bytes, leave: bool
) -> None:
    assert feed_all(chunks) == (sent, leave)


def test_raw_mode_is_restored_when_the_block_fails() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), raw_mode(slave):
            inside = termios.tcgetattr(slave)
            assert not inside[3] & termios.ECHO and not inside[3] & termios.ICANON
            raise RuntimeError("boom")
        assert termios.tcgetattr(slave) == before
        assert before[3] & termios.ECHO  # the pty starts cooked: the test can fail
    finally:
        os.close(master)
        os.close(slave)


# Replay -------------------------------------------------------------------------------------


def test_replay_at_speed_0_writes_exactly_the_output_bytes() -> None:
    data = a_recording()
    server = Server(lambda r: httpx.Response(200, content=data))
    result = run(server, "sessions", "replay", SID, "--speed", "0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == recording.output_bytes(data)
    assert result.stdout_bytes == b"$ ls\r\n\xe2\x82\xac a.txt\r\n$ "
    assert server.requests[0].url.path == f"/v1/sessions/{SID}/recording"


def test_replay_pauses_are_divided_by_speed_and_idle_is_capped() -> None:
    pauses: list[float] = []
    out = BytesIO()
    play(recording.events(a_recording()), out, speed=2.0, sleep=pauses.append)
    # 0.25 s before the prompt, 1.25 s to the echo (input does not count), 8 s capped at 2.
    assert pauses == [0.125, 0.625, IDLE_LIMIT / 2]
    assert out.getvalue() == recording.output_bytes(a_recording())
    none: list[float] = []
    play(recording.events(a_recording()), BytesIO(), speed=0, sleep=none.append)
    assert none == []


def test_replay_of_a_broken_recording_is_one_line() -> None:
    broken = a_recording()[:-1]
    result = run(Server(lambda r: httpx.Response(200, content=broken)), "sessions", "replay", SID)
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"error: the recording of {SID} does not parse: a truncated event at byte 90\n"
    )


# Records -------------------------------------------------------------------------------------


def test_list_asks_for_the_state_and_node_and_prints_a_row_each() -> None:
    server = Server(lambda r: httpx.Response(200, json={"sessions": [RECORD]}))
    result = run(server, "sessions", "list", "--state", "history", "--node", NODE)
    assert result.exit_code == 0, result.stderr
    header, _rule, row = result.stdout.splitlines()
    assert header.split() == [
        "session_id", "node_id", "status", "owner", "document", "run_as", "started_at",
        "duration", "exit",
    ]  # fmt: skip
    assert row.split() == [
        SID, NODE, "Terminated", "alice", "Corral-StartShell", "ops", "2026-11-28T03:45:00Z",
        "120.0", "0",
    ]  # fmt: skip
    params = server.requests[0].url.params
    assert params["state"] == "History" and params["node_id"] == NODE


def test_list_json_and_max_items() -> None:
    server = Server(
        lambda r: httpx.Response(200, json={"sessions": [RECORD], "next_token": "more"})
    )
    result = run(server, "sessions", "list", "--output", "json", "--max-items", "1")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [RECORD]
    assert server.requests[0].url.params["state"] == "Active"
    assert server.requests[0].url.params["limit"] == "1" and len(server.requests) == 1


def test_show_prints_the_record() -> None:
    server = Server(lambda r: httpx.Response(200, json=RECORD))
    result = run(server, "sessions", "show", SID, "--output", "json")
    assert json.loads(result.stdout) == RECORD
    table = run(server, "sessions", "show", SID).stdout.splitlines()
    assert table[2].split() == ["session_id", SID]
    assert any(line.split()[:2] == ["owner", "name=alice,"] for line in table)


def test_terminate_posts_and_says_the_status() -> None:
    server = Server(lambda r: httpx.Response(200, json=RECORD))
    result = run(server, "sessions", "terminate", SID)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"session {SID}: Terminated\n"
    request = server.requests[0]
    assert request.method == "POST" and request.url.path == f"/v1/sessions/{SID}/terminate"


def test_an_api_refusal_is_one_line() -> None:
    error = {"error": {"code": "not_found", "message": f"no session {SID}"}}
    result = run(Server(lambda r: httpx.Response(404, json=error)), "sessions", "show", SID)
    assert result.exit_code == 1
    assert result.stderr == f"error: no session {SID} (not_found)\n"


CAST = '{"version": 2, "width": 80, "height": 24}\n[0.25, "o", "$ "]\n'


def test_export_writes_the_servers_asciicast_to_a_file_or_stdout(tmp_path: Path) -> None:
    server = Server(lambda r: httpx.Response(200, text=CAST))
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "s.cast"
    result = run(
        server, "sessions", "export", SID, "--format", "asciicast", "--output", str(target)
    )
    assert result.exit_code == 0, result.stderr
    assert target.read_text() == CAST and result.stdout == ""
    assert list(target.parent.iterdir()) == [target]
    assert server.requests[0].url.params["format"] == "asciicast"
    assert run(server, "sessions", "export", SID, "--format", "asciicast").stdout == CAST


def test_a_failed_export_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "s.cast"
    target.write_text("old")
    error = {"error": {"code": "not_found", "message": "no recording"}}
    result = run(Server(lambda r: httpx.Response(404, json=error)), "sessions", "export", SID,
                 "--output", str(target))  # fmt: skip
    assert result.exit_code == 1 and result.stderr == "error: no recording (not_found)\n"
    assert target.read_text() == "old" and list(target.parent.iterdir()) == [target]


# Bad arguments --------------------------------------------------------------------------------


def nothing(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"nothing may be sent: {request.url}")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--remote-port", "0", "--local-port", "1"], "'--remote-port': 0 is not in the range"),
        (["--remote-port", "65536", "--local-port", "1"], "'--remote-port': 65536 is not"),
        (["--remote-port", "22", "--local-port", "70000"], "'--local-port': 70000 is not"),
        (["--remote-port", "22", "--local-port", "-1"], "'--local-port': -1 is not"),
        (["--remote-port", "ssh", "--local-port", "1"], "'--remote-port': 'ssh' is not"),
        (["--local-port", "1"], "Missing option '--remote-port'"),
        (["--remote-port", "22", "--local-port", "1", "--bogus"], "No such option '--bogus'"),
    ],
)
def test_port_forward_arguments_are_checked(args: list[str], words: str) -> None:
    assert words in usage_error(run(nothing, "session", "port-forward", NODE, *args))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["session", "start", NODE, "--param", "noequals"], "'noequals' must be NAME=VALUE"),
        (["session", "start", NODE, "--bogus"], "No such option '--bogus'"),
        (["sessions", "show", "s-123"], "'s-123' is not a session id"),
        (["sessions", "replay", SID, "--speed", "-1"], "'--speed': -1.0 is not in the range"),
        (["sessions", "export", SID, "--format", "json"], "'--format': 'json' is not"),
        (["sessions", "list", "--state", "gone"], "'--state': 'gone' is not one of"),
    ],
)
def test_other_bad_arguments_are_one_line(args: list[str], words: str) -> None:
    assert words in usage_error(run(nothing, *args))


def test_a_busy_local_port_fails_before_a_session_exists() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run(nothing, "session", "port-forward", NODE, "--remote-port", "22",
                     "--local-port", str(port))  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_both_groups_are_in_the_completion() -> None:
    from click.shell_completion import ShellComplete

    complete = ShellComplete(cli, {}, "corral", "_CORRAL_COMPLETE")
    names = {c.value for c in complete.get_completions([], "sess")}
    assert names == {"session", "sessions"}
