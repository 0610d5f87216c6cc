"""The server's config.toml and --listen: every bad value is a one-line SetupError."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.config import ServerConfig, load_config, parse_listen, url_for
from control_plane.errors import SetupError

# --listen -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
        ("localhost:1", ("localhost", 1)),
        ("corral.example:65535", ("corral.example", 65535)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]:8443", ("::", 8443)),
        ("[fe80::1%eth0]:8443", ("fe80::1%eth0", 8443)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen",
    [
        "",
        "8443",
        ":8443",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:84a3",
        "127.0.0.1: 8443",
        "::1:8443",  # IPv6 without brackets
        "[::1:8443",  # unclosed bracket
        "[::1]x:8443",
    ],
)
def test_bad_listen_is_refused(listen: str) -> None:
    with pytest.raises(SetupError, match="invalid --listen") as caught:
        parse_listen(listen)
    assert "\n" not in caught.value.message


def test_ipv6_without_brackets_says_how_to_write_it() -> None:
    with pytest.raises(SetupError, match=r"write IPv6 addresses as \[ADDR\]:PORT"):
        parse_listen("::1:8443")


def test_empty_brackets_are_refused() -> None:
    with pytest.raises(SetupError):
        parse_listen("[]:8443")


def test_url_for_shows_a_reachable_address() -> None:
    assert url_for("127.0.0.1", 8443) == "https://127.0.0.1:8443"
    assert url_for("::1", 8443) == "https://[::1]:8443"
    assert url_for("0.0.0.0", 8443) == "https://127.0.0.1:8443"
    assert url_for("::", 8443) == "https://[::1]:8443"


# config.toml ----------------------------------------------------------------------------------


def write(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text(text, encoding="utf-8")


def setup_error(data_dir: Path) -> str:
    with pytest.raises(SetupError) as caught:
        load_config(data_dir)
    message = caught.value.message
    assert "\n" not in message
    return message


def test_missing_config_says_to_run_init(tmp_path: Path) -> None:
    message = setup_error(tmp_path)
    assert "not found" in message and f"corral-server init --data-dir {tmp_path}" in message


def test_empty_config_gives_defaults(tmp_path: Path) -> None:
    write(tmp_path, "")
    assert load_config(tmp_path) == ServerConfig(data_dir=tmp_path)


def test_settings_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        '[server]\nlisten = "[::1]:9443"\nhostnames = ["corral.example", "10.0.0.5"]\n'
        "node_token_minutes = 5\npoll_hold_seconds = 2\nshutdown_grace_seconds = 1.5\n",
    )
    config = load_config(tmp_path)
    assert config.listen == "[::1]:9443"
    assert config.hostnames == ["corral.example", "10.0.0.5"]
    assert config.node_token_minutes == 5
    assert config.poll_hold_seconds == 2
    assert config.shutdown_grace_seconds == 1.5
    assert config.node_credential_days == 90


@pytest.mark.parametrize("text", ["[server\n", "[server]\nlisten = \n", "x = 'unterminated\n"])
def test_corrupt_config_is_refused(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    assert "is not valid TOML" in setup_error(tmp_path)


def test_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"[server]\nlisten = '\xff'\n")
    assert "is not valid TOML" in setup_error(tmp_path)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nlisen = "127.0.0.1:8443"\n')
    assert "unknown setting server.lisen" in setup_error(tmp_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("listen = 8443", "listen"),
        ('node_token_minutes = "15"', "node_token_minutes"),
        ("node_token_minutes = 1.5", "node_token_minutes"),
        ("node_token_minutes = true", "node_token_minutes"),
        ("poll_hold_seconds = false", "poll_hold_seconds"),
        ('hostnames = "corral.example"', "hostnames"),
        ("database_url = []", "database_url"),
    ],
)
def test_wrong_type_is_refused(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, f"[server]\n{text}\n")
    assert f"server.{key} has the wrong type" in setup_error(tmp_path)


def test_hostnames_must_be_strings(tmp_path: Path) -> None:
    write(tmp_path, '[server]\nhostnames = ["ok", 5]\n')
    assert "server.hostnames must be a list of names" in setup_error(tmp_path)


def test_server_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path, 'server = "127.0.0.1:8443"\n')
    assert "[server] must be a table" in setup_error(tmp_path)


@pytest.mark.parametrize(
    "text", ['listen = "0.0.0.0:8443"\n', '[sever]\nlisten = "0.0.0.0:8443"\n']
)
def test_settings_outside_server_are_refused(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    setup_error(tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "node_token_minutes = 0",
        "node_credential_days = -1",
        "max_request_bytes = -1",
        "poll_hold_seconds = nan",
        "shutdown_grace_seconds = inf",
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, text: str) -> None:
    write(tmp_path, f"[server]\n{text}\n")
    setup_error(tmp_path)
