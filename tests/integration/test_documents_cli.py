"""`corral documents` against a real server: a document's versions from JSON and YAML files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import BIN, Server, run

pytestmark = pytest.mark.integration

JSON_V1 = """{
  "schemaVersion": "2.2",
  "description": "Report the disk",
  "parameters": {"path": {"type": "String", "default": "/"}},
  "mainSteps": [
    {"action": "aws:runShellScript", "name": "df", "inputs": {"runCommand": ["df -h {{ path }}"]}}
  ]
}
"""
YAML_V2 = """\
# version 2, in YAML: the comment is kept
schemaVersion: "2.2"
description: Report the disk and the inodes
parameters:
  path:
    type: String
    default: /
mainSteps:
  - action: aws:runShellScript
    name: df
    inputs:
      runCommand:
        - df -h {{ path }}
        - df -i {{ path }}
"""
JSON_V3 = JSON_V1.replace("Report the disk", "Report the disk, v3")


class Corral:
    def __init__(self, tmp_path: Path, server: Server) -> None:
        self.env = {"CORRAL_CONFIG": str(tmp_path / "cli.toml")}
        code, _, err = self(
            "login", "--url", server.url, "--token", server.token, "--ca-hash", server.ca_hash
        )
        assert code == 0, err

    def __call__(self, *args: str) -> tuple[int, str, str]:
        result = run(BIN / "corral", *args, env=self.env)
        assert "Traceback" not in result.stderr
        return result.returncode, result.stdout, result.stderr

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--output", "json")
        assert code == 0, err
        return json.loads(out)


def test_document_versions_through_the_cli(tmp_path: Path, server: Server) -> None:
    corral = Corral(tmp_path, server)
    v1 = tmp_path / "disk.json"
    v1.write_text(JSON_V1)
    v2 = tmp_path / "disk.yaml"
    v2.write_text(YAML_V2)
    v3 = tmp_path / "disk-v3.json"
    v3.write_text(JSON_V3)

    made = corral.json(
        "documents", "create", "--name", "Disk-Report", "--file", str(v1), "--tag", "team=ops"
    )
    assert (made["version"], made["default_version"], made["format"]) == ("1", "1", "json")
    assert made["owner"] == "self" and made["tags"] == {"team": "ops"}

    code, _, err = corral("documents", "create", "--name", "Disk-Report", "--file", str(v1))
    assert code == 1 and "already exists" in err
    code, _, err = corral("documents", "create", "--name", "aws-disk", "--file", str(v1))
    assert code == 1 and "reserved" in err and len(err.strip().splitlines()) == 1

    two = corral.json(
        "documents",
        "update",
        "--name",
        "Disk-Report",
        "--file",
        str(v2),
        "--version-name",
        "inodes",
    )
    assert (two["version"], two["format"], two["latest_version"]) == ("2", "yaml", "2")
    assert two["description"] == "Report the disk and the inodes"
    code, _, err = corral("documents", "update", "--name", "Disk-Report", "--file", str(v2))
    assert code == 1 and "content unchanged" in err
    three = corral.json("documents", "update", "--name", "Disk-Report", "--file", str(v3))
    assert three["version"] == "3"

    rows = corral.json("documents", "versions", "Disk-Report")
    assert [(r["version"], r["version_name"], r["format"], r["is_default"]) for r in rows] == [
        ("1", None, "json", True),
        ("2", "inodes", "yaml", False),
        ("3", None, "json", False),
    ]
    code, out, _ = corral("documents", "versions", "Disk-Report")
    assert code == 0 and "inodes" in out

    moved = corral.json("documents", "set-default", "Disk-Report", "--version", "inodes")
    assert moved["default_version"] == "2"
    code, out, _ = corral("documents", "set-default", "Disk-Report", "--version", "3")
    assert (code, out) == (0, "default version of Disk-Report is now 3\n")
    corral.json("documents", "set-default", "Disk-Report", "--version", "2")

    shown = corral.json("documents", "show", "Disk-Report", "--content")
    assert (shown["version"], shown["format"], shown["content"]) == ("2", "yaml", YAML_V2)
    shown = corral.json("documents", "show", "Disk-Report", "--version", "1", "--content")
    assert (shown["format"], shown["content"]) == ("json", JSON_V1)
    assert "content" not in corral.json("documents", "show", "Disk-Report")
    code, out, _ = corral("documents", "show", "Disk-Report", "--version", "$LATEST", "--content")
    assert code == 0 and out.endswith("\n\n" + JSON_V3) and "Report the disk, v3" in out

    mine = corral.json("documents", "list", "--filter", "owner:self")
    assert [(d["name"], d["default_version"], d["latest_version"]) for d in mine] == [
        ("Disk-Report", "2", "3")
    ]
    builtins = corral.json("documents", "list", "--filter", "owner:corral")
    assert {d["name"] for d in builtins} == {
        "AWS-GatherSoftwareInventory",
        "AWS-RunPatchBaseline",
        "AWS-RunShellScript",
        "AWS-RunPowerShellScript",
        "Corral-EnsureFile",
        "Corral-EnsurePackage",
        "Corral-EnsureService",
        "Corral-RunDocument",
        "Corral-UpdateAgent",
    }
    code, out, _ = corral("documents", "list")
    assert code == 0 and "Disk-Report" in out and "AWS-RunShellScript" in out
    code, _, err = corral("documents", "delete", "AWS-RunShellScript")
    assert code == 1 and "built-in" in err

    code, _, err = corral("documents", "delete", "Disk-Report", "--version", "2")
    assert code == 1 and "default version" in err
    code, out, _ = corral("documents", "delete", "Disk-Report", "--version", "1")
    assert (code, out) == (0, "deleted version 1 of document Disk-Report\n")
    rows = corral.json("documents", "versions", "Disk-Report")
    assert [r["version"] for r in rows] == ["2", "3"]
    assert corral.json("documents", "delete", "Disk-Report") == {"deleted": "Disk-Report"}
    code, _, err = corral("documents", "show", "Disk-Report")
    assert code == 1 and "not found" in err
    assert corral.json("documents", "list", "--filter", "owner:self") == []


def test_bad_documents_are_refused_with_the_reason(tmp_path: Path, server: Server) -> None:
    corral = Corral(tmp_path, server)
    broken = tmp_path / "broken.yaml"
    broken.write_text("schemaVersion: '2.2'\nmainSteps:\n  - action: aws:runShellScript\n")
    code, _, err = corral("documents", "create", "--name", "broken", "--file", str(broken))
    assert code == 1 and "mainSteps" in err and len(err.strip().splitlines()) == 1
    big = tmp_path / "big.json"
    big.write_text(JSON_V1 + " " * 65536)
    code, _, err = corral("documents", "create", "--name", "big", "--file", str(big))
    assert code == 2 and "64 KB" in err
    assert corral.json("documents", "list", "--filter", "owner:self") == []
