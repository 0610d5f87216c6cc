"""`corral login` with a token made for one job, and `corral login --profile NAME` to switch.

Asking who you are needs no permission (as AWS STS GetCallerIdentity): a token whose policy
allows only ``parameters:Get`` logs in, and `whoami` answers it, against the real control
plane in process (the ``live`` fixture of test_cli_parameters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from control_plane.cli.profiles import load_config
from tests.unit.test_cli_parameters import URL, Live, live, usage_error

__all__ = ["live"]  # the fixture, used by name

GET_ONLY = {
    "Version": "2026-01-01",
    "Statement": [{"Effect": "Allow", "Action": "parameters:Get", "Resource": "parameter/app/*"}],
}
DENY_WHOAMI = {
    "Version": "2026-01-01",
    "Statement": [
        {"Effect": "Allow", "Action": "parameters:Get", "Resource": "parameter/app/*"},
        {"Effect": "Deny", "Action": "identity:*", "Resource": "*"},
    ],
}


def new_token(live: Live, tmp_path: Path, name: str, policy: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(policy))
    made = live.json("tokens", "create", "--name", name, "--policy", str(path))
    secret: str = made["secret"]
    return secret


@pytest.fixture
def ca(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("not read: the bridge replaces TLS")
    return str(path)


@pytest.mark.parametrize("policy", [GET_ONLY, DENY_WHOAMI], ids=["get-only", "deny-whoami"])
def test_a_token_with_one_right_logs_in_and_knows_who_it_is(
    live: Live, tmp_path: Path, ca: str, policy: dict[str, Any]
) -> None:
    secret = new_token(live, tmp_path, "ci-reader", policy)

    result = live.run("login", "--url", URL, "--token", secret, "--ca-file", ca, "--profile", "ci")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Logged in to {URL} as ci-reader; profile 'ci' saved")
    assert load_config(live.config).current_profile == "ci"
    me = live.json("whoami")
    assert me["name"] == "ci-reader" and me["role"] is None
    # ... and that is all it may do besides its job.
    refused = live.run("params", "put", "/app/x", "--value", "y")
    assert refused.exit_code == 1 and "may not parameters:Put" in refused.stderr
    # The login is in the audit trail, under the token's name.
    live.ok("login", "--profile", "admin")
    entries = live.json("audit", "list", "--action", "identity:Login", "--identity", "ci-reader")
    assert [e["outcome"] for e in entries] == ["allowed"]


def test_a_bad_token_is_still_refused(live: Live, ca: str) -> None:
    result = live.run("login", "--url", URL, "--token", "crl_nope", "--ca-file", ca)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {URL} refused the token")
    assert load_config(live.config).current_profile == "admin"


def test_login_profile_alone_switches_to_a_saved_profile(
    live: Live, tmp_path: Path, ca: str
) -> None:
    secret = new_token(live, tmp_path, "reader", GET_ONLY)
    live.ok("login", "--url", URL, "--token", secret, "--ca-file", ca, "--profile", "reader")
    assert live.json("whoami")["name"] == "reader"

    result = live.ok("login", "--profile", "admin")

    assert result.stdout.startswith(f"Logged in to {URL} as admin; profile 'admin'")
    assert load_config(live.config).current_profile == "admin"
    assert live.json("whoami")["name"] == "admin"
    live.ok("--profile", "reader", "login")  # the global option works the same
    assert load_config(live.config).current_profile == "reader"


def test_login_profile_with_a_new_token_keeps_the_url_and_ca(
    live: Live, tmp_path: Path, ca: str
) -> None:
    first = new_token(live, tmp_path, "first", GET_ONLY)
    second = new_token(live, tmp_path, "second", GET_ONLY)
    live.ok("login", "--url", URL, "--token", first, "--ca-file", ca, "--profile", "job")

    live.ok("login", "--profile", "job", "--token", "-", stdin=second + "\n")

    saved = load_config(live.config).profiles["job"]
    assert (saved.url, saved.token, saved.ca_file) == (URL, second, ca)


def test_a_revoked_saved_token_is_not_switched_to(live: Live, tmp_path: Path, ca: str) -> None:
    secret = new_token(live, tmp_path, "gone", GET_ONLY)
    live.ok("login", "--url", URL, "--token", secret, "--ca-file", ca, "--profile", "gone")
    live.ok("login", "--profile", "admin")
    token_id = next(t["token_id"] for t in live.json("tokens", "list") if t["name"] == "gone")
    live.ok("tokens", "revoke", token_id)

    result = live.run("login", "--profile", "gone")

    assert result.exit_code == 1 and "refused the token" in result.stderr
    assert load_config(live.config).current_profile == "admin"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--profile", "nowhere"], "there is no profile 'nowhere' yet"),
        (["--profile", "admin", "--url", "https://other.test"], "give --token"),
        (["--url", "https://other.test", "--token", "crl_x", "--profile", "o"], "--ca-hash"),
        (["--profile", "admin", "--ca-hash", "sha256:" + "0" * 64, "--ca-file", "CA"], "not both"),
        (["--profile", "admin", "--token", " "], "the token is empty"),
    ],
)
def test_login_usage_errors_send_nothing(
    live: Live, ca: str, args: list[str], fragment: str
) -> None:
    before = len(live.bridge.requests)
    assert fragment in usage_error(live.run("login", *[ca if a == "CA" else a for a in args]))
    assert len(live.bridge.requests) == before


def test_the_simulator_says_whoami_is_every_tokens(live: Live, tmp_path: Path) -> None:
    new_token(live, tmp_path, "denier", DENY_WHOAMI)
    token_id = next(t["token_id"] for t in live.json("tokens", "list") if t["name"] == "denier")
    args = ["policies", "simulate", "--token", token_id, "--action", "identity:WhoAmI"]

    result = live.ok(*args, "--resource", "*")

    assert result.stdout.startswith("allowed\nevery valid token may identity:WhoAmI")
    refused = live.run(*args[:-1], "parameters:Put", "--resource", "parameter/app/x")
    assert refused.exit_code == 1  # the token's other actions still follow its policy
