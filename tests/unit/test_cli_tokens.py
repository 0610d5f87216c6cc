"""`corral tokens`, `whoami`, `policies`, the login check, and the client's 429 retry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.client import ApiClient, retry_delay
from control_plane.cli.context import Runtime
from control_plane.cli.errors import ApiError
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"
OPERATOR_DOC = {
    "Version": "2026-01-01",
    "Statement": [
        {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "NoSecrets", "Effect": "Deny", "Action": ["tokens:Create"], "Resource": "*"},
    ],
}
WEB_DOC = {
    "Version": "2026-01-01",
    "Statement": [{"Effect": "Deny", "Action": ["commands:Send"], "Resource": ["node/*"]}],
}
TOKEN: dict[str, Any] = {
    "token_id": "tok-0123456789abcdef",
    "name": "ci",
    "role": "operator",
    "state": "active",
    "created_at": "2026-12-01T10:00:00.000Z",
    "expires_at": "2027-03-01T10:00:00.000Z",
    "revoked_at": None,
    "created_by": "tok-admin",
}
CREATED = {**TOKEN, "policy": OPERATOR_DOC, "secret": "crl_only-once", "warnings": []}
CUSTOM = {**TOKEN, "token_id": "tok-web", "name": "web", "role": None, "expires_at": None}


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file=str(tmp_path / "ca.pem"), path=path)
    return path


class Server:
    """Answers ``routes[(method, path)]`` = (status, json); records every request."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.routes.get(
            (request.method, request.url.path),
            (404, {"error": {"code": "not_found", "message": "no such route"}}),
        )
        return httpx.Response(status, json=body)

    def body(self, n: int = 0) -> Any:
        return json.loads(self.requests[n].read())


def run(server: Callable[[httpx.Request], httpx.Response], *args: str, **kw: Any) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(server))
    return CliRunner().invoke(cli, list(args), obj=runtime, **kw)


def usage_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def creating(reply: dict[str, Any] = CREATED) -> Server:
    return Server({("POST", "/v1/tokens"): (201, reply)})


# tokens create --------------------------------------------------------------------------


def test_create_with_a_role_sends_it_and_the_default_expiry() -> None:
    server = creating()
    result = run(server, "tokens", "create", "--name", "ci", "--role", "operator")

    assert result.exit_code == 0, result.output
    assert (server.requests[0].method, server.requests[0].url.path) == ("POST", "/v1/tokens")
    assert server.body() == {"name": "ci", "role": "operator", "expires_in_seconds": 90 * 86400}


def test_create_prints_the_secret_once_with_a_warning_that_it_is_not_shown_again() -> None:
    result = run(creating(), "tokens", "create", "--name", "ci", "--role", "operator")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "shown only this once" in out and "cannot be shown again" in out
    assert out.count("crl_only-once") == 1
    for line in (
        "secret:      crl_only-once",
        "token id:    tok-0123456789abcdef",
        "name:        ci",
        "role:        operator",
        "expires at:  2027-03-01T10:00:00.000Z",
    ):
        assert line in out
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("expires", "seconds"), [("12h", 43200), ("1w", 7 * 86400), ("3650d", 3650 * 86400)]
)
def test_create_expires_is_a_duration(expires: str, seconds: int) -> None:
    server = creating()
    result = run(
        server, "tokens", "create", "--name", "ci", "--role", "viewer", "--expires", expires
    )
    assert result.exit_code == 0, result.output
    assert server.body()["expires_in_seconds"] == seconds


def test_create_expires_never_sends_no_expiry_and_shows_never() -> None:
    server = creating({**CREATED, "expires_at": None})
    result = run(
        server, "tokens", "create", "--name", "ci", "--role", "admin", "--expires", "never"
    )
    assert result.exit_code == 0, result.output
    assert server.body()["expires_in_seconds"] is None
    assert "expires at:  never" in result.stdout


@pytest.mark.parametrize("expires", ["forever", "30s", "3651d", "-1d", ""])
def test_create_refuses_a_bad_expiry_before_sending(expires: str) -> None:
    server = creating()
    result = run(
        server, "tokens", "create", "--name", "ci", "--role", "admin", "--expires", expires
    )
    assert "--expires" in usage_error(result)
    assert server.requests == []


def test_create_with_a_policy_file_sends_the_document_and_prints_warnings(tmp_path: Path) -> None:
    policy = tmp_path / "web.json"
    policy.write_text(json.dumps(WEB_DOC, indent=2))
    warning = "policy allows nothing: it has no Allow statement"
    server = creating({**CREATED, "role": None, "policy": WEB_DOC, "warnings": [warning]})

    result = run(server, "tokens", "create", "--name", "web", "--policy", str(policy))

    assert result.exit_code == 0, result.output
    assert server.body() == {"name": "web", "policy": WEB_DOC, "expires_in_seconds": 90 * 86400}
    assert "role:        custom policy" in result.stdout
    assert result.stderr == f"warning: {warning}\n"


def test_create_reads_the_policy_from_stdin() -> None:
    server = creating()
    result = run(
        server, "tokens", "create", "--name", "web", "--policy", "-", input=json.dumps(WEB_DOC)
    )
    assert result.exit_code == 0, result.output
    assert server.body()["policy"] == WEB_DOC


def test_create_json_is_the_servers_object_and_warnings_still_go_to_stderr() -> None:
    reply = {**CREATED, "warnings": ["policy allows nothing"]}
    result = run(
        creating(reply), "tokens", "create", "--name", "ci", "--role", "admin", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == reply
    assert result.stderr == "warning: policy allows nothing\n"


@pytest.mark.parametrize(
    "extra",
    [[], ["--role", "admin", "--policy", "p.json"]],
    ids=["neither", "both"],
)
def test_create_needs_exactly_one_of_role_and_policy(tmp_path: Path, extra: list[str]) -> None:
    (tmp_path / "p.json").write_text(json.dumps(WEB_DOC))
    server = creating()
    args = [a.replace("p.json", str(tmp_path / "p.json")) for a in extra]
    result = run(server, "tokens", "create", "--name", "ci", *args)
    assert "exactly one of --role and --policy" in usage_error(result)
    assert server.requests == []


def test_create_refuses_an_unknown_role() -> None:
    server = creating()
    result = run(server, "tokens", "create", "--name", "ci", "--role", "root")
    assert "--role" in usage_error(result)
    assert server.requests == []


def test_create_names_the_file_line_and_column_of_a_json_error(tmp_path: Path) -> None:
    policy = tmp_path / "bad.json"
    policy.write_text(
        '{\n  "Version": "2026-01-01",\n  "Statement": [\n    {"Effect" "Allow"}\n]}\n'
    )
    server = creating()

    result = run(server, "tokens", "create", "--name", "web", "--policy", str(policy))

    message = usage_error(result)
    assert str(policy) in message
    assert "line 4 column 15" in message and "Expecting ':' delimiter" in message
    assert server.requests == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'["not", "an", "object"]', "must hold a policy document"),
        (b'{"Version": NaN}', "NaN is not a JSON value"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"", "line 1 column 1"),
    ],
)
def test_create_refuses_other_bad_policy_files(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    policy = tmp_path / "bad.json"
    policy.write_bytes(content)
    server = creating()
    result = run(server, "tokens", "create", "--name", "web", "--policy", str(policy))
    message = usage_error(result)
    assert str(policy) in message and fragment in message
    assert server.requests == []


def test_create_refuses_a_missing_policy_file(tmp_path: Path) -> None:
    server = creating()
    missing = str(tmp_path / "missing.json")
    result = run(server, "tokens", "create", "--name", "web", "--policy", missing)
    assert missing in usage_error(result)
    assert server.requests == []


def test_create_refused_by_the_server_is_one_line_and_exit_1() -> None:
    error = {"code": "forbidden", "message": "a token cannot grant rights it does not have: x"}
    server = Server({("POST", "/v1/tokens"): (403, {"error": error})})
    result = run(server, "tokens", "create", "--name", "ci", "--role", "admin")
    assert result.exit_code == 1
    assert result.stderr == f"error: {error['message']} (forbidden)\n"
    assert result.stdout == ""


# tokens list / show / revoke --------------------------------------------------------------


def test_list_table_shows_custom_policy_and_never() -> None:
    server = Server({("GET", "/v1/tokens"): (200, {"tokens": [TOKEN, CUSTOM]})})
    result = run(server, "tokens", "list")

    assert result.exit_code == 0, result.output
    header, _rule, first, second = result.stdout.splitlines()
    assert header.split() == ["token_id", "name", "role", "state", "expires_at", "created_by"]
    assert first.split() == [
        "tok-0123456789abcdef", "ci", "operator", "active", "2027-03-01T10:00:00.000Z", "tok-admin",
    ]  # fmt: skip
    assert second.split() == ["tok-web", "web", "custom", "policy", "active", "never", "tok-admin"]


def test_list_json_is_the_array() -> None:
    server = Server({("GET", "/v1/tokens"): (200, {"tokens": [TOKEN, CUSTOM]})})
    result = run(server, "tokens", "list", "-o", "json")
    assert json.loads(result.stdout) == [TOKEN, CUSTOM]


def test_show_prints_the_fields_and_the_policy_as_pretty_json() -> None:
    shown = {**CUSTOM, "policy": WEB_DOC}
    server = Server({("GET", "/v1/tokens/tok-web"): (200, shown)})

    result = run(server, "tokens", "show", "tok-web")

    assert result.exit_code == 0, result.output
    table, policy = result.stdout.split("\npolicy:\n")
    assert "custom policy" in table and "never" in table
    assert json.loads(policy) == WEB_DOC
    assert '\n  "Statement": [' in policy  # indented, Version first as the server sent it
    assert policy.index("Version") < policy.index("Statement")


def test_show_quotes_the_id_and_json_is_the_object() -> None:
    shown = {**TOKEN, "policy": OPERATOR_DOC}
    server = Server({("GET", "/v1/tokens/a/b"): (200, shown)})
    result = run(server, "tokens", "show", "a/b", "-o", "json")
    assert result.exit_code == 0, result.output
    assert server.requests[0].url.raw_path == b"/v1/tokens/a%2Fb"
    assert json.loads(result.stdout) == shown


def test_revoke_prints_the_servers_message() -> None:
    reply = {**TOKEN, "state": "revoked", "message": "token tok-0123456789abcdef revoked"}
    server = Server({("POST", "/v1/tokens/tok-0123456789abcdef/revoke"): (200, reply)})

    result = run(server, "tokens", "revoke", "tok-0123456789abcdef")

    assert result.exit_code == 0, result.output
    assert result.stdout == "token tok-0123456789abcdef revoked\n"
    assert json.loads(run(server, "tokens", "revoke", TOKEN["token_id"], "-o", "json").stdout) == (
        reply
    )


def test_revoke_an_unknown_token_is_an_error() -> None:
    result = run(Server({}), "tokens", "revoke", "tok-nope")
    assert result.exit_code == 1
    assert result.stderr == "error: no such route (not_found)\n"


# whoami -------------------------------------------------------------------------------------


def test_whoami_shows_identity_role_expiry_and_policies() -> None:
    me = {
        "token_id": "tok-0123456789abcdef",
        "name": "ci",
        "role": "operator",
        "expires_at": None,
        "policies": [OPERATOR_DOC],
    }
    server = Server({("GET", "/v1/whoami"): (200, me)})

    result = run(server, "whoami")

    assert result.exit_code == 0, result.output
    table, policies = result.stdout.split("\npolicies:\n")
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
    assert rows == {
        "name": ["ci"],
        "token_id": ["tok-0123456789abcdef"],
        "role": ["operator"],
        "expires_at": ["never"],
    }
    assert json.loads(policies) == OPERATOR_DOC
    assert json.loads(run(server, "whoami", "-o", "json").stdout) == me


# policies ---------------------------------------------------------------------------------


def test_policies_list_and_show() -> None:
    rows = [{"name": "admin", "builtin": True, "updated_at": "2026-12-01T10:00:00.000Z"}]
    shown = {**rows[0], "name": "operator", "document": OPERATOR_DOC}
    server = Server(
        {
            ("GET", "/v1/policies"): (200, {"policies": rows}),
            ("GET", "/v1/policies/operator"): (200, shown),
        }
    )

    listed = run(server, "policies", "list")
    assert listed.stdout.splitlines()[2].split() == ["admin", "yes", "2026-12-01T10:00:00.000Z"]

    result = run(server, "policies", "show", "operator")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == OPERATOR_DOC  # usable as `tokens create --policy`
    assert json.loads(run(server, "policies", "show", "operator", "-o", "json").stdout) == shown


def simulated(allowed: bool) -> dict[str, Any]:
    return {
        "token_id": "tok-web",
        "action": "commands:Send",
        "resource": "node/mi-1",
        "allowed": allowed,
        "decision": "allow" if allowed else "explicit-deny",
        "statement": 0,
        "sid": "Everything" if allowed else None,
        "policy": "operator" if allowed else "web",
        "explanation": 'allowed by operator Statement[0] ("Everything")'
        if allowed
        else "denied by web Statement[0]",
    }


SIMULATE = ["policies", "simulate", "--token", "tok-web", "--action", "commands:Send"]


def test_simulate_allowed_exits_0_and_names_the_statement() -> None:
    server = Server({("POST", "/v1/policies/simulate"): (200, simulated(True))})

    result = run(server, *SIMULATE, "--resource", "node/mi-1", "--source-ip", "10.0.0.7")

    assert result.exit_code == 0, result.output
    assert result.stdout == 'allowed\nallowed by operator Statement[0] ("Everything")\n'
    assert server.body() == {
        "token_id": "tok-web",
        "action": "commands:Send",
        "resource": "node/mi-1",
        "source_ip": "10.0.0.7",
    }


def test_simulate_denied_exits_1_in_both_output_formats() -> None:
    server = Server({("POST", "/v1/policies/simulate"): (200, simulated(False))})

    result = run(server, *SIMULATE, "--resource", "node/mi-1")
    assert result.exit_code == 1
    assert result.stdout == "denied\ndenied by web Statement[0]\n"
    assert result.stderr == ""
    assert "source_ip" not in server.body()

    as_json = run(server, *SIMULATE, "--resource", "node/mi-1", "-o", "json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == simulated(False)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--resource", "node/mi-1", "--source-ip", "10.0.0.300"], "--source-ip"),
        (["--source-ip", "10.0.0.1"], "--resource"),
    ],
)
def test_simulate_bad_usage_exits_2(args: list[str], fragment: str) -> None:
    server = Server({("POST", "/v1/policies/simulate"): (200, simulated(True))})
    assert fragment in usage_error(run(server, *SIMULATE, *args))
    assert server.requests == []


# login --------------------------------------------------------------------------------------


def test_login_checks_the_token_with_post_login_and_names_the_identity(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read: the transport is injected")
    me = {"token_id": "tok-1", "name": "ci", "role": "operator", "expires_at": None}
    server = Server({("POST", "/v1/login"): (200, me)})

    result = run(server, "login", "--url", URL, "--token", "crl_x", "--ca-file", str(ca))

    assert result.exit_code == 0, result.output
    assert [(r.method, r.url.path) for r in server.requests] == [("POST", "/v1/login")]
    assert result.stdout.startswith(f"Logged in to {URL} as ci; profile 'default' saved")


# the client's 429 retry ---------------------------------------------------------------------


def limited(statuses: list[tuple[int, str | None]]) -> tuple[list[httpx.Request], Any]:
    """A handler answering these (status, Retry-After) in turn, then 200."""
    seen: list[httpx.Request] = []
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not queue:
            return httpx.Response(200, json={"ok": True})
        status, wait = queue.pop(0)
        headers = {"retry-after": wait} if wait is not None else {}
        error = {"error": {"code": "rate_limited", "message": "rate limit of token t exceeded"}}
        return httpx.Response(status, json=error, headers=headers)

    return seen, handler


def client(handler: Any, waits: list[float]) -> ApiClient:
    return ApiClient(URL, "t", transport=httpx.MockTransport(handler), sleep=waits.append)


def test_a_429_with_a_short_retry_after_is_waited_out_and_sent_again() -> None:
    seen, handler = limited([(429, "3"), (429, "1")])
    waits: list[float] = []
    with client(handler, waits) as api:
        assert api.post("/v1/tokens", {"name": "x"}) == {"ok": True}
    assert waits == [3.0, 1.0]
    assert len(seen) == 3 and all(json.loads(r.read()) == {"name": "x"} for r in seen)


def test_a_third_429_is_reported_with_its_wait() -> None:
    seen, handler = limited([(429, "2")] * 3)
    waits: list[float] = []
    with client(handler, waits) as api, pytest.raises(ApiError) as caught:
        api.get("/v1/tokens")
    assert (len(seen), waits) == (3, [2.0, 2.0])
    assert caught.value.status == 429
    assert caught.value.message == "rate limit of token t exceeded; retry in 2 s (rate_limited)"


@pytest.mark.parametrize("wait", ["11", "3600", None, "soon", "nan", "-1"])
def test_a_429_without_a_short_retry_after_is_not_retried(wait: str | None) -> None:
    seen, handler = limited([(429, wait)])
    waits: list[float] = []
    with pytest.raises(ApiError):
        client(handler, waits).get("/v1/tokens")
    assert (len(seen), waits) == (1, [])


def test_retry_after_as_an_http_date() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": value})

    now = 1_796_157_451.0  # Tue, 01 Dec 2026 20:37:31 GMT
    assert retry_delay(answer("Tue, 01 Dec 2026 20:37:36 GMT"), now) == 5.0
    assert retry_delay(answer("Tue, 01 Dec 2026 20:37:00 GMT"), now) == 0.0  # already past
    assert retry_delay(answer("Tue, 01 Dec 2026 21:37:31 GMT"), now) is None
    assert retry_delay(httpx.Response(503, headers={"retry-after": "1"})) is None


def test_a_stream_is_retried_only_before_its_body_starts() -> None:
    seen, handler = limited([(429, "1")])
    waits: list[float] = []
    with client(handler, waits) as api:
        assert b"".join(api.stream("/v1/audit/export")) == b'{"ok":true}'
    assert (len(seen), waits) == (2, [1.0])


def test_the_cli_retries_a_rate_limited_command() -> None:
    """Through the whole CLI, with Retry-After: 0 (no real wait)."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            error = {"error": {"code": "rate_limited", "message": "slow down"}}
            return httpx.Response(429, json=error, headers={"retry-after": "0"})
        return httpx.Response(200, json={"tokens": [TOKEN]})

    result = run(handler, "tokens", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    assert len(calls) == 2 and json.loads(result.stdout) == [TOKEN]


# startup ------------------------------------------------------------------------------------


def test_the_new_commands_help_imports_no_heavy_library() -> None:
    from tests.unit.test_cli_main import probe

    for args in (["tokens", "create", "--help"], ["policies", "--help"], ["whoami", "--help"]):
        assert probe(args) == ["0"], args
    assert probe(["audit", "verify", "--help"]) == ["0"]
