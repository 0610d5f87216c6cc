"""aws:softwareInventory as a document worker runs it: this machine's inventory gathered for
real and queued in the agent's outbox; bad inputs fail the step with one line and queue
nothing; a bad custom file is reported by name while the rest is queued; a step without agent
state (run-document) gathers and says it uploaded nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent import wire
from agent.outbox import Outbox
from agent.plugins.base import InventorySettings, StepContext
from agent.plugins.output import CappedOutput
from agent.plugins.software_inventory import SoftwareInventory

QUIET = {"listeningPorts": "Disabled", "users": "Disabled", "services": "Disabled"}


def context(root: Path, state: Path | None) -> StepContext:
    root.mkdir(parents=True, exist_ok=True)
    return StepContext(
        command_id="c1",
        step_name="collectSoftwareInventoryItems",
        work_dir=root,
        stdout=CappedOutput(root / "out"),
        stderr=CappedOutput(root / "err"),
        deadline=time.monotonic() + 120,
        platform="Linux",
        node_id="mi-0123456789abcdef0",
        inventory=InventorySettings(state, ("/etc",)) if state is not None else None,
    )


def output(root: Path) -> tuple[str, str]:
    return (root / "out").read_text(), (root / "err").read_text()


def queued(state: Path) -> list[wire.Message]:
    outbox = Outbox(state / "outbox.db")
    try:
        return outbox._peek(1000)
    finally:
        outbox.close()


def test_this_machine_is_gathered_and_queued(tmp_path: Path) -> None:
    state = tmp_path / "state"
    custom = state / "inventory" / "custom"
    custom.mkdir(parents=True)
    (custom / "rack.json").write_text(
        json.dumps({"SchemaVersion": "1.0", "TypeName": "Custom:Rack", "Content": {"Row": "C"}})
    )
    (custom / "bad.json").write_text("[1, 2")
    step = tmp_path / "step"
    result = SoftwareInventory().execute(context(step, state), QUIET, {})
    out, err = output(step)
    assert result.status == wire.ST_SUCCESS, (out, err)
    assert "bad.json" in err and "AWS:Application" in out and "Custom:Rack" in out
    messages = queued(state)
    summary = messages[-1]
    assert summary["type"] == wire.MSG_INVENTORY
    assert {"AWS:Application", "AWS:InstanceInformation", "Custom:Rack"} <= set(
        summary["body"]["hashes"]
    )
    assert summary["body"]["custom_complete"] is False  # a bad file: drop nothing
    assert any("bad.json" in e["reason"] for e in summary["body"]["errors"])
    parts = [m for m in messages if m["type"] == wire.MSG_INVENTORY_PART]
    info = next(m for m in parts if m["body"]["type_name"] == "AWS:InstanceInformation")
    assert info["body"]["items"][0]["InstanceId"] == "mi-0123456789abcdef0"


def test_bad_inputs_fail_the_step_and_queue_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for index, (inputs, why) in enumerate(
        [
            ({"applications": "Yes"}, "applications must be Enabled or Disabled"),
            ({"files": "[{]"}, "files is not JSON"),
            ({"files": '[{"Path": "relative"}]'}, "relative"),
            ({"windowsRegistry": '[{"Path": 5}]'}, "Path"),
        ]
    ):
        step = tmp_path / f"step{index}"
        result = SoftwareInventory().execute(context(step, state), inputs, {})
        assert result.status == wire.ST_FAILED, inputs
        assert why in result.message and "\n" not in result.message, result.message
    assert not (state / "outbox.db").exists() or queued(state) == []


def test_without_agent_state_it_gathers_and_uploads_nothing(tmp_path: Path) -> None:
    step = tmp_path / "step"
    inputs = {**QUIET, "applications": "Disabled", "networkConfig": "Disabled"}
    result = SoftwareInventory().execute(context(step, None), inputs, {})
    out, _ = output(step)
    assert result.status == wire.ST_SUCCESS
    assert "AWS:InstanceInformation" in out and "not uploaded" in out
