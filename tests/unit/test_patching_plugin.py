"""corral:runPatchBaseline's choice of baseline: what the server delivered (a shared
SnapshotId's, a BaselineOverride folded in by the server) before the raw parameter; a run
with neither refuses in the agent (never patches against a default the server did not pick);
``corral-agent run-document`` falls back to the predefined default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.patching.defaults import predefined
from agent.plugins.run_patch_baseline import PatchInputError, choose_baseline, node_os

DELIVERED = {
    "snapshot_id": "0e2b8a3c-6f4d-4c36-9d3a-2a8f3b1c5d7e",
    "patch_group": "web",
    "baselines": {
        "DEBIAN": {"BaselineId": "pb-0123456789abcdef0", "Name": "web-debian",
                   "OperatingSystem": "DEBIAN", "RejectedPatches": ["telnet"]},
    },
}  # fmt: skip
OVERRIDE = json.dumps([{"OperatingSystem": "DEBIAN", "ApprovedPatches": ["vim"]}])


def test_the_delivered_baseline_wins_over_the_raw_override() -> None:
    baseline, group, snapshot = choose_baseline("DEBIAN", DELIVERED, OVERRIDE, daemon=True)
    assert baseline.baseline_id == "pb-0123456789abcdef0" and baseline.rejected == ("telnet",)
    assert (group, snapshot) == ("web", DELIVERED["snapshot_id"])


def test_an_override_without_a_name_is_accepted_where_nothing_was_delivered() -> None:
    baseline, _, _ = choose_baseline("DEBIAN", None, OVERRIDE, daemon=True)
    assert baseline.name == "BaselineOverride" and baseline.approved == ("vim",)
    with pytest.raises(PatchInputError, match="BaselineOverride has no baseline for UBUNTU"):
        choose_baseline("UBUNTU", None, OVERRIDE, daemon=True)


def test_a_run_without_a_baseline_refuses_in_the_agent_but_run_document_uses_the_default() -> None:
    with pytest.raises(PatchInputError, match="no baseline came with this run"):
        choose_baseline("DEBIAN", None, "", daemon=True)
    baseline, _, _ = choose_baseline("DEBIAN", None, "", daemon=False)
    assert baseline == predefined("DEBIAN")
    with pytest.raises(PatchInputError, match="carries no baseline for UBUNTU"):
        choose_baseline("UBUNTU", DELIVERED, "", daemon=True)


def test_the_node_os_is_read_from_the_patched_roots_os_release(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('ID=rocky\nID_LIKE="rhel centos fedora"\n'
                                            'VERSION_ID="9.3"\nNAME="Rocky Linux"\n')  # fmt: skip
    found = node_os("Linux", str(tmp_path))
    assert (found.operating_system, found.product) == ("ROCKY_LINUX", "RockyLinux9.3")
    (tmp_path / "etc/os-release").write_text('ID=gentoo\nVERSION_ID="2.15"\n')
    with pytest.raises(PatchInputError, match="has no patch baseline operating system"):
        node_os("Linux", str(tmp_path))
    assert node_os("Windows", "/").operating_system == "WINDOWS"
