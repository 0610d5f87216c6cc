"""agent.toml and the registration record in the state dir: defaults, and every bad file is a
one-line ConfigError (or NotRegistered), never a traceback."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agent import transport
from agent.config import AgentConfig, default_state_dir, load_config
from agent.errors import ConfigError, NotRegistered
from agent.state import (
    Registration,
    load_registration,
    load_status,
    save_registration,
    save_status,
)


def write_toml(state_dir: Path, text: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "agent.toml").write_text(text, encoding="utf-8")


def config_error(state_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(state_dir)
    message = caught.value.message
    assert "\n" not in message, "a ConfigError is one line for the user"
    assert str(state_dir / "agent.toml") in message
    return message


# agent.toml -----------------------------------------------------------------------------------


def test_defaults_without_agent_toml(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == AgentConfig(state_dir=tmp_path)
    assert config.transport == "auto"
    assert config.poll_wait_seconds == 20.0
    assert config.heartbeat_interval_seconds == 300.0
    assert (config.backoff_base_seconds, config.backoff_cap_seconds) == (1.0, 60.0)
    assert config.state_file == tmp_path / "state.json"
    assert config.key_file == tmp_path / "node.key"
    assert config.outbox_file == tmp_path / "outbox.db"


def test_a_relative_state_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("state")).state_dir == tmp_path / "state"


def test_state_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_AGENT_STATE_DIR", str(tmp_path / "from-env"))
    assert default_state_dir() == tmp_path / "from-env"
    assert load_config(None).state_dir == tmp_path / "from-env"


def test_settings_are_read_and_whole_numbers_accepted(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        'transport = "https"\npoll_wait_seconds = 5\nbackoff_cap_seconds = 2.5\n'
        "heartbeat_interval_seconds = 30\nshutdown_budget_seconds = 1\n",
    )
    config = load_config(tmp_path)
    assert config.poll_wait_seconds == 5.0 and isinstance(config.poll_wait_seconds, float)
    assert config.backoff_cap_seconds == 2.5
    assert config.heartbeat_interval_seconds == 30.0
    assert config.shutdown_budget_seconds == 1.0
    assert config.backoff_base_seconds == 1.0  # untouched settings keep their default


@pytest.mark.parametrize(
    "text",
    [
        "poll_wait_secs = 5\n",  # a typo
        "state_dir = '/elsewhere'\n",  # not a setting of the file
        "[agent]\npoll_wait_seconds = 5\n",  # a table
    ],
)
def test_unknown_setting_is_refused(tmp_path: Path, text: str) -> None:
    write_toml(tmp_path, text)
    assert "unknown setting" in config_error(tmp_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('poll_wait_seconds = "20"\n', "poll_wait_seconds"),
        ("poll_wait_seconds = true\n", "poll_wait_seconds"),
        ("backoff_cap_seconds = [60]\n", "backoff_cap_seconds"),
        ("transport = 5\n", "transport"),
    ],
)
def test_wrong_type_is_refused(tmp_path: Path, text: str, key: str) -> None:
    write_toml(tmp_path, text)
    message = config_error(tmp_path)
    assert "wrong type" in message and key in message


@pytest.mark.parametrize("value", ["0", "-1", "-0.5"])
def test_non_positive_durations_are_refused(tmp_path: Path, value: str) -> None:
    write_toml(tmp_path, f"heartbeat_interval_seconds = {value}\n")
    assert "heartbeat_interval_seconds must be positive" in config_error(tmp_path)


def test_a_fork_server_idle_time_of_zero_keeps_it_running(tmp_path: Path) -> None:
    write_toml(tmp_path, "fork_server_idle_seconds = 0\n")
    assert load_config(tmp_path).fork_server_idle_seconds == 0
    assert load_config(tmp_path / "elsewhere").fork_server_idle_seconds == 300
    write_toml(tmp_path, "fork_server_idle_seconds = -1\n")
    assert "fork_server_idle_seconds must be positive" in config_error(tmp_path)


@pytest.mark.parametrize(
    "text", ["backoff_cap_seconds = inf\n", "poll_wait_seconds = nan\n"], ids=["inf", "nan"]
)
def test_non_finite_durations_are_refused(tmp_path: Path, text: str) -> None:
    write_toml(tmp_path, text)
    config_error(tmp_path)


@pytest.mark.parametrize(
    "text", ["poll_wait_seconds = \n", "poll_wait_seconds 5\n", "[unclosed\n", "a = 'x\n"]
)
def test_bad_toml_is_one_line_config_error(tmp_path: Path, text: str) -> None:
    write_toml(tmp_path, text)
    assert "is not valid TOML" in config_error(tmp_path)


def test_agent_toml_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_bytes(b"transport = '\xff\xfe'\n")
    assert "is not valid TOML" in config_error(tmp_path)


def test_an_unknown_transport_name_is_a_config_error() -> None:
    known = "known: auto, websocket, https"
    with pytest.raises(ConfigError, match=f"unknown transport 'carrier-pigeon'; {known}"):
        transport.load("carrier-pigeon")
    assert callable(transport.load("https"))


# state.json -----------------------------------------------------------------------------------


def registration() -> Registration:
    return Registration(
        node_id="mi-0123456789abcdef0",
        url="https://corral.example:8443",
        registered_at=1_700_000_000.0,
        credential_expires_at=1_707_776_000.0,
        credential_issued_at=1_700_000_000.0,
        ca_hash="sha256:" + "ab" * 32,
    )


def test_registration_round_trips_and_is_private(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    save_registration(config, registration())
    assert load_registration(config) == registration()
    assert stat.S_IMODE(config.state_file.stat().st_mode) == 0o600
    # Written atomically: no temporary files are left next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_missing_state_json_means_not_registered(tmp_path: Path) -> None:
    with pytest.raises(NotRegistered, match="run 'corral-agent register' first"):
        load_registration(load_config(tmp_path))


@pytest.mark.parametrize(
    "content",
    [
        b'{"node_id": "mi-0123456789abcdef0", "url": ',  # truncated
        b"",  # empty
        b"\xff\xfe\x00garbage",  # not text
        b"[1, 2, 3]",  # JSON, wrong shape
        b'"mi-0123456789abcdef0"',
        b"null",
        b'{"node_id": "mi-0123456789abcdef0"}',  # fields missing
    ],
    ids=["truncated", "empty", "binary", "list", "string", "null", "missing-fields"],
)
def test_corrupted_state_json_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    config = load_config(tmp_path)
    config.state_file.write_bytes(content)
    with pytest.raises(ConfigError, match="is corrupted; register again with --force") as caught:
        load_registration(config)
    assert "\n" not in caught.value.message


def test_state_json_with_an_unexpected_field_is_a_config_error(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    data = {**registration().__dict__, "surprise": 1}
    config.state_file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match="is corrupted"):
        load_registration(config)


def test_status_file_round_trips_and_a_bad_one_reads_as_empty(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert load_status(config) == {}
    save_status(config, {"last_contact": 1.5, "outbox_depth": 0})
    assert load_status(config) == {"last_contact": 1.5, "outbox_depth": 0}
    config.status_file.write_text("{not json", encoding="utf-8")
    assert load_status(config) == {}
    config.status_file.write_text("[1]", encoding="utf-8")
    assert load_status(config) == {}


def test_inventory_file_roots_are_absolute_paths(tmp_path: Path) -> None:
    write_toml(tmp_path, 'inventory_file_roots = ["/srv/app", "/etc"]\n')
    assert load_config(tmp_path).inventory_file_roots == ("/srv/app", "/etc")
    for text in ('inventory_file_roots = ["etc"]\n', 'inventory_file_roots = "/etc"\n'):
        write_toml(tmp_path, text)
        assert "inventory_file_roots must be a list of absolute paths" in config_error(tmp_path)
