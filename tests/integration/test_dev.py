"""`corral-server dev`: server + local agent in the foreground, a CLI profile, reusable data."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.integration.harness import BIN, Proc, free_port, run, wait_for

pytestmark = pytest.mark.integration


def test_dev_mode_runs_server_and_agent_and_reuses_its_data(tmp_path: Path) -> None:
    port = free_port()
    env = {"CORRAL_CONFIG": str(tmp_path / "config.toml")}
    data = tmp_path / ".corral-dev"
    cmd = [
        str(BIN / "corral-server"),
        "dev",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{port}",
    ]

    def nodes() -> list[dict[str, object]]:
        result = run(
            BIN / "corral", "--profile", "dev", "nodes", "list", "--output", "json", env=env
        )
        if result.returncode != 0:
            return []
        listed: list[dict[str, object]] = json.loads(result.stdout)
        return listed

    node_ids = []
    for attempt in (1, 2):
        proc = Proc(cmd, tmp_path, f"dev-{attempt}", env=env)
        try:
            # The banner comes once the agent is started; on the second start the node may
            # still show Online from the first, before that.
            online = wait_for(
                lambda p=proc: (
                    "Admin token:" in p.stderr
                    and [n for n in nodes() if n["status"] == "Online" and n["platform"]]
                ),
                60,
                "the banner and the local agent Online",
            )
            assert len(online) == 1
            node_ids.append(online[0]["node_id"])
            assert f"https://127.0.0.1:{port}" in proc.stderr
            assert "Admin token:  crl_" in proc.stderr and "CA hash:      sha256:" in proc.stderr
            assert (tmp_path / "config.toml").stat().st_mode & 0o777 == 0o600
            proc.signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
            assert "Traceback" not in proc.stderr
        finally:
            proc.kill9()
    assert node_ids[0] == node_ids[1]
    assert (data / "corral.db").exists() and os.stat(
        data / "agent" / "node.key"
    ).st_mode & 0o777 == 0o600
