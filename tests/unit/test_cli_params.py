"""Client-side argument checks: tags (AWS's rules), --expires, --limit; all exit 2, one line."""

from __future__ import annotations

from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.params import parse_duration, parse_expiry, parse_tags
from control_plane.cli.profiles import save_profile

URL = "https://corral.test:8443"


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """A logged-in profile; the requests the CLI sends are collected here."""
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)
    return []


def run(sent: list[httpx.Request], args: list[str]) -> Result:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"activation_id": "a", "node_id": "mi-1"})

    return CliRunner().invoke(cli, args, obj=Runtime(transport=httpx.MockTransport(handler)))


def assert_usage_error(result: Result, sent: list[httpx.Request], fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert sent == [], "nothing may be sent when the arguments are bad"


BAD_TAGS = [
    pytest.param(["novalue"], "must be KEY=VALUE", id="no-equals"),
    pytest.param(["=v"], "1 to 128 characters", id="empty-key"),
    pytest.param(["k" * 129 + "=v"], "1 to 128 characters", id="key-too-long"),
    pytest.param(["k=" + "v" * 257], "at most 256 characters", id="value-too-long"),
    pytest.param(["aws:name=v"], "may not start with 'aws:'", id="aws-prefix"),
    pytest.param(["AWS:Name=v"], "may not start with 'aws:'", id="aws-prefix-upper"),
    pytest.param(["k!=v"], "may contain only", id="key-bad-char"),
    pytest.param(["k=v;rm"], "may contain only", id="value-bad-char"),
    pytest.param(["a\tb=v"], "may contain only", id="key-tab"),
    pytest.param(["k=line\nbreak"], "may contain only", id="value-newline"),
    pytest.param(["k=bell\x07"], "may contain only", id="value-control-char"),
    pytest.param(["k=1", "k=2"], "more than once", id="duplicate"),
    pytest.param([f"k{i}=v" for i in range(51)], "at most 50 tags", id="too-many"),
]


@pytest.mark.parametrize(("tags", "fragment"), BAD_TAGS)
def test_nodes_tag_rejects_bad_tags(
    sent: list[httpx.Request], tags: list[str], fragment: str
) -> None:
    assert_usage_error(run(sent, ["nodes", "tag", "mi-1", *tags]), sent, fragment)


@pytest.mark.parametrize(("tags", "fragment"), BAD_TAGS)
def test_activations_create_rejects_bad_tags(
    sent: list[httpx.Request], tags: list[str], fragment: str
) -> None:
    args = [arg for tag in tags for arg in ("--tag", tag)]
    assert_usage_error(run(sent, ["activations", "create", *args]), sent, fragment)


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        (["aws:x"], "may not start with 'aws:'"),
        (["k" * 129], "1 to 128 characters"),
        ([""], "1 to 128 characters"),
        (["k!"], "may contain only"),
        ([f"k{i}" for i in range(51)], "at most 50 tag keys"),
    ],
)
def test_nodes_untag_rejects_bad_keys(
    sent: list[httpx.Request], keys: list[str], fragment: str
) -> None:
    assert_usage_error(run(sent, ["nodes", "untag", "mi-1", *keys]), sent, fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("env=prod", "tag:KEY=VALUE"), ("tag:env", "tag:KEY=VALUE"), ("tag:aws:x=1", "aws:")],
)
def test_nodes_list_rejects_bad_filters(
    sent: list[httpx.Request], value: str, fragment: str
) -> None:
    assert_usage_error(run(sent, ["nodes", "list", "--filter", value]), sent, fragment)


def test_good_tags_are_sent_as_an_object(sent: list[httpx.Request]) -> None:
    result = run(sent, ["nodes", "tag", "mi-1", "env=prod", "empty=", "path=/a/b c"])
    assert result.exit_code == 0, result.output
    assert sent[0].read() == b'{"tags":{"env":"prod","empty":"","path":"/a/b c"}}'


def test_fifty_tags_are_allowed() -> None:
    assert len(parse_tags([f"k{i}=v" for i in range(50)])) == 50


def test_value_may_contain_equals_signs() -> None:
    assert parse_tags(["expr=a=b"]) == {"expr": "a=b"}


def test_non_ascii_letters_and_the_whole_alphabet_are_allowed() -> None:
    assert parse_tags(["équipe=café", "k=a b_c.d:e/f=g+h-i@j"]) == {
        "équipe": "café",
        "k": "a b_c.d:e/f=g+h-i@j",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("24h", 86400), ("30d", 2592000), ("1w", 604800), ("3600", 3600),
     ("120s", 120), (" 2H ", 7200)],
)  # fmt: skip
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1.5h", "-1h", "1y", "10 minutes", "1h30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_duration(text)


def test_expiry_bounds() -> None:
    assert parse_expiry("30d") == 30 * 86400
    assert parse_expiry("60") == 60
    for text in ("31d", "5w", "2592001", "59", "0"):
        with pytest.raises(click.BadParameter):
            parse_expiry(text)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--expires", "31d"], "more than 30 days"),
        (["--expires", "5w"], "more than 30 days"),
        (["--expires", "30s"], "less than 1 minute"),
        (["--expires", "soon"], "not a duration"),
        (["--limit", "0"], "1<=x<=1000"),
        (["--limit", "1001"], "1<=x<=1000"),
        (["--limit", "many"], "not a valid integer"),
    ],
)
def test_activations_create_rejects_bad_expiry_and_limit(
    sent: list[httpx.Request], args: list[str], fragment: str
) -> None:
    assert_usage_error(run(sent, ["activations", "create", *args]), sent, fragment)


def test_missing_argument_names_the_help_command(sent: list[httpx.Request]) -> None:
    result = run(sent, ["nodes", "show"])
    assert_usage_error(result, sent, "Missing argument 'NODE_ID'")
    assert "corral nodes show --help" in result.stderr


def test_unknown_output_format_is_bad_usage(sent: list[httpx.Request]) -> None:
    assert_usage_error(run(sent, ["nodes", "list", "-o", "yaml"]), sent, "'yaml' is not one of")
