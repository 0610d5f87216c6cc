"""Profiles: the config file, its permissions, env overrides and the errors users see."""

from __future__ import annotations

import json
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli.context import Runtime
from control_plane.cli.errors import ConfigCorrupt, ConfigError, NoProfile
from control_plane.cli.main import cli
from control_plane.cli.profiles import config_path, load_config, resolve, save_profile

URL = "https://corral.test:8443"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    return path


def run(args: list[str], handler: Handler, env: dict[str, str] | None = None) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(handler))
    return CliRunner().invoke(cli, args, obj=runtime, env=env)


def nodes_ok(seen: list[httpx.Request]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"nodes": []})

    return handler


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


# -- where the file lives ----------------------------------------------------------------


def test_config_path_prefers_corral_config_then_xdg_then_home(tmp_path: Path) -> None:
    explicit = tmp_path / "x.toml"
    assert config_path({"CORRAL_CONFIG": str(explicit)}) == explicit
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "corral" / "config.toml"
    assert config_path({}) == Path.home() / ".config" / "corral" / "config.toml"


# -- save / load -------------------------------------------------------------------------


def test_save_profile_writes_the_documented_format_with_private_modes(cfg: Path) -> None:
    returned = save_profile("dev", url=URL, token="crl_a", ca_file="/abs/ca.pem", path=cfg)

    assert returned == cfg
    data = tomllib.loads(cfg.read_text())
    assert data == {
        "current_profile": "dev",
        "profiles": {"dev": {"url": URL, "token": "crl_a", "ca_file": "/abs/ca.pem"}},
    }
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == 0o700


def test_save_profile_defaults_to_corral_config(cfg: Path) -> None:
    assert save_profile("dev", url=URL, token="t", ca_file="/ca.pem") == cfg


def test_save_profile_keeps_other_profiles_and_can_leave_current_alone(cfg: Path) -> None:
    save_profile("a", url=URL, token="ta", ca_file="/a.pem", path=cfg)
    save_profile("b", url=URL, token="tb", ca_file="/b.pem", make_current=False, path=cfg)

    config = load_config(cfg)
    assert config.current_profile == "a"
    assert sorted(config.profiles) == ["a", "b"]
    assert config.profiles["b"].token == "tb"

    save_profile("b", url=URL, token="tb2", ca_file="/b.pem", path=cfg)
    config = load_config(cfg)
    assert config.current_profile == "b"
    assert config.profiles["b"].token == "tb2"


def test_save_profile_refuses_to_overwrite_a_corrupted_file(cfg: Path) -> None:
    cfg.parent.mkdir()
    cfg.write_text("current_profile = [oops\n")
    with pytest.raises(ConfigCorrupt):
        save_profile("a", url=URL, token="t", ca_file="/a.pem", path=cfg)
    assert cfg.read_text() == "current_profile = [oops\n"


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_save_profile_rejects_names_unfit_for_toml_keys_and_file_names(
    cfg: Path, name: str
) -> None:
    with pytest.raises(ConfigError):
        save_profile(name, url=URL, token="t", ca_file="/a.pem", path=cfg)
    assert not cfg.exists()


def test_missing_file_is_an_empty_config(cfg: Path) -> None:
    config = load_config(cfg)
    assert config.current_profile is None
    assert config.profiles == {}


# -- selection and env overrides ---------------------------------------------------------


def test_current_profile_is_used_and_sends_its_token(cfg: Path) -> None:
    save_profile("dev", url=URL, token="crl_dev", ca_file="/ca.pem", path=cfg)
    seen: list[httpx.Request] = []

    result = run(["nodes", "list"], nodes_ok(seen))

    assert result.exit_code == 0, result.output
    assert str(seen[0].url) == f"{URL}/v1/nodes?limit=1000"
    assert seen[0].headers["authorization"] == "Bearer crl_dev"


def test_global_profile_option_selects_another_profile(cfg: Path) -> None:
    save_profile("a", url="https://a.test", token="ta", ca_file="/a.pem", path=cfg)
    save_profile("b", url="https://b.test", token="tb", ca_file="/b.pem", path=cfg)
    seen: list[httpx.Request] = []

    result = run(["--profile", "a", "nodes", "list"], nodes_ok(seen))

    assert result.exit_code == 0, result.output
    assert seen[0].url.host == "a.test"
    assert seen[0].headers["authorization"] == "Bearer ta"


def test_env_vars_override_profile_fields(cfg: Path) -> None:
    save_profile("dev", url=URL, token="crl_dev", ca_file="/ca.pem", path=cfg)
    seen: list[httpx.Request] = []
    env = {"CORRAL_URL": "https://other.test:9443", "CORRAL_TOKEN": "crl_env"}

    result = run(["nodes", "list"], nodes_ok(seen), env=env)

    assert result.exit_code == 0, result.output
    assert str(seen[0].url) == "https://other.test:9443/v1/nodes?limit=1000"
    assert seen[0].headers["authorization"] == "Bearer crl_env"


def test_env_vars_alone_are_enough_without_a_config_file(cfg: Path) -> None:
    seen: list[httpx.Request] = []
    env = {"CORRAL_URL": URL, "CORRAL_TOKEN": "crl_env", "CORRAL_CA_FILE": "/env-ca.pem"}

    result = run(["nodes", "list"], nodes_ok(seen), env=env)

    assert result.exit_code == 0, result.output
    assert seen[0].headers["authorization"] == "Bearer crl_env"
    assert resolve(cfg, env=env).ca_file == "/env-ca.pem"


def test_resolve_applies_ca_file_override(cfg: Path) -> None:
    save_profile("dev", url=URL, token="t", ca_file="/ca.pem", path=cfg)
    profile = resolve(cfg, env={"CORRAL_CA_FILE": "/other.pem"})
    assert (profile.name, profile.url, profile.ca_file) == ("dev", URL, "/other.pem")


# -- errors users see --------------------------------------------------------------------


def test_no_profile_and_no_env_tells_the_user_to_log_in(cfg: Path) -> None:
    result = run(["nodes", "list"], nodes_ok([]))
    assert "corral login" in one_line_error(result)


def test_url_without_token_in_env_is_not_enough(cfg: Path) -> None:
    with pytest.raises(NoProfile):
        resolve(cfg, env={"CORRAL_URL": URL})


def test_unknown_profile_is_named_in_the_error(cfg: Path) -> None:
    save_profile("dev", url=URL, token="t", ca_file="/ca.pem", path=cfg)
    result = run(["--profile", "prod", "nodes", "list"], nodes_ok([]))
    message = one_line_error(result)
    assert "'prod'" in message
    assert "corral login --profile prod" in message


@pytest.mark.parametrize(
    "content",
    [
        "current_profile = [oops\n",  # not TOML
        "\xff\xfe garbage",  # not UTF-8 once encoded as latin-1 below
        'profiles = "nope"\n',
        "[profiles.dev]\nurl = 'https://x'\n",  # no token
        "[profiles.dev]\nurl = 'https://x'\ntoken = 't'\nca_file = 3\n",
        'current_profile = "gone"\n[profiles.dev]\nurl = "https://x"\ntoken = "t"\n',
        "current_profile = 1\n",
    ],
)
def test_corrupted_config_is_one_line_naming_the_file(cfg: Path, content: str) -> None:
    cfg.parent.mkdir()
    cfg.write_bytes(content.encode("latin-1"))

    result = run(["nodes", "list"], nodes_ok([]))

    assert str(cfg) in one_line_error(result)


def test_unreadable_config_is_one_line_naming_the_file(cfg: Path) -> None:
    cfg.mkdir(parents=True)  # a directory where the file should be
    result = run(["nodes", "list"], nodes_ok([]))
    assert str(cfg) in one_line_error(result)


def test_login_output_json_names_the_saved_profile(cfg: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read: the transport is injected")
    result = run(
        ["login", "--url", URL, "--token", "crl_x", "--ca-file", str(ca), "-o", "json"],
        nodes_ok([]),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "profile": "default",
        "url": URL,
        "ca_file": str(ca),
        "config_file": str(cfg),
    }
    assert load_config(cfg).current_profile == "default"
