"""``corral-agent register`` input checks: the server URL and the pinned CA hash are checked
before anything is fetched or written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent import wire
from agent.config import load_config
from agent.errors import AlreadyRegistered, RegistrationError
from agent.registration import RegisterRequest, normalize_url, register
from tests.unit.conftest import ServerDir

GOOD_HASH = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://corral.example", "https://corral.example"),
        ("https://corral.example:8443", "https://corral.example:8443"),
        ("https://corral.example:8443/", "https://corral.example:8443"),
        ("  https://10.0.0.5:8443  ", "https://10.0.0.5:8443"),
        ("https://[::1]:8443", "https://[::1]:8443"),
    ],
)
def test_good_urls_are_normalized(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://corral.example:8443", "expected https://HOST"),
        ("ftp://corral.example", "expected https://HOST"),
        ("corral.example:8443", "expected https://HOST"),
        ("https://", "expected https://HOST"),
        ("https://:8443", "expected https://HOST"),
        ("", "expected https://HOST"),
        ("https://corral.example:99999", "bad port"),
        ("https://corral.example:https", "bad port"),
        ("https://corral.example:8443/v1", "give only https://HOST"),
        ("https://corral.example/?x=1", "give only https://HOST"),
        ("https://corral.example#frag", "give only https://HOST"),
    ],
)
def test_malformed_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(RegistrationError, match="malformed URL") as caught:
        normalize_url(url)
    assert reason in caught.value.message


def test_port_zero_is_refused() -> None:
    with pytest.raises(RegistrationError, match="bad port"):
        normalize_url("https://corral.example:0")


def test_credentials_in_the_url_are_refused() -> None:
    with pytest.raises(RegistrationError):
        normalize_url("https://admin:secret@corral.example:8443")


def attempt(state_dir: Path, url: str = "https://127.0.0.1:9", ca_hash: str = GOOD_HASH) -> None:
    request = RegisterRequest(
        url=url, activation_id="a", activation_code="c", ca_hash=ca_hash, name=""
    )
    asyncio.run(register(load_config(state_dir), request))


@pytest.mark.parametrize(
    "ca_hash",
    [
        "",
        "sha256:",
        "0123456789abcdef" * 4,  # no algorithm prefix
        "sha1:" + "ab" * 20,
        "sha256:" + "0123456789abcdef" * 4 + "0",  # 65 digits
        "sha256:" + ("0123456789abcdef" * 4)[:63],  # 63 digits
        "sha256:" + "g" * 64,  # not hex
        "sha256 " + "0123456789abcdef" * 4,
    ],
)
def test_bad_ca_hash_is_refused_before_anything_is_written(tmp_path: Path, ca_hash: str) -> None:
    state_dir = tmp_path / "state"
    with pytest.raises(RegistrationError, match="--ca-hash must be sha256: followed by 64 hex"):
        attempt(state_dir, ca_hash=ca_hash)
    assert not state_dir.exists()


def test_bad_url_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with pytest.raises(RegistrationError, match="malformed URL"):
        attempt(state_dir, url="http://127.0.0.1:9")
    assert not state_dir.exists()


def test_upper_case_ca_hash_is_accepted(tmp_path: Path) -> None:
    # A registered state dir stops the attempt right after the input checks, before any
    # network traffic: reaching AlreadyRegistered proves the hash passed.
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text("{}", encoding="utf-8")
    with pytest.raises(AlreadyRegistered, match="use --force"):
        attempt(state_dir, ca_hash="  SHA256:" + "0123456789ABCDEF" * 4 + " ")


def test_the_agent_pins_the_ca_the_way_the_server_prints_it(server_dir: ServerDir) -> None:
    pem = (server_dir.path / "ca.pem").read_text(encoding="utf-8")
    assert wire.ca_pin(pem) == server_dir.ca_hash
    assert wire.ca_pin("\n" + pem + "\n\n") == server_dir.ca_hash


@pytest.mark.parametrize("text", ["", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_a_ca_that_is_not_pem_cannot_be_pinned(text: str) -> None:
    with pytest.raises(ValueError):
        wire.ca_pin(text)
