"""`corral audit list|export|verify`: times, paging, byte-exact export, and verifying real
exports (made by the in-process server) offline, intact and tampered with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.audit import parse_time
from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile
from control_plane.security.audit_chain import AuditKey, key_id, load_public_key, public_key_pem
from tests.unit.conftest import Api, FakeClock, RunApi

URL = "https://corral.test:8443"
KEY_URL = f"{URL}/v1/audit/public-key"
Handler = Callable[[httpx.Request], httpx.Response]
T0 = 1_796_119_200.0  # 2026-12-01T10:00:00Z


@pytest.fixture(autouse=True)
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    return path


@pytest.fixture
def logged_in(config: Path, tmp_path: Path) -> None:
    save_profile("dev", url=URL, token="crl_t", ca_file=str(tmp_path / "ca.pem"), path=config)


def run(handler: Handler, *args: str) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(handler))
    return CliRunner().invoke(cli, list(args), obj=runtime)


class Server:
    def __init__(self, *replies: httpx.Response) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def params(self, n: int = 0) -> dict[str, str]:
        return dict(self.requests[n].url.params)


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", T0 - 3600),
        ("7d", T0 - 7 * 86400),
        ("90", T0 - 90),
        ("2026-12-01T10:00:00Z", T0),
        ("2026-12-01t10:00:00z", T0),
        ("2026-12-01T12:00:00+02:00", T0),
        ("2026-12-01 09:30:00.5-00:30", T0 + 0.5),
    ],
)
def test_parse_time_takes_a_duration_ago_or_rfc_3339(text: str, expected: float) -> None:
    assert parse_time(text, now=T0) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("yesterday", "neither a duration ago"),
        ("2026-12-01T10:00:00", "has no time zone"),
        ("2026-12-01", "has no time zone"),
        ("2026-13-01T10:00:00Z", "neither a duration ago"),
        ("100000w", "out of range"),
        ("9999-01-01T00:00:00Z", "out of range"),
    ],
)
def test_parse_time_refuses_what_it_cannot_read(text: str, fragment: str) -> None:
    with pytest.raises(click.BadParameter, match=fragment):
        parse_time(text, now=T0)


# list ---------------------------------------------------------------------------------------


def entry(seq: int, **fields: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "time": T0 + seq,
        "identity_type": "token",
        "identity_id": "tok-1",
        "identity_name": "alice",
        "source_ip": "10.0.0.7",
        "action": "commands:Send",
        "resource": "node/mi-1",
        "request": {},
        "outcome": "allowed",
        "error": None,
        **fields,
    }


def page(entries: list[dict[str, Any]], cursor: str | None) -> httpx.Response:
    return httpx.Response(
        200, json={"entries": entries, "next_cursor": cursor, "next_token": cursor}
    )


def test_list_sends_every_filter_as_the_api_expects(logged_in: None) -> None:
    server = Server(page([], None))
    args = ["--identity", "alice", "--action", "commands:*", "--resource", "node/*"]
    before = time.time()
    result = run(
        server, "audit", "list", "--since", "1970-01-02T00:00:00Z", "--until", "1h",
        *args, "--outcome", "denied", "--limit", "5",
    )  # fmt: skip
    after = time.time()

    assert result.exit_code == 0, result.output
    assert server.requests[0].url.path == "/v1/audit"
    params = server.params()
    assert before - 3600 <= float(params.pop("until")) <= after - 3600
    assert params == {
        "since": "86400.0",
        "identity": "alice",
        "action": "commands:*",
        "resource": "node/*",
        "outcome": "denied",
        "limit": "5",
    }


def test_list_table_columns(logged_in: None) -> None:
    rows = [
        entry(2, identity_name=None, identity_id="mi-0123", outcome="error", error="boom"),
        entry(1),
    ]
    result = run(Server(page(rows, None)), "audit", "list")

    assert result.exit_code == 0, result.output
    header, _rule, first, second = result.stdout.splitlines()
    assert header.split() == [
        "time", "identity", "source_ip", "action", "resource", "outcome", "error",
    ]  # fmt: skip
    assert first.split() == [
        "2026-12-01T10:00:02.000Z", "mi-0123", "10.0.0.7", "commands:Send", "node/mi-1", "error",
        "boom",
    ]  # fmt: skip
    assert second.split()[:2] == ["2026-12-01T10:00:01.000Z", "alice"]
    assert second.split()[-1] == "-"


def test_list_follows_the_cursor_up_to_the_limit(logged_in: None) -> None:
    server = Server(
        page([entry(9), entry(8)], "8"),
        page([entry(7), entry(6)], "6"),
        page([entry(5)], "5"),
    )
    result = run(server, "audit", "list", "--limit", "5", "-o", "json")

    assert result.exit_code == 0, result.output
    assert [e["seq"] for e in json.loads(result.stdout)] == [9, 8, 7, 6, 5]
    asked = [(p.get("next_token"), p["limit"]) for p in map(server.params, range(3))]
    assert asked == [(None, "5"), ("8", "3"), ("6", "1")]
    assert "more match (raise --limit)" in result.stderr


def test_list_stops_when_the_server_has_no_more(logged_in: None) -> None:
    server = Server(page([entry(2)], "2"), page([entry(1)], None))
    result = run(server, "audit", "list", "-o", "json")
    assert [e["seq"] for e in json.loads(result.stdout)] == [2, 1]
    assert len(server.requests) == 2 and result.stderr == ""


def test_list_asks_for_pages_of_at_most_1000(logged_in: None) -> None:
    server = Server(page([entry(1)], None))
    run(server, "audit", "list", "--limit", "2500")
    assert server.params()["limit"] == "1000"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--since", "last week"], "--since"),
        (["--until", "2026-12-01T10:00:00"], "has no time zone"),
        (["--since", "1h", "--until", "2h"], "the start is after the end"),
        (["--outcome", "maybe"], "--outcome"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_list_bad_usage_exits_2_before_sending(
    logged_in: None, args: list[str], fragment: str
) -> None:
    server = Server(page([], None))
    assert fragment in usage_error(run(server, "audit", "list", *args))
    assert server.requests == []


def test_list_reports_a_response_without_entries(logged_in: None) -> None:
    result = run(Server(httpx.Response(200, json={"nodes": []})), "audit", "list")
    assert result.exit_code == 1
    assert "without the 'entries' list" in result.stderr


# real exports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    data: bytes
    public_pem: str

    def lines(self) -> list[str]:
        return self.data.decode().splitlines(keepends=True)


@pytest.fixture
def real_export(run_api: RunApi, clock: FakeClock) -> Export:
    """An export from the real server: tokens made and refused, two signed checkpoints."""

    async def scenario(api: Api) -> Export:
        async def create(name: str, headers: dict[str, str], status: int) -> dict[str, Any]:
            answer = await api.client.post(
                "/v1/tokens", json={"name": name, "role": "viewer"}, headers=headers
            )
            assert answer.status_code == status, answer.text
            clock.advance(60)
            created: dict[str, Any] = answer.json()
            return created

        viewer = await create("viewer", api.admin, 201)
        await create("sneaky", {"authorization": f"Bearer {viewer['secret']}"}, 403)
        await api.cp.audit.sign_checkpoint()
        for n in range(3):
            await create(f"t{n}", api.admin, 201)
        await api.cp.audit.sign_checkpoint()
        await create("last", api.admin, 201)  # after the last checkpoint
        export = await api.client.get("/v1/audit/export", headers=api.admin)
        key = await api.client.get("/v1/audit/public-key", headers=api.admin)
        assert export.status_code == key.status_code == 200
        return Export(export.content, key.text)

    result: Export = run_api(scenario)
    return result


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def no_server(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


def edit(lines: list[str], seq: int, **changes: Any) -> str:
    out = []
    for line in lines:
        obj = json.loads(line)
        if obj["type"] == "entry" and obj["seq"] == seq:
            obj.update(changes)
            line = json.dumps(obj, separators=(",", ":")) + "\n"
        out.append(line)
    return "".join(out)


def test_verify_file_of_a_good_export_with_the_key_file(
    real_export: Export, tmp_path: Path
) -> None:
    export = write(tmp_path, "audit.jsonl", real_export.data)
    key = write(tmp_path, "audit.pub", real_export.public_pem)
    raw_key = load_public_key(real_export.public_pem.encode())

    result = run(no_server, "audit", "verify", "--file", export, "--public-key", key)

    assert result.exit_code == 0, result.output
    entries = sum('"type":"entry"' in line for line in real_export.lines())
    assert result.stdout == (
        f"audit chain OK: {entries} entries, 2 signed checkpoints\n"
        f"public key: {key} (key id {key_id(raw_key)})\n"
    )
    assert result.stderr == ""


def test_verify_file_finds_the_one_edited_line(real_export: Export, tmp_path: Path) -> None:
    edited = edit(real_export.lines(), 3, identity_name="someone else")
    export = write(tmp_path, "audit.jsonl", edited)
    key = write(tmp_path, "audit.pub", real_export.public_pem)

    result = run(no_server, "audit", "verify", "--file", export, "--public-key", key)

    assert result.exit_code == 1, result.output
    first = result.stdout.splitlines()[0]
    assert first == "audit chain BROKEN at entry 3: hash does not match its content (edited?)"
    as_json = run(no_server, "audit", "verify", "--file", export, "--public-key", key, "-o", "json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["first_bad_seq"], report["key_source"]) == (False, 3, "file")


def test_verify_file_catches_a_deleted_line(real_export: Export, tmp_path: Path) -> None:
    lines = real_export.lines()
    export = write(tmp_path, "a.jsonl", "".join(line for line in lines if '"seq":2,' not in line))
    key = write(tmp_path, "audit.pub", real_export.public_pem)
    result = run(no_server, "audit", "verify", "--file", export, "--public-key", key)
    assert result.exit_code == 1
    assert result.stdout.startswith("audit chain BROKEN at entry 3: entry 2 missing (deleted?)")


def test_verify_file_refuses_checkpoints_signed_by_another_key(
    real_export: Export, tmp_path: Path
) -> None:
    export = write(tmp_path, "audit.jsonl", real_export.data)
    other = write(tmp_path, "other.pub", public_key_pem(AuditKey.generate().public_key))
    result = run(no_server, "audit", "verify", "--file", export, "--public-key", other)
    assert result.exit_code == 1
    assert "not the trusted key" in result.stdout.splitlines()[0]


def test_verify_file_fetches_the_key_from_the_server_when_logged_in(
    logged_in: None, real_export: Export, tmp_path: Path
) -> None:
    server = Server(httpx.Response(200, text=real_export.public_pem))
    export = write(tmp_path, "audit.jsonl", real_export.data)

    result = run(server, "audit", "verify", "--file", export)

    assert result.exit_code == 0, result.output
    assert [r.url.path for r in server.requests] == ["/v1/audit/public-key"]
    assert f"public key: fetched from {KEY_URL} (key id " in result.stdout


def test_verify_file_without_any_key_warns_that_nothing_vouches_for_the_signer(
    real_export: Export, tmp_path: Path
) -> None:
    export = write(tmp_path, "audit.jsonl", real_export.data)  # and no profile
    result = run(no_server, "audit", "verify", "--file", export)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "public key: none trusted"
    assert result.stderr.startswith("warning: no trusted public key")


def test_verify_file_says_how_to_go_offline_when_the_server_is_unreachable(
    logged_in: None, real_export: Export, tmp_path: Path
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    result = run(refused, "audit", "verify", "--file", write(tmp_path, "a", real_export.data))
    assert result.exit_code == 1
    assert "give --public-key audit.pub to verify offline" in result.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "audit chain BROKEN: empty file: not a Corral audit export"),
        (b"hello\n", "audit chain BROKEN: line 1: not JSON"),
    ],
)
def test_verify_file_of_something_else(tmp_path: Path, content: bytes, reason: str) -> None:
    key = write(tmp_path, "audit.pub", public_key_pem(AuditKey.generate().public_key))
    result = run(
        no_server, "audit", "verify", "--file", write(tmp_path, "x", content), "--public-key", key
    )
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == reason


def test_verify_bad_usage_exits_2(real_export: Export, tmp_path: Path) -> None:
    export = write(tmp_path, "audit.jsonl", real_export.data)
    bad_key = write(
        tmp_path, "bad.pub", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    cases = [
        (["--file", export, "--public-key", bad_key], "is not an Ed25519 public key"),
        (["--file", export, "--from", "1h"], "--from/--to do not go with --file"),
        (["--public-key", bad_key], "--public-key goes with --file"),
        (["--file", str(tmp_path / "missing.jsonl")], "does not exist"),
        (["--from", "soon"], "--from"),
        (["--from", "1h", "--to", "2h"], "the start is after the end"),
    ]
    for args, fragment in cases:
        assert fragment in usage_error(run(no_server, "audit", "verify", *args)), args


def test_verify_file_needs_no_server_extra(real_export: Export, tmp_path: Path) -> None:
    """The base install (no sqlalchemy, fastapi, cryptography ...) can verify an export."""
    export = write(tmp_path, "audit.jsonl", real_export.data)
    key = write(tmp_path, "audit.pub", real_export.public_pem)
    blocked = (
        "sqlalchemy", "fastapi", "starlette", "pydantic", "cryptography", "uvicorn",
        "alembic", "aiosqlite",
    )  # fmt: skip
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # import fails as if not installed\n"
        "from control_plane.cli.main import cli\n"
        f"sys.exit(cli.main(['audit', 'verify', '--file', {export!r}, '--public-key', {key!r}],"
        " standalone_mode=False))\n"
    )
    env = {**os.environ, "CORRAL_CONFIG": str(tmp_path / "none.toml")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audit chain OK: ")


# verify (online) ----------------------------------------------------------------------------


def verified(ok: bool) -> dict[str, Any]:
    return {
        "ok": ok,
        "checked": 40,
        "checkpoints": 3,
        "first_bad_seq": None if ok else 14,
        "reason": "40 entries (1..40) and 3 checkpoints verified"
        if ok
        else "entry 14: hash does not match its content (edited?)",
    }


def test_verify_asks_the_server(logged_in: None) -> None:
    server = Server(httpx.Response(200, json=verified(True)))

    result = run(server, "audit", "verify", "--from", "2026-12-01T10:00:00Z", "--to", "1s")

    assert result.exit_code == 0, result.output
    assert result.stdout == "audit chain OK: 40 entries, 3 signed checkpoints\n"
    assert server.requests[0].url.path == "/v1/audit/verify"
    params = server.params()
    assert float(params["since"]) == T0 and float(params["until"]) > T0


def test_verify_broken_exits_1_and_names_the_entry(logged_in: None) -> None:
    server = Server(httpx.Response(200, json=verified(False)))

    result = run(server, "audit", "verify")

    assert result.exit_code == 1
    assert server.params() == {}
    assert result.stdout == (
        "audit chain BROKEN at entry 14: hash does not match its content (edited?)\n"
    )
    as_json = run(server, "audit", "verify", "-o", "json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == verified(False)


# export -------------------------------------------------------------------------------------


def test_export_streams_the_servers_bytes_unchanged(logged_in: None, real_export: Export) -> None:
    server = Server(httpx.Response(200, content=real_export.data))
    before = time.time()

    result = run(server, "audit", "export", "--since", "1h", "--format", "jsonl")

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == real_export.data
    assert server.requests[0].url.path == "/v1/audit/export"
    since = float(server.params()["since"])
    assert before - 3600 <= since <= time.time() - 3600


def test_export_to_a_file(logged_in: None, real_export: Export, tmp_path: Path) -> None:
    server = Server(httpx.Response(200, content=real_export.data))
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "audit.jsonl"

    result = run(server, "audit", "export", "--file", str(path))

    assert result.exit_code == 0, result.output
    assert path.read_bytes() == real_export.data
    assert server.params() == {}
    end = json.loads(real_export.lines()[-1])
    assert result.stdout == (
        f"exported {end['entries']} entries and {end['checkpoints']} checkpoints to {path}\n"
    )
    assert os.listdir(path.parent) == ["audit.jsonl"]


def test_an_export_cut_short_is_an_error_and_leaves_no_file(
    logged_in: None, real_export: Export, tmp_path: Path
) -> None:
    cut = "".join(real_export.lines()[:-1]).encode()
    (tmp_path / "out").mkdir()
    path = tmp_path / "out" / "audit.jsonl"

    result = run(Server(httpx.Response(200, content=cut)), "audit", "export", "--file", str(path))

    assert result.exit_code == 1
    assert result.stderr == "error: the export stopped before its end line: it is incomplete\n"
    assert os.listdir(path.parent) == []


def test_export_refused_by_the_server(logged_in: None) -> None:
    error = {"error": {"code": "forbidden", "message": "not allowed: audit:Export on audit/*"}}
    result = run(Server(httpx.Response(403, json=error)), "audit", "export")
    assert result.exit_code == 1
    assert result.stderr == "error: not allowed: audit:Export on audit/* (forbidden)\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--format", "csv"], "--format"),
        (["--since", "now-ish"], "--since"),
        (["--since", "1h", "--until", "2h"], "the start is after the end"),
    ],
)
def test_export_bad_usage_exits_2(logged_in: None, args: list[str], fragment: str) -> None:
    server = Server(httpx.Response(200, content=b""))
    assert fragment in usage_error(run(server, "audit", "export", *args))
    assert server.requests == []
