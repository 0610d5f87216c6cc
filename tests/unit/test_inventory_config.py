"""server.inventory_history_retention (default 30 days) and inventory_upload_mib_per_hour
(default 64): what the inventory service prunes by and each node's upload budget; a bad one is
a one-line SetupError."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.config import load_config
from control_plane.services.hub import ControlPlane
from tests.unit.conftest import ServerDir
from tests.unit.test_server_config import setup_error, write


def test_the_defaults(tmp_path: Path) -> None:
    write(tmp_path, "")
    config = load_config(tmp_path)
    assert config.inventory_history_retention_seconds == 30 * 86400
    assert config.inventory_upload_mib_per_hour == 64


def test_the_server_uses_the_configured_values(server_dir: ServerDir) -> None:
    with (server_dir.path / "config.toml").open("a") as fh:
        fh.write('inventory_history_retention = "12h"\ninventory_upload_mib_per_hour = 8\n')
    cp = ControlPlane(load_config(server_dir.path))
    assert cp.inventory.retention_seconds == 12 * 3600
    assert cp.inventory_ingest.budget.per_hour == 8 * 2**20


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('inventory_history_retention = "0d"', "inventory_history_retention"),
        ('inventory_history_retention = "a week"', "inventory_history_retention"),
        ("inventory_upload_mib_per_hour = 0", "inventory_upload_mib_per_hour"),
        ('inventory_upload_mib_per_hour = "64"', "inventory_upload_mib_per_hour"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, f"[server]\n{text}\n")
    assert key in setup_error(tmp_path)
