"""`corral params` against the real control plane, in process: what the commands send, what
they print, the usage errors that send nothing, and that no secret is echoed where it should
not be.

The app runs on its own event loop in a thread (``live``); the CLI, synchronous, reaches it
through :class:`Bridge`, a transport that hands each request over to that loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile
from tests.unit.conftest import Api, RunApi, ServerDir

URL = "https://corral.test"
SECRET = "pa55-w0rd-XYZZY-1234"
_HOP_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class Bridge(httpx.BaseTransport):
    """A synchronous transport that sends each request to the app on the server's loop."""

    def __init__(self, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        content = request.read()

        async def send() -> httpx.Response:
            return await self._client.request(
                request.method, str(request.url), headers=request.headers, content=content
            )

        answer = asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout=60)
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_HEADERS]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    def sent(self, method: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method]


@dataclass
class Live:
    bridge: Bridge
    api: Api
    config: Path

    def run(self, *args: str, stdin: str | bytes | None = None) -> Result:
        runtime = Runtime(transport=self.bridge)
        return CliRunner().invoke(cli, list(args), obj=runtime, input=stdin)

    def ok(self, *args: str, stdin: str | bytes | None = None) -> Result:
        result = self.run(*args, stdin=stdin)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json").stdout)


@pytest.fixture
def live(
    run_api: RunApi, server_dir: ServerDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Live]:
    """The control plane serving in a thread until the test ends; the CLI logged in as admin."""
    started = threading.Event()
    state: dict[str, Any] = {}
    failures: list[BaseException] = []

    async def serve(api: Api) -> None:
        state.update(api=api, loop=asyncio.get_running_loop(), stop=asyncio.Event())
        started.set()
        await state["stop"].wait()

    def target() -> None:
        try:
            run_api(serve)
        except BaseException as exc:  # re-raised in the test's thread
            failures.append(exc)
            started.set()

    thread = threading.Thread(target=target, name="control-plane", daemon=True)
    thread.start()
    assert started.wait(60), "the control plane did not start"
    if failures:
        raise failures[0]
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    ca_file = str(tmp_path / "unused-ca.pem")  # the bridge replaces TLS
    save_profile("admin", url=URL, token=server_dir.admin_token, ca_file=ca_file, path=config)
    api: Api = state["api"]
    try:
        yield Live(Bridge(api.client, state["loop"]), api, config)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(60)
    if failures:
        raise failures[0]


def token_profile(live: Live, name: str, *how: str) -> None:
    """Add profile ``name``: a new token made with ``how`` (``--role operator`` ...)."""
    made = live.json("tokens", "create", "--name", name, *how)
    save_profile(
        name, url=URL, token=made["secret"], ca_file="unused", make_current=False, path=live.config
    )


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def put_body(live: Live) -> Any:
    return json.loads(live.bridge.sent("PUT")[-1].content)


# put ------------------------------------------------------------------------------------------


def test_put_from_value_prints_name_version_type_and_tier(live: Live) -> None:
    result = live.ok("params", "put", "/app/prod/db-url", "--value", "postgres://a")

    assert result.stdout == "/app/prod/db-url: version 1 (String, Standard)\n"
    assert put_body(live) == {
        "name": "/app/prod/db-url",
        "value": "postgres://a",
        "type": "String",
        "overwrite": False,
        "data_type": "text",
    }
    again = live.ok("params", "put", "/app/prod/db-url", "--value", "postgres://b", "--overwrite")
    assert again.stdout == "/app/prod/db-url: version 2 (String, Standard)\n"


def test_put_from_stdin_drops_one_trailing_newline(live: Live) -> None:
    live.ok("params", "put", "/app/key", "--value", "-", stdin="line 1\nline 2\n\n")

    assert live.json("params", "get", "/app/key")["value"] == "line 1\nline 2\n"


def test_put_from_a_file_keeps_it_as_is(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    path.write_bytes(b"-----BEGIN-----\nabc\n-----END-----\n")
    live.ok("params", "put", "/app/cert", "--value-file", str(path), "--type", "SecureString")

    got = live.ok("params", "get", "/app/cert", "--decrypt", "--value-only").stdout
    assert got == "-----BEGIN-----\nabc\n-----END-----\n\n"


def test_put_sends_every_option(live: Live, tmp_path: Path) -> None:
    policies = [{"Type": "NoChangeNotification", "Version": "1.0",
                 "Attributes": {"After": "30", "Unit": "Days"}}]  # fmt: skip
    policy_file = tmp_path / "policies.json"
    policy_file.write_text(json.dumps(policies))
    result = live.ok(
        "params", "put", "/app/prod/list", "--value", "a,b,c", "--type", "StringList",
        "--description", "three letters", "--tier", "Advanced", "--allowed-pattern", "[a-z,]+",
        "--policies", str(policy_file), "--tag", "env=prod", "--tag", "team=web",
    )  # fmt: skip

    assert result.stdout == "/app/prod/list: version 1 (StringList, Advanced)\n"
    body = put_body(live)
    assert body["policies"] == policies
    assert body["tags"] == {"env": "prod", "team": "web"}
    shown = live.json("params", "list")[0]
    assert (shown["description"], shown["allowed_pattern"]) == ("three letters", "[a-z,]+")
    assert (shown["tier"], shown["tags"]) == ("Advanced", {"env": "prod", "team": "web"})


def test_an_overwrite_without_type_keeps_a_secure_string_secure(live: Live) -> None:
    live.ok("params", "put", "/db/pass", "--value", SECRET, "--type", "SecureString")
    result = live.ok("params", "put", "/db/pass", "--value", "n3w-" + SECRET, "--overwrite")

    assert result.stdout == "/db/pass: version 2 (SecureString, Standard)\n"
    assert live.json("params", "get", "/db/pass")["value"] == "****"


def test_an_overwrite_that_cannot_read_the_current_type_asks_for_type(
    live: Live, tmp_path: Path
) -> None:
    live.ok("params", "put", "/db/pass", "--value", SECRET, "--type", "SecureString")
    policy = tmp_path / "put-only.json"
    policy.write_text(json.dumps({"Version": "2026-01-01", "Statement": [
        {"Effect": "Allow", "Action": ["parameters:Put"], "Resource": "*"}]}))  # fmt: skip
    token_profile(live, "writer", "--policy", str(policy))
    overwrite = ("--profile", "writer", "params", "put", "/db/pass", "--overwrite")

    refused = live.run(*overwrite, "--value", "n3w-" + SECRET)
    assert refused.exit_code == 1 and refused.stderr.endswith(": give --type\n")
    assert SECRET not in refused.stderr
    live.ok(*overwrite, "--value", "n3w-" + SECRET, "--type", "SecureString")
    assert live.json("params", "get", "/db/pass")["version"] == 2


@pytest.mark.parametrize(
    "sources",
    [
        ["--value", "a", "--value-file", "f"],
        ["--value", "-", "--value-file", "f"],
        [],
    ],
)
def test_the_value_must_come_from_exactly_one_source(live: Live, sources: list[str]) -> None:
    message = usage_error(live.run("params", "put", "/app/x", *sources))

    assert "--value V, --value - (stdin) or --value-file F" in message
    assert live.bridge.requests == []


def test_a_policies_file_that_is_not_json_names_the_file_line_and_column(
    live: Live, tmp_path: Path
) -> None:
    path = tmp_path / "policies.json"
    path.write_text('[\n  {"Type": "Expiration",\n   "Version" "1.0"}\n]\n')
    args = ("params", "put", "/app/x", "--value", "v", "--tier", "Advanced", "--policies")

    message = usage_error(live.run(*args, str(path)))
    assert f"{path} is not valid JSON: line 3 column 14" in message

    path.write_text('{"Type": "Expiration"}')
    assert "must hold a JSON list" in usage_error(live.run(*args, str(path)))
    assert "cannot read" in usage_error(live.run(*args, str(tmp_path / "missing.json")))
    assert live.bridge.requests == []


@pytest.mark.parametrize(
    ("policies", "tier", "fragment"),
    [
        ([{"Type": "Expiration", "Version": "1.0",
           "Attributes": {"Timestamp": "2001-01-01T00:00:00Z"}}], "Advanced", "not in the future"),
        ([{"Type": "NoChangeNotification", "Version": "1.0",
           "Attributes": {"After": "30", "Unit": "Days"}}], "Standard", "Advanced tier"),
        ([{"Type": "Shred", "Version": "1.0"}], "Advanced", "policy 1"),
    ],
)  # fmt: skip
def test_policies_the_server_would_refuse_are_refused_before_sending(
    live: Live, tmp_path: Path, policies: list[Any], tier: str, fragment: str
) -> None:
    path = tmp_path / "policies.json"
    path.write_text(json.dumps(policies))
    result = live.run(
        "params", "put", "/app/x", "--value", "v", "--tier", tier, "--policies", str(path)
    )

    assert fragment in usage_error(result)
    assert live.bridge.requests == []


def test_refusals_of_a_secure_string_never_repeat_its_value(live: Live) -> None:
    secure = ("params", "put", "/db/pass", "--value", SECRET, "--type", "SecureString")
    # refused here, before sending: a value failing its allowed pattern, a value with {{ }}
    refused = usage_error(live.run(*secure, "--allowed-pattern", "[0-9]+"))
    assert "does not match the allowed pattern" in refused and SECRET not in refused
    braces = live.run(
        "params", "put", "/db/pass", "--value", "{{" + SECRET, "--type", "SecureString"
    )
    assert "{{" in usage_error(braces) and SECRET not in braces.stderr
    assert live.bridge.requests == []
    # refused by the server: the name exists and --overwrite is missing
    live.ok(*secure)
    again = live.run(*secure)
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert SECRET not in again.stdout + again.stderr


def test_a_value_file_that_is_not_text_or_far_too_big_is_refused(
    live: Live, tmp_path: Path
) -> None:
    binary, big = tmp_path / "key.bin", tmp_path / "big.txt"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    big.write_text("x" * 100_000)
    put = ("params", "put", "/app/x", "--value-file")

    assert "is not UTF-8 text" in usage_error(live.run(*put, str(binary)))
    assert "larger than 64 KB" in usage_error(live.run(*put, str(big)))
    assert "larger than 64 KB" in usage_error(
        live.run("params", "put", "/app/x", "--value", "-", stdin="x" * 100_000)
    )
    assert "No such file" in usage_error(live.run(*put, str(tmp_path / "missing")))
    assert live.bridge.requests == []


def test_bad_names_and_values_are_usage_errors_before_sending(live: Live) -> None:
    assert "'aws' or 'ssm'" in usage_error(live.run("params", "put", "/aws/x", "--value", "v"))
    assert "empty" in usage_error(live.run("params", "put", "/app/x", "--value", ""))
    big = live.run("params", "put", "/app/x", "--value", "x" * 5000, "--tier", "Standard")
    assert "at most 4096" in usage_error(big)
    assert "'text'" in usage_error(
        live.run("params", "put", "/app/x", "--value", "v", "--data-type", "json")
    )
    assert live.bridge.requests == []


# get --------------------------------------------------------------------------------------------


def test_get_prints_a_key_value_block(live: Live) -> None:
    live.ok("params", "put", "/app/prod/db-url", "--value", "postgres://a")
    out = live.ok("params", "get", "/app/prod/db-url").stdout

    lines = [line.split(None, 1) for line in out.splitlines()[2:]]
    assert [k for k, _ in lines] == [
        "name", "type", "version", "labels", "last_modified_at", "last_modified_by", "value",
    ]  # fmt: skip
    assert dict(lines)["value"] == "postgres://a" and dict(lines)["labels"] == "-"


def test_get_of_an_older_version_shows_when_that_version_was_written(live: Live) -> None:
    live.ok("params", "put", "/app/v", "--value", "one")
    live.api.clock.advance(3600)
    live.ok("params", "put", "/app/v", "--value", "two", "--overwrite")
    latest, first = live.json("params", "get", "/app/v"), live.json("params", "get", "/app/v:1")
    assert first["version_created_at"] < latest["version_created_at"]

    out = live.ok("params", "get", "/app/v:1").stdout
    shown = dict(line.split(None, 1) for line in out.splitlines()[2:])
    assert shown["last_modified_at"] == first["version_created_at"]
    assert (shown["version"], shown["value"]) == ("1", "one")


def test_a_secure_string_is_masked_unless_decrypted(live: Live) -> None:
    live.ok("params", "put", "/db/pass", "--value", SECRET, "--type", "SecureString")

    masked = live.ok("params", "get", "/db/pass")
    assert SECRET not in masked.stdout and "****" in masked.stdout
    assert masked.stderr == "note: a SecureString value shown as ****: add --decrypt to see it\n"
    plain = live.ok("params", "get", "/db/pass", "--decrypt")
    assert SECRET in plain.stdout and plain.stderr == ""
    assert live.ok("params", "get", "/db/pass", "--decrypt", "--value-only").stdout == SECRET + "\n"
    assert live.json("params", "get", "/db/pass", "--decrypt")["value"] == SECRET


def test_without_get_decrypted_value_only_is_an_error_not_stars(live: Live) -> None:
    live.ok("params", "put", "/db/pass", "--value", SECRET, "--type", "SecureString")
    token_profile(live, "ops", "--role", "operator")  # not allowed parameters:GetDecrypted

    result = live.run("--profile", "ops", "params", "get", "/db/pass", "--decrypt", "--value-only")
    assert result.exit_code == 1 and result.stdout == ""
    assert "not allowed" in result.stderr and "GetDecrypted" in result.stderr
    history = live.ok("--profile", "ops", "params", "history", "/db/pass", "--decrypt")
    assert SECRET not in history.stdout and "not allowed" in history.stderr


def test_version_and_label_selectors(live: Live) -> None:
    live.ok("params", "put", "/app/v", "--value", "one")
    live.ok("params", "put", "/app/v", "--value", "two", "--overwrite")
    live.ok("params", "put", "/app/v", "--value", "three", "--overwrite")
    live.ok("params", "label", "/app/v", "--version", "1", "stable")

    def value(selector: str) -> str:
        return live.ok("params", "get", selector, "--value-only").stdout

    assert (value("/app/v"), value("/app/v:2"), value("/app/v:stable")) == (
        "three\n",
        "two\n",
        "one\n",
    )
    missing = live.run("params", "get", "/app/v:9")
    assert missing.exit_code == 1 and missing.stderr == (
        "error: parameter /app/v has no version 9 (not_found)\n"
    )


def test_value_only_and_output_json_do_not_go_together(live: Live) -> None:
    result = live.run("params", "get", "/app/v", "--value-only", "-o", "json")
    assert "--value-only or --output" in usage_error(result)


# labels and history -----------------------------------------------------------------------------


def test_labels_move_and_history_shows_them(live: Live) -> None:
    live.ok("params", "put", "/app/v", "--value", "one")
    live.ok("params", "put", "/app/v", "--value", "two", "--overwrite")

    first = live.ok("params", "label", "/app/v", "--version", "1", "stable", "blue")
    assert first.stdout == "/app/v: version 1 labelled stable, blue\n"
    moved = live.ok("params", "label", "/app/v", "stable")  # no --version: the latest
    assert moved.stdout == "/app/v: version 2 labelled stable (moved from version 1)\n"
    rows = live.json("params", "history", "/app/v")
    assert [(r["version"], r["labels"], r["value"]) for r in rows] == [
        (1, ["blue"], "one"),
        (2, ["stable"], "two"),
    ]
    table = live.ok("params", "history", "/app/v").stdout.splitlines()
    assert table[0].split() == ["version", "labels", "type", "created", "by", "value"]
    assert table[2].split()[:3] == ["1", "blue", "String"] and table[3].endswith("two")

    gone = live.ok("params", "unlabel", "/app/v", "--version", "2", "stable", "nope")
    assert gone.stdout == "/app/v: version 2 unlabelled stable\n"
    assert gone.stderr == "warning: version 2 of /app/v has no label nope\n"
    assert live.json("params", "history", "/app/v")[1]["labels"] == []


def test_bad_labels_are_usage_errors(live: Live) -> None:
    assert "digit" in usage_error(live.run("params", "label", "/app/v", "1st"))
    assert "--version" in usage_error(live.run("params", "unlabel", "/app/v", "stable"))
    assert live.bridge.requests == []


# get-by-path, list, delete ----------------------------------------------------------------------


def test_get_by_path_direct_children_or_recursive(live: Live) -> None:
    live.ok("params", "put", "/app/prod/db-url", "--value", "postgres://a")
    live.ok("params", "put", "/app/prod/db-pass", "--value", SECRET, "--type", "SecureString")
    live.ok("params", "put", "/app/prod/web/port", "--value", "8080")
    live.ok("params", "put", "/app/dev/db-url", "--value", "postgres://dev")

    shallow = live.json("params", "get-by-path", "/app/prod/")
    assert [p["name"] for p in shallow] == ["/app/prod/db-pass", "/app/prod/db-url"]
    deep = live.ok("params", "get-by-path", "/app/prod", "--recursive")
    lines = [line.split() for line in deep.stdout.splitlines()]
    assert lines[0] == ["name", "type", "version", "value"]
    assert lines[2:] == [
        ["/app/prod/db-pass", "SecureString", "1", "****"],
        ["/app/prod/db-url", "String", "1", "postgres://a"],
        ["/app/prod/web/port", "String", "1", "8080"],
    ]
    assert "add --decrypt" in deep.stderr
    decrypted = live.ok("params", "get-by-path", "/app/prod", "--decrypt")
    assert SECRET in decrypted.stdout and decrypted.stderr == ""


def test_list_with_a_path_and_a_type_filter(live: Live) -> None:
    live.ok("params", "put", "/app/prod/db-url", "--value", "postgres://a")
    live.ok("params", "put", "/app/prod/db-pass", "--value", SECRET, "--type", "SecureString")
    live.ok("params", "put", "/other/key", "--value", SECRET, "--type", "SecureString")

    secure = live.ok("params", "list", "--filter", "type=SecureString")
    lines = [line.split() for line in secure.stdout.splitlines()]
    assert lines[0] == [
        "name", "type", "tier", "version", "last_modified_at", "last_modified_by",
    ]  # fmt: skip
    assert [line[0] for line in lines[2:]] == ["/app/prod/db-pass", "/other/key"]
    assert SECRET not in secure.stdout
    both = live.json("params", "list", "--path", "/app", "--filter", "type=String")
    assert [p["name"] for p in both] == ["/app/prod/db-url"]
    assert "value" not in both[0]


@pytest.mark.parametrize("value", ["tier=Advanced", "type=Secure", "type", "SecureString"])
def test_an_unsupported_filter_is_a_usage_error_naming_the_supported_ones(
    live: Live, value: str
) -> None:
    message = usage_error(live.run("params", "list", "--filter", value))

    assert "type=String|type=StringList|type=SecureString" in message
    assert live.bridge.requests == []


def test_delete_reports_names_not_found_and_exits_1(live: Live) -> None:
    live.ok("params", "put", "/app/a", "--value", "1")
    live.ok("params", "put", "/app/b", "--value", "2")

    result = live.run("params", "delete", "/app/a", "/app/missing", "/app/b")
    assert result.exit_code == 1
    assert result.stdout == "deleted /app/a\ndeleted /app/b\n"
    assert result.stderr == "error: not found: /app/missing\n"
    assert live.json("params", "list") == []


def test_delete_sends_at_most_ten_names_a_request(live: Live) -> None:
    names = [f"/many/p{i:02}" for i in range(12)]
    for name in names:
        live.ok("params", "put", name, "--value", "v")

    done = live.json("params", "delete", *names)
    assert done == {"deleted": names, "invalid": []}
    batches = [json.loads(r.content)["names"] for r in live.bridge.sent("POST")[-2:]]
    assert batches == [names[:10], names[10:]]
