"""One AWS-RunPatchBaseline operation (agent/patching/operation.py) against a package
manager whose state the test holds: which patches a Scan reports MISSING, what an Install
installs (approved only, never a rejected one, exactly InstallOverrideList's when given),
FAILED with the manager's message, pending reboots across operations and boots, and the
summary and compliance SSM reports.  The real managers are tested in
tests/integration/test_patching_*.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.patching import states
from agent.patching.base import PackageError
from agent.patching.baseline import parse
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.operation import PendingReboots, Request, run
from agent.patching.overrides import OverrideError, load

NOW = 1_800_000_000.0
DAY = 86_400.0


class Manager:
    """A package manager in memory: what is installed, what the repository offers."""

    name = "fake"

    def __init__(self, installed: dict[str, str], offered: dict[str, Package]) -> None:
        self.installed = dict(installed)
        self.offered = offered
        self.fail: str | None = None
        self.calls: list[tuple[list[str], list[str]]] = []

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        installed = [Package(n, "amd64", v) for n, v in sorted(self.installed.items())]
        updates = [
            p for n, p in sorted(self.offered.items())
            if n in self.installed and self.installed[n] != p.version
        ]  # fmt: skip
        return Scan("Debian12", installed, updates)

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        self.calls.append(([u.name for u in updates], list(blocked)))
        if self.fail:
            raise PackageError(self.fail)
        for u in updates:
            self.installed[u.name] = u.version
        return InstallOutcome(list(updates), reboot_required=False)


def offered(name: str, version: str, security: bool = True) -> Package:
    return Package(
        name, "amd64", version, security=security, classification="Security" if security else "",
        priority="Important", repository="bookworm-security" if security else "bookworm",
    )  # fmt: skip


def baseline(**more: Any) -> Any:
    return parse({
        "Name": "debian-test", "OperatingSystem": "DEBIAN",
        "ApprovalRules": {"PatchRules": [{"PatchFilterGroup": {"PatchFilters": [
            {"Key": "PRIORITY", "Values": ["Required", "Important"]}]},
            "ComplianceLevel": "HIGH"}]},
        **more,
    }, baseline_id="pb-0123456789abcdef0")  # fmt: skip


def world() -> Manager:
    return Manager(
        {"openssl": "3.0.1", "curl": "7.88", "vim": "9.0.1", "telnet": "0.17"},
        {
            "openssl": offered("openssl", "3.0.2"),
            "curl": offered("curl", "7.89"),
            "vim": offered("vim", "9.0.2", security=False),
            "telnet": offered("telnet", "0.18"),
        },
    )


def request(op: str = "Scan", **kw: Any) -> Request:
    kw.setdefault("baseline", baseline())
    kw.setdefault("reboot_option", "NoReboot")
    return Request(operation=op, **kw)


def by_state(found: list[states.PatchState]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in found:
        out.setdefault(s.state, set()).add(s.package.name)
    return out


def pending(tmp_path: Path, boot: float = 100.0) -> PendingReboots:
    return PendingReboots(tmp_path / "pending-reboot.json", boot)


def test_scan_reports_approved_updates_missing_and_changes_nothing(tmp_path: Path) -> None:
    m = world()
    before = dict(m.installed)
    done = run(m, request("Scan"), pending(tmp_path), clock=lambda: NOW)
    assert m.installed == before and m.calls == []
    assert by_state(done.states) == {
        "MISSING": {"openssl", "curl", "telnet"},
        "INSTALLED_OTHER": {"vim"},  # its update is not security: this baseline leaves it
    }
    s = done.summary
    assert (s["MissingCount"], s["InstalledOtherCount"], s["ComplianceStatus"]) == (
        "3", "1", "NON_COMPLIANT")  # fmt: skip
    assert s["ComplianceSeverity"] == "HIGH"
    assert s["OperationType"] == "Scan" and s["BaselineId"] == "pb-0123456789abcdef0"


def test_install_installs_exactly_the_approved_patches_and_never_a_rejected_one(
    tmp_path: Path,
) -> None:
    m = world()
    b = baseline(RejectedPatches=["telnet"])
    done = run(m, request("Install", baseline=b, reboot_option="NoReboot"), pending(tmp_path),
               clock=lambda: NOW)  # fmt: skip
    assert m.calls == [(["curl", "openssl"], [])]  # ALLOW_AS_DEPENDENCY blocks nothing
    assert m.installed["telnet"] == "0.17" and m.installed["vim"] == "9.0.1"
    # NoReboot: what was installed waits for a reboot; the node is not compliant until then.
    assert by_state(done.states)["INSTALLED_PENDING_REBOOT"] == {"curl", "openssl"}
    assert by_state(done.states)["INSTALLED_OTHER"] >= {"telnet", "vim"}
    assert done.summary["ComplianceStatus"] == "NON_COMPLIANT"
    assert done.summary["LastNoRebootInstallOperationTime"]
    assert not done.reboot


def test_block_passes_the_rejected_names_and_reports_them_installed_rejected(
    tmp_path: Path,
) -> None:
    m = world()
    b = baseline(RejectedPatches=["telnet"], RejectedPatchesAction="BLOCK")
    done = run(m, request("Install", baseline=b), pending(tmp_path), clock=lambda: NOW)
    assert m.calls == [(["curl", "openssl"], ["telnet"])]
    assert by_state(done.states)["INSTALLED_REJECTED"] == {"telnet"}


def test_a_failed_install_marks_each_patch_failed_with_the_managers_words(tmp_path: Path) -> None:
    m = world()
    m.fail = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 42 (apt-get)"
    done = run(m, request("Install"), pending(tmp_path), clock=lambda: NOW)
    failed = [s for s in done.states if s.state == "FAILED"]
    assert {s.package.name for s in failed} == {"curl", "openssl", "telnet"}
    assert all("Could not get lock" in s.reason for s in failed)
    assert done.error.startswith("E: Could not get lock")
    assert done.summary["FailedCount"] == "3" and done.summary["Message"] == done.error
    assert len(m.calls) == 1  # nothing retried


def test_pending_reboots_last_until_the_node_boots_again(tmp_path: Path) -> None:
    m = world()
    run(m, request("Install"), pending(tmp_path, boot=100.0), clock=lambda: NOW)
    again = run(m, request("Scan"), pending(tmp_path, boot=100.0), clock=lambda: NOW)
    assert by_state(again.states)["INSTALLED_PENDING_REBOOT"] == {"curl", "openssl", "telnet"}
    booted = run(m, request("Scan"), pending(tmp_path, boot=5000.0), clock=lambda: NOW)
    assert "INSTALLED_PENDING_REBOOT" not in by_state(booted.states)
    assert booted.summary["ComplianceStatus"] == "COMPLIANT"
    assert by_state(booted.states)["INSTALLED_OTHER"] == {"curl", "openssl", "telnet", "vim"}


def test_reboot_if_needed_reboots_once_and_only_where_it_may(tmp_path: Path) -> None:
    first = run(world(), request("Install", reboot_option="RebootIfNeeded"), pending(tmp_path),
                clock=lambda: NOW)  # fmt: skip
    assert first.reboot
    resumed = run(world(), request("Install", reboot_option="RebootIfNeeded",
                                   rebooted_for_this=True), pending(tmp_path, boot=9.0),
                  clock=lambda: NOW)  # fmt: skip
    assert not resumed.reboot
    refused = run(
        world(),
        request("Install", reboot_option="RebootIfNeeded", reboots_allowed=False),
        pending(tmp_path),
        clock=lambda: NOW,
    )
    assert not refused.reboot  # fmt: skip
    assert any("reboots are disabled" in n for n in refused.notes)
    nothing = Manager({"vim": "9.0.1"}, {})
    assert not run(nothing, request("Install", reboot_option="RebootIfNeeded"),
                   pending(tmp_path / "other"), clock=lambda: NOW).reboot  # fmt: skip


def test_install_override_list_installs_exactly_its_patches(tmp_path: Path) -> None:
    m = world()
    entries = load("patches:\n  - id: 'vim.amd64'\n  - id: 'curl'\n    title: '7.89*'\n")
    done = run(m, request("Install", install_override=entries), pending(tmp_path),
               clock=lambda: NOW)  # fmt: skip
    assert m.calls == [(["curl", "vim"], [])]
    assert m.installed["openssl"] == "3.0.1"
    assert "openssl" in by_state(done.states)["MISSING"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://example.com/list.yaml", "URLs are not fetched"),
        ("patches: nope", "expected 'patches:'"),
        ("patches:\n  - title: x\n", "patches[0]: needs an id"),
        ("/nonexistent/list.yaml", "cannot read /nonexistent/list.yaml"),
        ("patches: [", "is not YAML or JSON"),
    ],
)
def test_bad_install_override_lists_say_why(text: str, message: str) -> None:
    with pytest.raises(OverrideError) as caught:
        load(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_items_carry_what_describe_instance_patches_shows(tmp_path: Path) -> None:
    m = world()
    m.offered["curl"] = dataclasses.replace(
        m.offered["curl"], cves=("CVE-2024-2398",), release_time=NOW - DAY
    )
    done = run(m, request("Scan"), pending(tmp_path), clock=lambda: NOW)
    curl = next(s for s in done.states if s.package.name == "curl")
    item = states.patch_item(curl, "DEBIAN")
    assert item["KBId"] == "curl.amd64" and item["State"] == "MISSING"
    assert item["InstalledVersion"] == "7.88" and item["AvailableVersion"] == "7.89"
    assert item["CVEIds"] == "CVE-2024-2398" and item["Rule"] == "ApprovalRules[0]"
    assert item["ComplianceLevel"] == "HIGH" and item["Security"] == "true"
    assert item["Repository"] == "bookworm-security"
