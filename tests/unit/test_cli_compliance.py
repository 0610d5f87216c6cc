"""`corral compliance` against the real control plane, in process: put from a file in AWS's
shape, list, summary (fleet and by node), history, JSON output, and the usage errors that
send nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.unit.conftest import Node
from tests.unit.test_cli_parameters import Live, live, usage_error

__all__ = ["live"]


def new_node(live: Live) -> str:
    future = asyncio.run_coroutine_threadsafe(live.api.new_node(), live.bridge._loop)
    node: Node = future.result(timeout=60)
    return node.node_id


def items_file(tmp_path: Path, data: Any, name: str = "items.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


AWS_ITEMS = [
    {"Id": "root-login", "Title": "No root login", "Severity": "HIGH", "Status": "COMPLIANT"},
    {
        "Id": "password-auth",
        "Title": "No password auth",
        "Severity": "CRITICAL",
        "Status": "NON_COMPLIANT",
        "Details": {"file": "/etc/ssh/sshd_config"},
    },
]


def test_put_list_summary_and_history(live: Live, tmp_path: Path) -> None:
    node = new_node(live)
    done = live.ok(
        "compliance", "put", "--node", node, "--type", "Custom:Ssh",
        "--file", items_file(tmp_path, AWS_ITEMS),
    )  # fmt: skip
    assert done.stdout == f"{node} Custom:Ssh: NON_COMPLIANT (2 items, 2 changed)\n"
    listed = live.ok("compliance", "list", "--node", node).stdout
    assert "password-auth" in listed and "NON_COMPLIANT" in listed and "CRITICAL" in listed
    rows = live.json("compliance", "list", "--node", node, "--status", "NON_COMPLIANT")
    assert [(r["id"], r["details"]) for r in rows] == [
        ("password-auth", {"file": "/etc/ssh/sshd_config"})
    ]
    summary = live.json("compliance", "summary")
    assert [(s["compliance_type"], s["non_compliant"]["count"]) for s in summary] == [
        ("Custom:Ssh", 1)
    ]
    table = live.ok("compliance", "summary", "--type", "Custom:Ssh").stdout
    assert "CRITICAL=1" in table
    by_node = live.json("compliance", "summary", "--by-node", "--status", "NON_COMPLIANT")
    assert [(r["node_id"], r["overall_severity"]) for r in by_node] == [(node, "CRITICAL")]
    # fixed: the put is the whole list again, in the {"Items": [...]} shape
    fixed = [dict(AWS_ITEMS[0]), dict(AWS_ITEMS[1], Status="COMPLIANT")]
    live.ok(
        "compliance", "put", "--node", node, "--type", "Custom:Ssh",
        "--file", items_file(tmp_path, {"Items": fixed}, "fixed.json"),
    )  # fmt: skip
    history = live.json("compliance", "history", "--node", node, "--type", "Custom:Ssh")
    assert (history[0]["id"], history[0]["old_status"], history[0]["new_status"]) == (
        "password-auth",
        "NON_COMPLIANT",
        "COMPLIANT",
    )
    text = live.ok("compliance", "history", "--node", node).stdout
    assert "NON_COMPLIANT -> COMPLIANT" in text and "(new) -> COMPLIANT" in text


def test_usage_errors_send_nothing(live: Live, tmp_path: Path) -> None:
    node = new_node(live)
    good = items_file(tmp_path, AWS_ITEMS)
    cases = [
        (("--type", "Association", "--file", good), "written by the server itself"),
        (("--type", "Custom:a b", "--file", good), "not a compliance type"),
        (("--type", "Custom:Ssh", "--file", items_file(tmp_path, {"x": 1}, "o.json")), "list"),
        (
            ("--type", "Custom:Ssh", "--file", items_file(tmp_path, [{"Id": "a", "Foo": 1}], "f")),
            "unknown field 'foo'",
        ),
        (("--type", "Custom:Ssh", "--file", str(tmp_path / "missing.json")), "cannot read"),
    ]
    for args, message in cases:
        result = live.run("compliance", "put", "--node", node, *args)
        assert message in usage_error(result)
    assert live.bridge.sent("PUT") == []
    assert "--by-node" in usage_error(live.run("compliance", "summary", "--status", "COMPLIANT"))


def test_a_refused_put_is_one_line(live: Live, tmp_path: Path) -> None:
    node = new_node(live)
    bad = items_file(tmp_path, [{"Id": "a", "Severity": "URGENT", "Status": "COMPLIANT"}])
    result = live.run("compliance", "put", "--node", node, "--type", "Custom:Ssh", "--file", bad)
    assert result.exit_code != 0
    assert "items[0].severity 'URGENT'" in result.stderr
    assert result.stderr.count("\n") == 1
