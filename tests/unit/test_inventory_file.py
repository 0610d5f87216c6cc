"""AWS:File on real trees in a throw-away root: specs, roots, symlinks, limits, hashes."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agent.inventory import file as file_inventory
from agent.inventory import registry, schema
from agent.inventory.base import CollectContext, FileSpec
from agent.inventory.file import parse_specs
from agent.tools import Completed

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _no_tools(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
    raise AssertionError(f"AWS:File runs no tool, not {argv}")


def _gather(
    root: Path, specs: list[dict[str, Any]], roots: tuple[str, ...] = ("/etc", "/opt")
) -> tuple[list[dict[str, str]], list[str]]:
    ctx = CollectContext(
        platform="Linux", run=_no_tools, root=root, files=parse_specs(specs), file_roots=roots
    )
    collect = registry.collector(schema.FILE, "Linux")
    assert collect is not None
    items = collect(ctx)
    allowed = set(schema.TYPES[schema.FILE].all_attributes)
    assert all(set(item) <= allowed for item in items)
    return items, ctx.warnings


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _names(items: list[dict[str, str]]) -> list[str]:
    return [f"{i['InstalledDir']}/{i['Name']}" for i in items]


def test_files_in_one_directory(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": "alpha\n", "etc/b.txt": "b", "etc/sub/c.conf": "c"})
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*.conf"]}])
    assert warnings == []
    assert len(items) == 1
    item = items[0]
    assert item["Name"] == "a.conf"
    assert item["InstalledDir"] == "/etc"
    assert item["Size"] == "6"
    assert RFC3339_UTC.match(item["ModificationTime"])
    assert RFC3339_UTC.match(item["LastAccessTime"])
    assert "Sha256" not in item


def test_times_are_the_files_own(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/old.conf": "x"})
    os.utime(tmp_path / "etc/old.conf", (1_600_000_000, 1_500_000_000))
    items, _ = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"]}])
    assert items[0]["ModificationTime"] == "2017-07-14T02:40:00Z"
    assert items[0]["LastAccessTime"] == "2020-09-13T12:26:40Z"


def test_recursive_in_name_order(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"etc/z.conf": "", "etc/b/y.conf": "", "etc/a/x.conf": "", "etc/a/deep/w.conf": ""},
    )
    items, warnings = _gather(
        tmp_path, [{"Path": "/etc", "Pattern": ["*.conf"], "Recursive": True}]
    )
    assert warnings == []
    assert _names(items) == ["/etc/z.conf", "/etc/a/x.conf", "/etc/a/deep/w.conf", "/etc/b/y.conf"]


def test_dir_depth_limit(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"etc/0.conf": "", "etc/1/1.conf": "", "etc/1/2/2.conf": "", "etc/1/2/3/3.conf": ""},
    )
    spec = {"Path": "/etc", "Pattern": ["*.conf"], "Recursive": True}
    items, _ = _gather(tmp_path, [{**spec, "DirDepthLimit": 1}])
    assert _names(items) == ["/etc/0.conf", "/etc/1/1.conf"]
    items, _ = _gather(tmp_path, [{**spec, "DirDepthLimit": 0}])
    assert _names(items) == ["/etc/0.conf"]
    items, _ = _gather(tmp_path, [spec])
    assert len(items) == 4


def test_dir_scan_limit_stops_the_spec_and_says_so(tmp_path: Path) -> None:
    _tree(tmp_path, {f"etc/d{i}/f.conf": "" for i in range(5)})
    spec = {"Path": "/etc", "Pattern": ["*"], "Recursive": True, "DirScanLimit": 3}
    items, warnings = _gather(tmp_path, [spec])
    # /etc itself, then d0 and d1: three directories scanned.
    assert _names(items) == ["/etc/d0/f.conf", "/etc/d1/f.conf"]
    assert warnings == ["AWS:File: /etc: stopped at the limit of 3 directories"]


def test_file_scan_limit(tmp_path: Path) -> None:
    _tree(tmp_path, {f"etc/f{i}.conf": "" for i in range(10)})
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "FileScanLimit": 4}])
    assert [i["Name"] for i in items] == ["f0.conf", "f1.conf", "f2.conf", "f3.conf"]
    assert warnings == ["AWS:File: /etc: stopped at the limit of 4 files"]
    # Exactly at the limit: nothing was left out, nothing to say.
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "FileScanLimit": 10}])
    assert len(items) == 10
    assert warnings == []


def test_ssm_file_limit_is_the_default(tmp_path: Path) -> None:
    assert parse_specs([{"Path": "/etc"}])[0].file_scan_limit == 500
    assert parse_specs([{"Path": "/etc"}])[0].dir_scan_limit == 5000


def test_files_over_all_specs_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_inventory, "MAX_FILES", 3)
    _tree(tmp_path, {"etc/a": "", "etc/b": "", "opt/c": "", "opt/d": ""})
    items, warnings = _gather(
        tmp_path, [{"Path": "/etc", "Pattern": ["*"]}, {"Path": "/opt", "Pattern": ["*"]}]
    )
    assert _names(items) == ["/etc/a", "/etc/b", "/opt/c"]
    assert warnings == ["AWS:File: /opt: stopped at the limit of 3 files"]


def test_a_path_outside_the_roots_is_skipped(tmp_path: Path) -> None:
    _tree(tmp_path, {"home/alice/.ssh/id_rsa": "secret", "etc/a.conf": ""})
    items, warnings = _gather(
        tmp_path,
        [
            {"Path": "/home/alice", "Pattern": ["*"], "Recursive": True},
            {"Path": "/etc/../home/alice", "Pattern": ["*"], "Recursive": True},
            {"Path": "/etc", "Pattern": ["*"]},
        ],
    )
    assert _names(items) == ["/etc/a.conf"]
    assert warnings == [
        "AWS:File: /home/alice is outside inventory_file_roots: skipped",
        "AWS:File: /etc/../home/alice is outside inventory_file_roots: skipped",
    ]


def test_a_symlinked_path_leading_out_is_skipped(tmp_path: Path) -> None:
    _tree(tmp_path, {"home/alice/id_rsa": "secret", "etc/keep.conf": ""})
    (tmp_path / "etc/alice").symlink_to(tmp_path / "home/alice")
    (tmp_path / "etc/rel").symlink_to("../home/alice")
    items, warnings = _gather(
        tmp_path,
        [
            {"Path": "/etc/alice", "Pattern": ["*"]},
            {"Path": "/etc/rel", "Pattern": ["*"]},
            {"Path": "/etc", "Pattern": ["*"], "Recursive": True},
        ],
    )
    # The walk of /etc does not follow the directory links either.
    assert _names(items) == ["/etc/keep.conf"]
    assert warnings == [
        "AWS:File: /etc/alice is outside inventory_file_roots: skipped",
        "AWS:File: /etc/rel is outside inventory_file_roots: skipped",
    ]


def test_a_symlinked_path_inside_the_roots_is_walked_where_it_leads(tmp_path: Path) -> None:
    _tree(tmp_path, {"opt/app/app.conf": ""})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/app").symlink_to(tmp_path / "opt/app")
    items, warnings = _gather(tmp_path, [{"Path": "/etc/app", "Pattern": ["*"]}])
    assert _names(items) == ["/opt/app/app.conf"]
    assert warnings == []


def test_symlinked_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"home/alice/secret": "s3cret", "etc/real.conf": "real", "opt/other": "o"})
    etc = tmp_path / "etc"
    (etc / "escape").symlink_to(tmp_path / "home/alice/secret")
    (etc / "inside").symlink_to(tmp_path / "opt/other")
    (etc / "dangling").symlink_to(tmp_path / "etc/missing")
    (etc / "loop").symlink_to(etc)
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "Sha256": True}])
    by_name = {i["Name"]: i for i in items}
    assert sorted(by_name) == ["inside", "real.conf"]
    assert by_name["inside"]["Size"] == "1"  # the file it leads to
    assert by_name["inside"]["Sha256"] == hashlib.sha256(b"o").hexdigest()
    assert warnings == [
        "AWS:File: /etc/escape: a symlink leading outside inventory_file_roots: skipped"
    ]


def test_many_escaping_symlinks_make_one_warning(tmp_path: Path) -> None:
    _tree(tmp_path, {"usr/share/ca/a.pem": "a", "usr/share/ca/b.pem": "b", "etc/certs/x": ""})
    for name in ("a.pem", "b.pem"):
        (tmp_path / "etc/certs" / name).symlink_to(tmp_path / "usr/share/ca" / name)
    items, warnings = _gather(tmp_path, [{"Path": "/etc/certs", "Pattern": ["*"]}])
    assert _names(items) == ["/etc/certs/x"]
    assert warnings == [
        "AWS:File: /etc/certs/a.pem (and 1 more): a symlink leading outside "
        "inventory_file_roots: skipped"
    ]


def test_a_loop_of_directory_links_ends(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a/f.conf": ""})
    (tmp_path / "etc/a/up").symlink_to(tmp_path / "etc")
    items, _ = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "Recursive": True}])
    assert _names(items) == ["/etc/a/f.conf"]


def test_sha256(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": "hello\n", "etc/empty": ""})
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "Sha256": True}])
    assert warnings == []
    by_name = {i["Name"]: i for i in items}
    assert by_name["a.conf"]["Sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert by_name["empty"]["Sha256"] == hashlib.sha256(b"").hexdigest()


def test_sha256_over_the_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_inventory, "SHA256_MAX_BYTES", 10)
    _tree(tmp_path, {"etc/big.bin": "x" * 11, "etc/small.bin": "x" * 10})
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "Sha256": True}])
    by_name = {i["Name"]: i for i in items}
    assert "Sha256" not in by_name["big.bin"]
    assert by_name["big.bin"]["Size"] == "11"  # still listed
    assert by_name["small.bin"]["Sha256"] == hashlib.sha256(b"x" * 10).hexdigest()
    assert warnings == [
        "AWS:File: /etc/big.bin is 11 bytes, over the Sha256 limit of 10: not hashed"
    ]


def test_special_files_are_not_listed_or_opened(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": ""})
    os.mkfifo(tmp_path / "etc/pipe")  # opening it to hash would block forever
    items, warnings = _gather(tmp_path, [{"Path": "/etc", "Pattern": ["*"], "Sha256": True}])
    assert [i["Name"] for i in items] == ["a.conf"]
    assert warnings == []


def test_go_patterns(tmp_path: Path) -> None:
    _tree(tmp_path, {f"etc/{n}": "" for n in ("a.conf", "b.conf", "ab.conf", "*star", "x.CONF")})
    cases = {
        "[^a]*.conf": ["b.conf"],
        "?.conf": ["a.conf", "b.conf"],
        "[a-b].conf": ["a.conf", "b.conf"],
        "\\**": ["*star"],
        "*.conf": ["a.conf", "ab.conf", "b.conf"],  # case-sensitive, as Go's Match
    }
    for pattern, expected in cases.items():
        items, _ = _gather(tmp_path, [{"Path": "/etc", "Pattern": [pattern]}])
        assert sorted(i["Name"] for i in items) == expected, pattern


def test_same_file_from_two_specs_once(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": "", "etc/sub/b.conf": ""})
    items, _ = _gather(
        tmp_path,
        [
            {"Path": "/etc", "Pattern": ["*.conf"], "Recursive": True},
            {"Path": "/etc/sub", "Pattern": ["*"]},
        ],
    )
    assert _names(items) == ["/etc/a.conf", "/etc/sub/b.conf"]


def test_missing_and_non_directory_paths(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": ""})
    items, warnings = _gather(
        tmp_path,
        [{"Path": "/etc/nothing", "Pattern": ["*"]}, {"Path": "/etc/a.conf", "Pattern": ["*"]}],
    )
    assert items == []
    assert warnings == [
        "AWS:File: /etc/nothing does not exist: skipped",
        "AWS:File: /etc/a.conf is not a directory: skipped",
    ]


def test_no_roots_no_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": ""})
    items, warnings = _gather(tmp_path, [{"Path": "/etc"}], roots=("/nonexistent",))
    assert items == []
    assert warnings == ["AWS:File: no inventory_file_roots exist on this node: no file is gathered"]
    items, warnings = _gather(tmp_path, [{"Path": "/etc"}], roots=())
    assert items == []
    assert len(warnings) == 1


def test_the_deadline_stops_the_walk(tmp_path: Path) -> None:
    _tree(tmp_path, {"etc/a.conf": ""})
    ctx = CollectContext(
        platform="Linux",
        run=_no_tools,
        root=tmp_path,
        files=(FileSpec("/etc"),),
        file_roots=("/etc",),
        deadline=time.monotonic() - 1,
    )
    assert file_inventory.collect(ctx) == []
    assert ctx.warnings == ["AWS:File: /etc: the gathering's time ran out; stopped"]


def test_parse_specs_defaults_and_json_text() -> None:
    (spec,) = parse_specs('[{"Path": "/etc", "Pattern": ["*.conf", "*.conf"], "Recursive": true}]')
    assert spec == FileSpec(
        path="/etc",
        patterns=("*.conf",),
        recursive=True,
        dir_scan_limit=5000,
        dir_depth_limit=file_inventory.DEFAULT_DIR_DEPTH_LIMIT,
        file_scan_limit=500,
        sha256=False,
    )
    (windows,) = parse_specs([{"Path": "C:\\Program Files", "Pattern": ["*.exe"]}])
    assert windows.path == "C:\\Program Files"
    assert parse_specs([]) == ()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "files is not JSON"),
        ({"Path": "/etc"}, "files must be a list"),
        (["/etc"], "files[0] must be an object"),
        ([{"Pattern": ["*"]}], "files[0]: Path is required"),
        ([{"Path": "etc"}], "Path must be absolute"),
        ([{"Path": "/etc\x00"}], "not a usable path"),
        ([{"Path": "/etc", "Recursive": "true"}], "Recursive must be true or false"),
        ([{"Path": "/etc", "Sha256": 1}], "Sha256 must be true or false"),
        ([{"Path": "/etc", "Pattern": "*.conf"}], "Pattern must be a non-empty list"),
        ([{"Path": "/etc", "Pattern": []}], "Pattern must be a non-empty list"),
        ([{"Path": "/etc", "Pattern": [""]}], "each Pattern must be a string"),
        ([{"Path": "/etc", "Pattern": ["[a"]}], "a [ is not closed"),
        ([{"Path": "/etc", "Pattern": ["[]a]"]}], "must be escaped"),
        ([{"Path": "/etc", "Pattern": ["[z-a]"]}], "backwards"),
        ([{"Path": "/etc", "Pattern": ["a\\"]}], "lone"),
        ([{"Path": "/etc", "DirScanLimit": 0}], "DirScanLimit must be a whole number from 1"),
        ([{"Path": "/etc", "DirScanLimit": "10"}], "DirScanLimit must be a whole number"),
        ([{"Path": "/etc", "DirScanLimit": True}], "DirScanLimit must be a whole number"),
        ([{"Path": "/etc", "DirDepthLimit": 65}], "DirDepthLimit must be a whole number"),
        ([{"Path": "/etc", "FileScanLimit": 10_001}], "FileScanLimit must be a whole number"),
        ([{"Path": "/etc", "path": "/x"}], "unknown key 'path'"),
        ([{"Path": "/etc"}] * 51, "at most 50 specs"),
        ([{"Path": "/etc"}, {"Path": "/etc", "Recursive": 1}], "files[1]: Recursive"),
    ],
)
def test_bad_specs(raw: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as caught:
        parse_specs(raw)
    assert "\n" not in str(caught.value)
