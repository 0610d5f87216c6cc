"""`corral baselines` and `corral patch` against the real control plane, in process (the
bridge of test_cli_parameters.py): baselines from AWS's own files (JSON and YAML) and from
flags, defaults and patch groups, a baseline in use refused deletion, what a node reported
(uploaded as its agent sends it) seen per node and across the fleet, and bad input refused
before anything is sent."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.conftest import Node
from tests.unit.test_cli_parameters import Live, live, usage_error
from tests.unit.test_inventory_api import send_ok
from tests.unit.test_patching_api import report

__all__ = ["live"]

# What `aws ssm get-patch-baseline --baseline-id pb-...` prints: read-only keys included.
AWS_RHEL = {
    "BaselineId": "pb-0c10e65780EXAMPLE",
    "Name": "rhel-critical",
    "OperatingSystem": "REDHAT_ENTERPRISE_LINUX",
    "GlobalFilters": {"PatchFilters": [{"Key": "PRODUCT", "Values": ["RedhatEnterpriseLinux9*"]}]},
    "ApprovalRules": {
        "PatchRules": [
            {
                "PatchFilterGroup": {
                    "PatchFilters": [
                        {"Key": "CLASSIFICATION", "Values": ["Security"]},
                        {"Key": "SEVERITY", "Values": ["Critical", "Important"]},
                    ]
                },
                "ComplianceLevel": "CRITICAL",
                "ApproveAfterDays": 3,
                "EnableNonSecurity": False,
            }
        ]
    },
    "ApprovedPatches": ["kernel-5.14.0-427.el9.x86_64"],
    "RejectedPatches": ["telnet*"],
    "RejectedPatchesAction": "BLOCK",
    "PatchGroups": ["db"],
    "CreatedDate": "2024-03-01T12:00:00.000000+00:00",
    "ModifiedDate": "2024-03-02T12:00:00.000000+00:00",
    "Description": "from SSM",
    "Sources": [],
}
SUSE_YAML = """\
# create-patch-baseline --cli-input-yaml
Name: suse-until
OperatingSystem: SUSE
ApprovalRules:
  PatchRules:
    - PatchFilterGroup:
        PatchFilters:
          - Key: CLASSIFICATION
            Values: [Security, Recommended]
      ApproveUntilDate: 2026-12-31
      ComplianceLevel: HIGH
"""


def on_server(live: Live, coroutine: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, live.bridge._loop).result(60)


def new_node(live: Live, **tags: str) -> Node:
    node: Node = on_server(live, live.api.new_node(tags=tags))
    return node


def rows(text: str) -> list[list[str]]:
    """A table's lines as words, less the rule under its header."""
    return [line.split() for line in text.splitlines() if line.strip(" ─")]


def sent_nothing(live: Live, *args: str, stdin: str | None = None) -> str:
    """The usage error of ``args``, after checking that no request was sent."""
    before = len(live.bridge.requests)
    error = usage_error(live.run(*args, stdin=stdin))
    assert len(live.bridge.requests) == before, [r.url for r in live.bridge.requests[before:]]
    return error


def test_baselines_from_aws_files_and_from_flags(live: Live, tmp_path: Path) -> None:
    aws = tmp_path / "rhel.json"
    aws.write_text(json.dumps(AWS_RHEL))
    made = live.json("baselines", "create", "--file", str(aws), "--description", "critical")
    assert made["BaselineId"].startswith("pb-") and made["BaselineId"] != AWS_RHEL["BaselineId"]
    shown = live.json("baselines", "show", "rhel-critical")
    assert shown["Description"] == "critical"  # the flag wins over the file
    assert shown["ApprovalRules"] == AWS_RHEL["ApprovalRules"]
    assert shown["RejectedPatchesAction"] == "BLOCK" and shown["PatchGroups"] == []
    # What `show -o json` prints is a file `create` takes again (its read-only keys dropped).
    again = tmp_path / "again.json"
    again.write_text(json.dumps({**shown, "Name": "rhel-copy"}))
    assert live.ok("baselines", "create", "--file", str(again)).stdout.startswith(
        "created patch baseline pb-"
    )

    yaml_file = tmp_path / "suse.yaml"
    yaml_file.write_text(SUSE_YAML)
    live.ok("baselines", "create", "--file", str(yaml_file))
    suse = live.json("baselines", "show", "suse-until")
    (rule,) = suse["ApprovalRules"]["PatchRules"]
    assert rule["ApproveUntilDate"] == "2026-12-31" and rule["ComplianceLevel"] == "HIGH"

    # From flags alone (case-insensitive choices), patch lists by commas or repeated.
    out = live.ok(
        "baselines", "create", "--name", "web-ubuntu", "--operating-system", "ubuntu",
        "--approved-patches", "openssl,curl", "--approved-patches", "libc6:amd64",
        "--rejected-patches", "telnet", "--rejected-patches-action", "block",
        "--approved-patches-compliance-level", "high", "--description", "web servers",
    ).stdout  # fmt: skip
    assert out.startswith("created patch baseline pb-") and out.endswith("for UBUNTU\n")
    web = live.json("baselines", "show", "web-ubuntu")
    assert web["ApprovedPatches"] == ["openssl", "curl", "libc6:amd64"]
    assert (web["RejectedPatches"], web["RejectedPatchesAction"]) == (["telnet"], "BLOCK")
    assert web["ApprovedPatchesComplianceLevel"] == "HIGH" and web["OperatingSystem"] == "UBUNTU"

    listed = {b["BaselineName"]: b for b in live.json("baselines", "list")}
    assert {"rhel-critical", "rhel-copy", "suse-until", "web-ubuntu"} <= set(listed)
    assert listed["AWS-UbuntuDefaultPatchBaseline"]["Predefined"] is True
    ubuntu = live.ok("baselines", "list", "--operating-system", "UBUNTU").stdout
    lines = rows(ubuntu)
    assert lines[0] == ["BaselineId", "name", "OperatingSystem", "default", "predefined",
                        "description"]  # fmt: skip
    assert [web["BaselineId"], "web-ubuntu", "UBUNTU", "no", "no", "web", "servers"] in lines
    assert "REDHAT_ENTERPRISE_LINUX" not in ubuntu

    table = live.ok("baselines", "show", made["BaselineId"]).stdout
    assert ["RejectedPatchesAction", "BLOCK"] in rows(table)
    assert ["GlobalFilters", "PRODUCT=RedhatEnterpriseLinux9*"] in rows(table)
    assert "approval rules (a patch is approved by the first that matches):" in table
    rule_line = "1 CLASSIFICATION=Security; SEVERITY=Critical,Important 3 days after release"
    assert rule_line + " CRITICAL no" in [" ".join(r) for r in rows(table)]
    predefined = live.ok("baselines", "show", "AWS-UbuntuDefaultPatchBaseline").stdout
    assert ["DefaultBaseline", "yes"] in rows(predefined) and "at once" in predefined


def test_a_baseline_from_stdin_json_or_yaml(live: Live) -> None:
    as_json = json.dumps({"Name": "alpine-x", "OperatingSystem": "ALPINE", "ApprovalRules": {
        "PatchRules": [{"PatchFilterGroup": {"PatchFilters": [
            {"Key": "REPOSITORY", "Values": ["*main*"]}]}, "ApproveAfterDays": 2,
            "EnableNonSecurity": True}]}})  # fmt: skip
    live.ok("baselines", "create", "--file", "-", stdin=as_json)
    (rule,) = live.json("baselines", "show", "alpine-x")["ApprovalRules"]["PatchRules"]
    assert rule["ApproveAfterDays"] == 2 and rule["EnableNonSecurity"] is True
    live.ok("baselines", "create", "--file", "-", stdin=SUSE_YAML)
    assert live.json("baselines", "show", "suse-until")["OperatingSystem"] == "SUSE"
    bad = sent_nothing(live, "baselines", "create", "--file", "-", stdin="Name: [x")
    assert "stdin is not valid YAML" in bad


def test_update_defaults_patch_groups_and_deleting_a_baseline_in_use(
    live: Live, tmp_path: Path
) -> None:
    made = live.json("baselines", "create", "--name", "deb-web", "--operating-system", "DEBIAN")
    bid = made["BaselineId"]
    out = live.ok("baselines", "update", "deb-web", "--description", "v2",
                  "--rejected-patches", "telnet").stdout  # fmt: skip
    assert out == f"updated patch baseline {bid} (deb-web)\n"
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"ApprovedPatches": ["vim"], "Description": "from file"}))
    updated = live.json("baselines", "update", bid, "--file", str(changes), "--name", "deb-www")
    assert (updated["Name"], updated["Description"]) == ("deb-www", "from file")
    assert updated["RejectedPatches"] == ["telnet"] and updated["ApprovedPatches"] == ["vim"]
    cleared = live.json("baselines", "update", bid, "--approved-patches", "")
    assert cleared["ApprovedPatches"] == []
    predefined = live.run("baselines", "update", "AWS-DebianDefaultPatchBaseline",
                          "--description", "x")  # fmt: skip
    assert predefined.exit_code == 1 and "is predefined" in predefined.stderr
    assert predefined.stderr.count("\n") == 1

    # The default: shown by `defaults`, then not deletable.
    out = live.ok("baselines", "set-default", bid).stdout
    assert out == f"{bid} is now the default patch baseline for DEBIAN\n"
    assert live.json("baselines", "defaults")["DEBIAN"] == bid
    assert ["DEBIAN", bid] in rows(live.ok("baselines", "defaults").stdout)
    refused = live.run("baselines", "delete", bid)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "is the default for DEBIAN: set another default first (conflict)" in refused.stderr
    live.ok("baselines", "set-default", "AWS-DebianDefaultPatchBaseline")

    # A patch group: one baseline per group and OS; not deletable while it serves one.
    out = live.ok("baselines", "register-patch-group", "deb-www", "web servers").stdout
    assert out == f"patch group 'web servers' now uses {bid}\n"
    taken = live.run("baselines", "register-patch-group", "AWS-DebianDefaultPatchBaseline",
                     "web servers")  # fmt: skip
    assert taken.exit_code == 1 and f"already has baseline {bid} for DEBIAN" in taken.stderr
    groups = live.ok("baselines", "groups").stdout
    assert rows(groups)[0] == ["PatchGroup", "OperatingSystem", "BaselineId"]
    assert ["web", "servers", "DEBIAN", bid] in rows(groups)
    refused = live.run("baselines", "delete", bid)
    assert refused.exit_code == 1 and "serves patch group(s) web servers" in refused.stderr
    out = live.ok("baselines", "deregister-patch-group", bid, "web servers").stdout
    assert out == f"patch group 'web servers' no longer uses {bid}\n"
    assert live.json("baselines", "groups") == []
    again = live.run("baselines", "deregister-patch-group", bid, "web servers")
    assert again.exit_code == 1 and "is not registered with" in again.stderr

    assert live.ok("baselines", "delete", "deb-www").stdout == f"deleted patch baseline {bid}\n"
    gone = live.run("baselines", "show", bid)
    assert gone.exit_code == 1 and "not found" in gone.stderr and gone.stdout == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["create", "--name", "x1x", "--operating-system", "PLAN9"], "'PLAN9' is not one of"),
        (["create", "--operating-system", "UBUNTU"], "give the baseline a name: --name NAME"),
        (["create", "--name", "a b"], "'--name': Name 'a b': 3 to 128 letters"),
        (["create", "--name", "win", "--approved-patches", "openssl"],
         "'--approved-patches': ApprovedPatches[0]: 'openssl' is not a patch name for WINDOWS"),
        (["create", "--name", "deb", "--operating-system", "DEBIAN", "--rejected-patches",
          "Bad Name"], "RejectedPatches[0]: 'Bad Name' is not a patch name for DEBIAN"),
        (["create", "--name", "x1x", "--rejected-patches-action", "DROP"], "'DROP' is not one"),
        (["update", "pb-00000000000000000"], "nothing to change"),
        (["register-patch-group", "pb-00000000000000000", "bad\tgroup!"], "patch group"),
        (["deregister-patch-group", "pb-00000000000000000", ""], "patch group ''"),
    ],
)  # fmt: skip
def test_bad_baseline_input_sends_nothing(live: Live, args: list[str], words: str) -> None:
    assert words in sent_nothing(live, "baselines", *args)


@pytest.mark.parametrize(
    ("content", "suffix", "words"),
    [
        ('{"Name": "x1x", ', ".json", "is not valid JSON: line 1 column"),
        ("Name: [unclosed", ".yaml", "is not valid YAML: line 1 column 16"),
        ("[1, 2]", ".json", "is not a patch baseline: expected an object"),
        ('{"Name": "x1x", "OperatingSystem": "UBUNTU", "Colour": "red"}', ".json",
         "unknown baseline field 'Colour'"),
        ('{"Name": "x1x", "OperatingSystem": "UBUNTU", "ApprovalRules": {"PatchRules": [{'
         '"PatchFilterGroup": {"PatchFilters": []}, "ApproveAfterDays": 7}]}}', ".json",
         "are not supported on UBUNTU"),
        ('{"Name": "x1x", "OperatingSystem": "AMAZON_LINUX_2023", "ApprovalRules": {'
         '"PatchRules": [{"PatchFilterGroup": {"PatchFilters": []}, "ApproveAfterDays": 400}]}}',
         ".json", "ApproveAfterDays '400': a whole number of days, 0 to 360"),
        ("Name: x1x\nOperatingSystem: UBUNTU\nGlobalFilters:\n  PatchFilters:\n"
         "    - {Key: MSRC_SEVERITY, Values: [Critical]}\n", ".yml",
         "'MSRC_SEVERITY' is not valid for UBUNTU (valid: PRODUCT, PRIORITY, SECTION)"),
    ],
)  # fmt: skip
def test_bad_baseline_files_send_nothing(
    live: Live, tmp_path: Path, content: str, suffix: str, words: str
) -> None:
    path = tmp_path / f"baseline{suffix}"
    path.write_text(content)
    error = sent_nothing(live, "baselines", "create", "--file", str(path))
    assert "'--file'" in error and words in error
    missing = sent_nothing(live, "baselines", "create", "--file", str(tmp_path / "none.json"))
    assert "cannot read" in missing and "No such file or directory" in missing


def test_an_update_the_server_would_refuse_is_refused_after_reading_the_baseline(
    live: Live,
) -> None:
    live.ok("baselines", "create", "--name", "al2023", "--operating-system", "AMAZON_LINUX_2023")
    before = len(live.bridge.requests)
    error = usage_error(live.run("baselines", "update", "al2023", "--rejected-patches", "a b"))
    assert (
        "'--rejected-patches': RejectedPatches[0]: 'a b' is not a patch name for "
        "AMAZON_LINUX_2023" in error
    )
    assert [r.method for r in live.bridge.requests[before:]] == ["GET"]  # never the PATCH


def test_what_nodes_reported(live: Live, tmp_path: Path) -> None:
    web = new_node(live, **{"Patch Group": "web"})
    quiet = new_node(live, PatchGroup="db")
    on_server(live, send_ok(live.api, web, report(tmp_path, group="web")))

    # One node's patches, of one state.
    missing = live.json("patch", "states", web.node_id, "--state", "missing")
    assert [(p["KBId"], p["State"]) for p in missing] == [
        ("curl.amd64", "MISSING"), ("openssl.amd64", "MISSING")]  # fmt: skip
    table = live.ok("patch", "states", web.node_id).stdout
    assert rows(table)[0][:4] == ["patch", "State", "Classification", "Severity"]
    assert any(r[:2] == ["telnet.amd64", "INSTALLED_REJECTED"] for r in rows(table))
    assert any(r[:2] == ["vim.amd64", "INSTALLED_OTHER"] for r in rows(table))
    nothing = live.ok("patch", "states", quiet.node_id)
    assert "no patch report from" in nothing.stderr and "Operation=Scan" in nothing.stderr

    shown = live.ok("patch", "show", web.node_id).stdout
    assert ["ComplianceStatus", "NON_COMPLIANT"] in rows(shown)
    assert ["MissingCount", "2"] in rows(shown) and ["patch_group", "web"] in rows(shown)
    assert live.json("patch", "show", quiet.node_id)["reported"] is False

    # The fleet, and one group of it.
    fleet = live.json("patch", "summary")
    assert (fleet["counts"]["nodes"], fleet["counts"]["non_compliant"]) == (2, 1)
    table = live.ok("patch", "summary").stdout
    assert rows(table)[1] == ["status", "nodes"]
    for line in (["all", "2"], ["not", "reported", "yet", "1"], ["non-compliant", "1"],
                 ["compliant", "0"], ["with", "missing", "patches", "1"],
                 ["web", "1"]):  # fmt: skip
        assert line in rows(table), table
    assert table.startswith("every node:\n")
    db = live.ok("patch", "summary", "--group", "db").stdout
    assert db.startswith("patch group db:\n") and ["reported", "0"] in rows(db)
    typo = live.run("patch", "summary", "--group", "dbb")
    assert typo.exit_code == 1 and "no node is tagged with it" in typo.stderr

    nodes = live.ok("patch", "nodes").stdout
    header, *lines = rows(nodes)
    assert header[:4] == ["node_id", "patch_group", "baseline", "compliance"]
    assert [line[:4] for line in lines] == [
        [web.node_id, "web", "pb-0123456789abcdef0", "NON_COMPLIANT"]]  # fmt: skip
    assert live.json("patch", "nodes", "--group", "db") == []

    # An Install later: the history shows the operation and each patch that changed.
    on_server(live, send_ok(live.api, web, report(tmp_path, op="Install", group="web")))
    history = live.ok("patch", "history", web.node_id).stdout
    assert "State: MISSING -> INSTALLED_PENDING_REBOOT" in history
    assert (
        "operation Install changed NON_COMPLIANT: missing 0 (was 2), failed 0, pending "
        "reboot 2 (was 0), rejected 1" in [" ".join(r[1:]) for r in rows(history)]
    )
    assert ["patches", "captured", "first", "report:", "4", "patches"] in [
        r[1:] for r in rows(history)]  # fmt: skip
    changes = live.json("patch", "history", web.node_id, "--since", "1d")
    assert {c["type_name"] for c in changes} == {"Corral:Patch", "AWS:PatchSummary"}

    # What another baseline would do with the node's last scan.
    live.ok("baselines", "create", "--name", "debian-vim", "--operating-system", "DEBIAN",
            "--approved-patches", "vim", "--approved-patches-enable-non-security")  # fmt: skip
    effective = live.json("baselines", "describe-effective-patches", "debian-vim",
                          "--node", web.node_id)  # fmt: skip
    assert effective["OperatingSystem"] == "DEBIAN" and effective["node_id"] == web.node_id
    status = {e["Patch"]["Name"]: e["PatchStatus"]["DeploymentStatus"]
              for e in effective["EffectivePatches"]}  # fmt: skip
    assert status == {"vim": "EXPLICIT_APPROVED"}
    table = live.ok("baselines", "describe-effective-patches", "debian-vim", "--node",
                    web.node_id).stdout  # fmt: skip
    assert table.splitlines()[0].startswith("debian-vim") or "DEBIAN" in table.splitlines()[0]
    assert any(r[0] == "vim" and "EXPLICIT_APPROVED" in r for r in rows(table))
    wrong_os = live.run("baselines", "describe-effective-patches",
                        "AWS-UbuntuDefaultPatchBaseline", "--node", web.node_id)  # fmt: skip
    assert wrong_os.exit_code == 1 and "is for UBUNTU; node" in wrong_os.stderr
    unscanned = live.run("baselines", "describe-effective-patches", "debian-vim",
                         "--node", quiet.node_id)  # fmt: skip
    assert unscanned.exit_code == 1 and "has not reported a patch scan" in unscanned.stderr


def test_bad_patch_input_sends_nothing(live: Live) -> None:
    node = "mi-0123456789abcdef0"
    assert "'GONE' is not one of" in sent_nothing(live, "patch", "states", node, "--state", "GONE")
    assert "patch group" in sent_nothing(live, "patch", "summary", "--group", "a|b")
    assert "patch group" in sent_nothing(live, "patch", "nodes", "--group", "x" * 257)
    assert "'soon'" in sent_nothing(live, "patch", "history", node, "--since", "soon")
    assert "Missing option '--node'" in sent_nothing(
        live, "baselines", "describe-effective-patches", "AWS-UbuntuDefaultPatchBaseline"
    )
    unknown = live.run("patch", "states", "no-such-node")
    assert unknown.exit_code == 1 and "no node is named 'no-such-node'" in unknown.stderr
