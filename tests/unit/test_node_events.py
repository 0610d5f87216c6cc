"""Node events: the agent's reports about itself (agent/state_recovery.py) reach the
operator through ``GET /v1/nodes/{id}/events``; bad ones are rejected, nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent import wire
from agent.config import load_config
from agent.state_recovery import CORRUPT_DIR, check_status_file, quarantine
from tests.unit.conftest import Api, RunApi
from tests.unit.test_authz_api import hdr, token


def event(**body: Any) -> dict[str, Any]:
    full = {"code": wire.EVENT_STATE_FILE_CORRUPT, "severity": "error", "message": "m", **body}
    return dict(wire.make_message(wire.MSG_NODE_EVENT, full))


def test_events_are_stored_shown_and_scoped(run_api: RunApi) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node(tags={"team": "web"})
        other = await api.new_node(tags={"team": "db"})
        sent = await api.send(
            node, [event(file="outbox.db", moved_to="corrupt/outbox.db.x", extra="dropped")]
        )
        assert sent.status_code == 200, sent.text
        shown = await api.client.get(f"/v1/nodes/{node.node_id}/events", headers=api.admin)
        (got,) = shown.json()["events"]
        assert (got["code"], got["file"], got["moved_to"]) == (
            "state_file_corrupt", "outbox.db", "corrupt/outbox.db.x",
        )  # fmt: skip
        assert "extra" not in got and shown.json()["next_token"] is None
        assert (
            await api.client.get(f"/v1/nodes/{other.node_id}/events", headers=api.admin)
        ).json()["events"] == []
        policy = {
            "Version": "2026-01-01",
            "Statement": [{"Effect": "Allow", "Action": "nodes:Get", "Resource": "node/*",
                           "Condition": {"StringEquals": {"node:tag/team": "db"}}}],
        }  # fmt: skip
        db_team = hdr(await token(api, "db", policy=policy))
        refused = await api.client.get(f"/v1/nodes/{node.node_id}/events", headers=db_team)
        assert refused.status_code == 403
        missing = await api.client.get("/v1/nodes/mi-00000000000000000/events", headers=api.admin)
        assert missing.status_code == 404

    run_api(scenario)


@pytest.mark.parametrize(
    "body", [{"severity": "fatal"}, {"code": ""}, {"code": "x" * 65}, {"code": 5}]
)
def test_bad_events_are_refused(run_api: RunApi, body: dict[str, Any]) -> None:
    async def scenario(api: Api) -> None:
        node = await api.new_node()
        response = await api.send(node, [event(**body)])
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]  # rejected alone (issue 17)
        assert result["status"] == wire.RESULT_REJECTED and "node_event" in result["reason"]
        shown = await api.client.get(f"/v1/nodes/{node.node_id}/events", headers=api.admin)
        assert shown.json()["events"] == []

    run_api(scenario)


def test_quarantine_moves_a_file_and_its_siblings(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).write_text(suffix or "main")
    found = quarantine(tmp_path, path, reason="r", consequence="c", siblings=("-wal", "-shm"))
    assert not path.exists() and not (tmp_path / "outbox.db-wal").exists()
    moved = sorted(p.name for p in (tmp_path / CORRUPT_DIR).iterdir())
    assert moved == [Path(found.moved_to).name + s for s in ("", "-shm", "-wal")]
    assert found.event()["body"]["file"] == "outbox.db"


def test_a_status_file_that_is_not_json_is_moved_aside(tmp_path: Path) -> None:
    config = load_config(tmp_path / "state")
    config.state_dir.mkdir(parents=True)
    config.status_file.write_text("{not json")
    (found,) = check_status_file(config)
    assert not config.status_file.exists() and found.file == "status.json"
    config.status_file.write_text('{"pid": 1}')
    assert check_status_file(config) == []
