"""Custom inventory files (SSM's format) in a real folder: good ones, and each bad one
costing only itself, with an error naming it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.inventory import schema
from agent.inventory.base import CollectContext
from agent.inventory.custom import collect_custom
from agent.inventory.gather import Plan, gather
from agent.tools import Completed


def _no_tools(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
    raise AssertionError(f"custom inventory runs no tool, not {argv}")


def _ctx(folder: Path) -> CollectContext:
    return CollectContext(platform="Linux", run=_no_tools, custom_dir=folder)


def _write(folder: Path, name: str, document: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _doc(type_name: str = "Custom:RackInfo", content: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "SchemaVersion": "1.0",
        "TypeName": type_name,
        "Content": {"RackLocation": "Bay B"} if content is None else content,
        **extra,
    }


def _one_error(folder: Path, name: str, document: Any) -> str:
    path = _write(folder, name, document)
    _write(folder, "good.json", _doc("Custom:Good"))
    found, errors = collect_custom(_ctx(folder))
    assert found == {"Custom:Good": [{"RackLocation": "Bay B"}]}, "the good file goes on"
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}: ")
    assert "\n" not in errors[0]
    return errors[0]


def test_object_and_list_content(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    _write(folder, "rack.json", _doc(content={"RackLocation": "Bay B", "Slot": 12, "Load": 0.5}))
    _write(
        folder,
        "disks.json",
        _doc("Custom:Disks", [{"Name": "sda", "SizeGB": "100"}, {"Name": "sdb", "SizeGB": "200"}]),
    )
    _write(folder, "empty.json", _doc("Custom:Empty", []))
    _write(folder, "notes.txt", "not a custom file")
    _write(folder, ".hidden.json", "{")
    found, errors = collect_custom(_ctx(folder))
    assert errors == []
    assert found == {
        "Custom:RackInfo": [{"RackLocation": "Bay B", "Slot": "12", "Load": "0.5"}],
        "Custom:Disks": [{"Name": "sda", "SizeGB": "100"}, {"Name": "sdb", "SizeGB": "200"}],
        "Custom:Empty": [],
    }


def test_ssm_agent_files_with_a_bom_and_extra_keys(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    text = json.dumps(_doc(Comment="made by a script"))
    (folder / "rack.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    found, errors = collect_custom(_ctx(folder))
    assert errors == []
    assert found == {"Custom:RackInfo": [{"RackLocation": "Bay B"}]}


def test_no_folder_no_custom_inventory(tmp_path: Path) -> None:
    assert collect_custom(_ctx(tmp_path / "missing")) == ({}, [])


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{not json", "not JSON"),
        ('{"SchemaVersion": "1.0", "TypeName": "Custom:A", "Content": {"a": NaN}}', "not JSON"),
        ("[]", "not a JSON object"),
        (_doc(SchemaVersion="one"), "SchemaVersion must be"),
        ({"TypeName": "Custom:A", "Content": {}}, "SchemaVersion must be"),
        (_doc(""), "TypeName is required"),
        (_doc("AWS:Application"), "TypeName AWS:Application is reserved"),
        (_doc("Corral:User"), "TypeName Corral:User is reserved"),
        (_doc("RackInfo"), "must be Custom:"),
        (_doc("Custom:"), "must be Custom:"),
        (_doc("Custom:rack info"), "must be Custom:"),
        (_doc("Custom:" + "x" * 94), "must be Custom:"),
        ({"SchemaVersion": "1.0", "TypeName": "Custom:A"}, "Content is required"),
        (_doc(content="Bay B"), "Content must be an object or a list"),
        (_doc(content=[{"a": "1"}, "b"]), "Content[1] is not an object"),
        (_doc(content={"a": {"b": "c"}}), "Content[0].a is nested"),
        (_doc(content={"a": ["b"]}), "Content[0].a is nested"),
        (_doc(content={"a": None}), "Content[0].a is null"),
        (_doc(content={"a": True}), "Content[0].a is true"),
        (_doc(content={"": "x"}), "attribute name ''"),
        (_doc(content={"x" * 65: "x"}), "must be 1 to 64"),
        (_doc(content={"a/b": "x"}), "attribute name 'a/b'"),
        (_doc(content={"a": "x" * 4097}), "Content[0].a has 4097 characters, over 4096"),
        (_doc(content={f"a{i}": "x" for i in range(51)}), "51 attributes, over the limit of 50"),
        (_doc(content=[{"a": "1"}] * 10_001), "10001 items, over the limit of 10000"),
    ],
)
def test_bad_files(tmp_path: Path, document: Any, reason: str) -> None:
    error = _one_error(tmp_path / "custom", "bad.json", document)
    assert reason in error


def test_limits_at_the_edge_are_fine(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    content = [{f"a{i}": "x" * 10 for i in range(schema.CUSTOM_MAX_ATTRIBUTES)}]
    _write(folder, "wide.json", _doc("Custom:Wide", content))
    _write(folder, "long.json", _doc("Custom:" + "x" * 93, {"a": "x" * schema.VALUE_MAX_CHARS}))
    _write(folder, "many.json", _doc("Custom:Many", [{"a": "1"}] * schema.CUSTOM_MAX_ITEMS))
    found, errors = collect_custom(_ctx(folder))
    assert errors == []
    assert len(found["Custom:Many"]) == schema.CUSTOM_MAX_ITEMS


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    # 64 GiB, sparse: reading it whole would exhaust memory; it is refused by its size.
    with (folder / "huge.json").open("wb") as handle:
        handle.truncate(64 * 1024**3)
    _write(folder, "good.json", _doc("Custom:Good"))
    found, errors = collect_custom(_ctx(folder))
    assert list(found) == ["Custom:Good"]
    assert errors == [
        f"{folder / 'huge.json'}: 68,719,476,736 bytes, over the limit of "
        f"{schema.CUSTOM_MAX_BYTES:,}"
    ]


def test_a_file_just_over_the_size_limit(tmp_path: Path) -> None:
    padding = " " * (schema.CUSTOM_MAX_BYTES + 1 - len(json.dumps(_doc())))
    document = json.dumps(_doc()) + padding
    assert len(document) == schema.CUSTOM_MAX_BYTES + 1
    assert "over the limit" in _one_error(tmp_path / "custom", "big.json", document)


def test_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "latin1.json").write_bytes(
        b'{"SchemaVersion": "1.0", "TypeName": "Custom:A", "Content": {"a": "caf\xe9"}}'
    )
    found, errors = collect_custom(_ctx(folder))
    assert found == {}
    assert errors[0].startswith(f"{folder / 'latin1.json'}: not JSON")


def test_the_same_type_twice(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    _write(folder, "a.json", _doc(content={"From": "a"}))
    _write(folder, "b.json", _doc(content={"From": "b"}))
    found, errors = collect_custom(_ctx(folder))
    assert found == {"Custom:RackInfo": [{"From": "a"}]}
    assert errors == [f"{folder / 'b.json'}: TypeName Custom:RackInfo is already given by a.json"]


def test_more_types_than_the_limit(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    for i in range(schema.CUSTOM_MAX_TYPES + 2):
        _write(folder, f"t{i:02}.json", _doc(f"Custom:T{i:02}"))
    found, errors = collect_custom(_ctx(folder))
    assert len(found) == schema.CUSTOM_MAX_TYPES == 20
    assert "Custom:T20" not in found
    assert errors == [
        f"{folder / 't20.json'}: more than 20 custom types on one node",
        f"{folder / 't21.json'}: more than 20 custom types on one node",
    ]


def test_a_bad_file_does_not_count_towards_the_type_limit(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    _write(folder, "a-bad.json", "{")
    for i in range(schema.CUSTOM_MAX_TYPES):
        _write(folder, f"t{i:02}.json", _doc(f"Custom:T{i:02}"))
    found, errors = collect_custom(_ctx(folder))
    assert len(found) == 20
    assert len(errors) == 1


def test_symlinks_and_special_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    secret = _write(tmp_path, "secret.json", _doc("Custom:Secret"))
    folder.mkdir()
    (folder / "link.json").symlink_to(secret)
    os.mkfifo(folder / "pipe.json")  # opening it for reading must not block
    (folder / "dir.json").mkdir()
    found, errors = collect_custom(_ctx(folder))
    assert found == {}
    assert sorted(errors) == [
        f"{folder / 'dir.json'}: not a regular file",
        f"{folder / 'link.json'}: a symlink (not followed: put the file itself here)",
        f"{folder / 'pipe.json'}: not a regular file",
    ]


def test_in_a_gathering_bad_files_are_reported_and_the_rest_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    _write(folder, "bad.json", _doc("AWS:Application"))
    _write(folder, "rack.json", _doc(content={"Slot": 12}))
    out = gather(Plan(types=[], custom=True), _ctx(folder), custom=collect_custom)
    assert out.types == {"Custom:RackInfo": [{"Slot": "12"}]}
    assert [e["source"] for e in out.errors] == ["custom"]
    assert str(folder / "bad.json") in out.errors[0]["reason"]
    assert out.custom_complete is False
    # All good: the custom inventory is complete (types missing now may be deleted).
    (folder / "bad.json").unlink()
    out = gather(Plan(types=[], custom=True), _ctx(folder), custom=collect_custom)
    assert out.errors == []
    assert out.custom_complete is True
