"""server.compliance_history_retention: a duration (default 90 days) the service prunes by;
a bad one is a one-line SetupError."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.config import load_config
from control_plane.services.hub import ControlPlane
from tests.unit.conftest import ServerDir
from tests.unit.test_server_config import setup_error, write


def test_the_default_is_90_days(tmp_path: Path) -> None:
    write(tmp_path, "")
    assert load_config(tmp_path).compliance_history_retention_seconds == 90 * 86400


def test_the_server_prunes_by_the_configured_retention(server_dir: ServerDir) -> None:
    with (server_dir.path / "config.toml").open("a") as fh:
        fh.write('compliance_history_retention = "12h"\n')
    config = load_config(server_dir.path)
    assert config.compliance_history_retention_seconds == 12 * 3600
    assert ControlPlane(config).compliance.retention_seconds == 12 * 3600


@pytest.mark.parametrize("value", ['"90"', '"0d"', '"ninety days"', "90"])
def test_a_bad_retention_is_refused(tmp_path: Path, value: str) -> None:
    write(tmp_path, f"[server]\ncompliance_history_retention = {value}\n")
    message = setup_error(tmp_path)
    assert "compliance_history_retention" in message
