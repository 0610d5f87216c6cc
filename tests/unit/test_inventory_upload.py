"""The agent's side of delta upload: a type's hash ignores item order, big content is split
into parts under the message limit, an unchanged gathering queues one small summary, the
hashes are recorded with their uploads or not at all, and a resync makes a type go again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent import wire
from agent.inventory import content, schema, upload
from agent.inventory.gather import GatherInputError, plan
from agent.outbox import Outbox

APP = "AWS:Application"


def packages(n: int, version: str = "1.0") -> list[dict[str, str]]:
    return [
        {
            "Name": f"package-{i:05}",
            "Version": version,
            "PackageManager": "dpkg",
            "Summary": "x" * 120,
        }
        for i in range(n)
    ]


def queued(outbox: Outbox) -> list[wire.Message]:
    return outbox._peek(10_000)


def test_the_hash_ignores_order_and_the_parts_stay_under_the_limit() -> None:
    items = packages(2_000)
    assert content.content_hash(items) == content.content_hash(list(reversed(items)))
    assert content.content_hash(items) != content.content_hash(packages(2_000, "1.1"))
    parts = content.split(items)
    assert len(parts) > 1 and sum(len(p) for p in parts) == 2_000
    for part in parts:
        assert len(json.dumps(part, separators=(",", ":"))) <= schema.PART_MAX_BYTES
    assert content.split([]) == [[]]


def test_clean_keeps_the_types_attributes_as_strings() -> None:
    raw = [{"Name": "bash", "Version": 5, "Colour": "red", "Epoch": None, "URL": ""}]
    items, cut = content.clean(APP, raw)
    assert items == [{"Name": "bash", "Version": "5"}] and cut == 0
    custom, _ = content.clean("Custom:Rack", [{"Row": 3, "Ok": True}])
    assert custom == [{"Row": "3", "Ok": "true"}]


def test_an_unchanged_gathering_queues_one_small_message(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    gathered = {APP: packages(2_000), "AWS:Network": [{"Name": "eth0", "IPV4": "10.0.0.2"}]}
    first = upload.queue(outbox, gathered, custom_complete=True, errors=[])
    messages = queued(outbox)
    parts = [m for m in messages if m["type"] == wire.MSG_INVENTORY_PART]
    assert len(parts) == first.messages - 1 >= 3
    assert messages[-1]["type"] == wire.MSG_INVENTORY
    for message in messages:
        assert len(content.canonical_message(message)) <= wire.MAX_MESSAGE_BYTES
    outbox._remove([m["id"] for m in messages])
    second = upload.queue(outbox, gathered, custom_complete=True, errors=[])
    (only,) = queued(outbox)
    assert only["type"] == wire.MSG_INVENTORY and second.messages == 1
    assert second.bytes < 1024 and not any(t.changed for t in second.types)
    assert set(only["body"]["hashes"]) == set(gathered)
    # The server lacks the network type: it goes again, alone
    outbox._remove([only["id"]])
    upload.forget(outbox, ["AWS:Network"])
    upload.queue(outbox, gathered, custom_complete=True, errors=[])
    again = queued(outbox)
    assert [m["body"].get("type_name") for m in again] == ["AWS:Network", None]
    outbox.close()


def test_hashes_are_recorded_with_their_uploads_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    gathered = {APP: packages(10)}

    def full(*_args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("agent.outbox._insert", full)
    with pytest.raises(sqlite3.OperationalError):
        upload.queue(outbox, gathered, custom_complete=False, errors=[])
    monkeypatch.undo()
    assert queued(outbox) == []
    upload.queue(outbox, gathered, custom_complete=False, errors=[])
    assert [m["type"] for m in queued(outbox)] == [wire.MSG_INVENTORY_PART, wire.MSG_INVENTORY]
    outbox.close()


def test_the_steps_inputs_are_checked() -> None:
    found = plan({"applications": "Disabled", "files": '[{"Path": "/etc"}]'})
    assert APP not in found.types and "AWS:File" in found.types
    assert found.types[0] == "AWS:InstanceInformation"
    for inputs, why in [
        ({"applications": "yes"}, "applications must be Enabled or Disabled"),
        ({"files": "{not json"}, "files is not JSON"),
        ({"files": '{"Path": "/etc"}'}, "files must be a JSON list of objects"),
        ({"colour": "Enabled"}, "unknown input 'colour'"),
    ]:
        with pytest.raises(GatherInputError, match=why):
            plan(inputs)
