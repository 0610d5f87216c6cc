"""Patch baselines: AWS's rules for what a baseline may say (bad input, one line naming the
field), and what a baseline approves (AWS's order: rejected, approved, global filters, rules
with their delays)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agent.patching import defaults, names
from agent.patching.baseline import BaselineError, parse
from agent.patching.model import Package
from agent.patching.rules import (
    APPROVED,
    EXPLICIT_APPROVED,
    EXPLICIT_REJECTED,
    NOT_APPROVED,
    PENDING_APPROVAL,
    evaluate,
)

DAY = 86_400.0
NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC).timestamp()


def rhel(**more: Any) -> dict[str, Any]:
    return {
        "Name": "rhel-web",
        "OperatingSystem": "REDHAT_ENTERPRISE_LINUX",
        "ApprovalRules": {
            "PatchRules": [
                {
                    "PatchFilterGroup": {
                        "PatchFilters": [
                            {"Key": "CLASSIFICATION", "Values": ["Security"]},
                            {"Key": "SEVERITY", "Values": ["Critical", "Important"]},
                        ]
                    },
                    "ApproveAfterDays": 7,
                    "ComplianceLevel": "CRITICAL",
                },
                {
                    "PatchFilterGroup": {"PatchFilters": [{"Key": "PRODUCT", "Values": ["*"]}]},
                    "ApproveUntilDate": "2026-11-01",
                    "EnableNonSecurity": True,
                    "ComplianceLevel": "LOW",
                },
            ]
        },
        **more,
    }


def update(name: str, **kw: Any) -> Package:
    kw.setdefault("arch", "x86_64")
    kw.setdefault("version", "1.1-1.el9")
    return Package(name=name, **kw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"Name": "x", "OperatingSystem": "UBUNTU"}, "Name 'x': 3 to 128"),
        ({"Name": "good", "OperatingSystem": "HAIKU"}, "OperatingSystem 'HAIKU': one of"),
        (
            {
                "Name": "ubuntu-sev",
                "OperatingSystem": "UBUNTU",
                "ApprovalRules": {
                    "PatchRules": [
                        {
                            "PatchFilterGroup": {
                                "PatchFilters": [{"Key": "SEVERITY", "Values": ["Critical"]}]
                            }
                        }
                    ]
                },
            },
            "Key 'SEVERITY' is not valid for UBUNTU (valid: PRODUCT, PRIORITY, SECTION)",
        ),
        (
            rhel(
                ApprovalRules={
                    "PatchRules": [
                        {"PatchFilterGroup": {"PatchFilters": []}, "ApproveAfterDays": 400}
                    ]
                }
            ),
            "ApproveAfterDays '400': a whole number of days, 0 to 360",
        ),
        (
            rhel(
                ApprovalRules={
                    "PatchRules": [
                        {
                            "PatchFilterGroup": {"PatchFilters": []},
                            "ApproveAfterDays": 7,
                            "ApproveUntilDate": "2026-01-01",
                        }
                    ]
                }
            ),
            "ApproveAfterDays or ApproveUntilDate, not both",
        ),
        (
            rhel(ApprovalRules={"PatchRules": [{"PatchFilterGroup": {"PatchFilters": []}}]}),
            "ApproveAfterDays or ApproveUntilDate is required",
        ),
        (
            rhel(
                ApprovalRules={
                    "PatchRules": [
                        {"PatchFilterGroup": {"PatchFilters": []}, "ApproveUntilDate": "2026-13-01"}
                    ]
                }
            ),
            "ApproveUntilDate '2026-13-01': a date YYYY-MM-DD",
        ),
        (
            {
                "Name": "deb",
                "OperatingSystem": "DEBIAN",
                "ApprovalRules": {
                    "PatchRules": [
                        {"PatchFilterGroup": {"PatchFilters": []}, "ApproveAfterDays": 7}
                    ]
                },
            },
            "not supported on DEBIAN",
        ),
        (rhel(ApprovedPatches=["bad name!"]), "ApprovedPatches[0]: 'bad name!' is not a patch"),
        (
            {"Name": "win", "OperatingSystem": "WINDOWS", "RejectedPatches": ["openssl"]},
            "is not a patch name for WINDOWS: a KB id",
        ),
        (
            {"Name": "deb", "OperatingSystem": "DEBIAN", "ApprovedPatches": ["Open_SSL"]},
            "is not a patch name for DEBIAN",
        ),
        (rhel(RejectedPatchesAction="DENY"), "RejectedPatchesAction 'DENY': one of"),
        (rhel(Colour="red"), "unknown baseline field 'Colour'"),
        (rhel(ApprovedPatches=[f"p{i}" for i in range(51)]), "at most 50 patches"),
        (
            {
                "Name": "win",
                "OperatingSystem": "WINDOWS",
                "Sources": [{"Name": "src", "Products": ["*"], "Configuration": "x"}],
            },
            "Sources: alternative repositories are for Linux",
        ),
        ([1, 2], "a patch baseline is a JSON object"),
    ],
)
def test_bad_baselines_are_refused_with_one_line_naming_the_field(raw: Any, message: str) -> None:
    with pytest.raises(BaselineError) as caught:
        parse(raw)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_a_baseline_round_trips_through_awss_json() -> None:
    first = parse(rhel(ApprovedPatches=["kernel*"], RejectedPatches=["telnet"]))
    again = parse(first.to_json())
    assert again == first
    shown = first.to_json()
    assert shown["RejectedPatchesAction"] == "ALLOW_AS_DEPENDENCY"
    assert shown["ApprovalRules"]["PatchRules"][0]["ApproveAfterDays"] == 7
    # GetPatchBaseline's read-only fields are accepted (an SSM user's files carry over).
    parse({**shown, "BaselineId": "pb-0123456789abcdef0", "CreatedDate": "x",
           "ModifiedDate": "y", "PatchGroups": ["web"]})  # fmt: skip


def test_rules_approve_after_their_delay_and_say_which_rule() -> None:
    b = parse(rhel())
    fresh = update("openssl", classification="Security", severity="Important",
                   release_time=NOW - 2 * DAY)  # fmt: skip
    old = update("openssl", classification="Security", severity="Critical",
                 release_time=NOW - 8 * DAY)  # fmt: skip
    pending = evaluate(b, fresh, "RedhatEnterpriseLinux9.3", NOW)
    assert pending.status == PENDING_APPROVAL
    assert pending.approval_time == pytest.approx(NOW + 5 * DAY)
    done = evaluate(b, old, "RedhatEnterpriseLinux9.3", NOW)
    assert (done.status, done.rule, done.compliance_level) == (
        APPROVED, "ApprovalRules[0]", "CRITICAL")  # fmt: skip
    # A moderate security update matches rule 1's classification but not its severity; rule
    # 2 approves anything released by 2026-11-01 (non-security too).
    early = update("curl", classification="Bugfix", release_time=NOW - 60 * DAY)
    late = update("curl", classification="", release_time=NOW - 10 * DAY)
    assert evaluate(b, early, "x", NOW).rule == "ApprovalRules[1]"
    assert evaluate(b, late, "x", NOW).status == NOT_APPROVED


def test_lists_come_before_rules_and_rejected_wins() -> None:
    b = parse(rhel(ApprovedPatches=["zlib", "kernel*"], RejectedPatches=["kernel-debug*"],
                   ApprovedPatchesComplianceLevel="HIGH",
                   ApprovedPatchesEnableNonSecurity=True))  # fmt: skip
    assert evaluate(b, update("zlib"), "x", NOW).status == EXPLICIT_APPROVED
    assert evaluate(b, update("zlib"), "x", NOW).compliance_level == "HIGH"
    assert evaluate(b, update("kernel-debug-core"), "x", NOW).status == EXPLICIT_REJECTED
    assert evaluate(b, update("kernel-core"), "x", NOW).status == EXPLICIT_APPROVED


def test_linux_rules_approve_security_updates_only_unless_non_security_is_enabled() -> None:
    b = parse({"Name": "ubuntu-all", "OperatingSystem": "UBUNTU", "ApprovalRules": {
        "PatchRules": [{"PatchFilterGroup": {"PatchFilters": [
            {"Key": "PRIORITY", "Values": ["Required", "Important"]}]}}]}})  # fmt: skip
    security = Package("openssl", "amd64", "3.0.2", security=True, priority="Important",
                       classification="Security", repository="jammy-security")  # fmt: skip
    plain = Package("vim", "amd64", "9.0", priority="Important", repository="jammy-updates")
    optional = Package("libfoo", "amd64", "1", security=True, classification="Security",
                       priority="Optional")  # fmt: skip
    assert evaluate(b, security, "Ubuntu22.04", NOW).status == APPROVED  # no date: at once
    assert evaluate(b, plain, "Ubuntu22.04", NOW).status == NOT_APPROVED
    assert evaluate(b, optional, "Ubuntu22.04", NOW).status == NOT_APPROVED
    # An explicitly approved non-security update needs ApprovedPatchesEnableNonSecurity.
    listed = parse({"Name": "ubuntu-vim", "OperatingSystem": "UBUNTU", "ApprovedPatches": ["vim"]})
    assert evaluate(listed, plain, "Ubuntu22.04", NOW).status == NOT_APPROVED
    allowed = parse({**listed.to_json(), "ApprovedPatchesEnableNonSecurity": True})
    assert evaluate(allowed, plain, "Ubuntu22.04", NOW).status == EXPLICIT_APPROVED


def test_global_filters_exclude_before_any_rule() -> None:
    b = parse(rhel(GlobalFilters={"PatchFilters": [
        {"Key": "PRODUCT", "Values": ["RedhatEnterpriseLinux8*"]}]}))  # fmt: skip
    old = update("openssl", classification="Security", severity="Critical",
                 release_time=NOW - 30 * DAY)  # fmt: skip
    assert evaluate(b, old, "RedhatEnterpriseLinux9.3", NOW).rule == "GlobalFilters"
    assert evaluate(b, old, "RedhatEnterpriseLinux8.9", NOW).status == APPROVED


def test_pacman_has_no_security_metadata_so_only_non_security_rules_approve() -> None:
    arch = defaults.predefined("ARCH")
    assert arch is not None
    pkg = Package("linux", "x86_64", "6.7.1-1", release_time=NOW - 8 * DAY)
    assert evaluate(arch, pkg, "Arch", NOW).status == APPROVED
    newer = Package("linux", "x86_64", "6.7.2-1", release_time=NOW - DAY)
    assert evaluate(arch, newer, "Arch", NOW).status == PENDING_APPROVAL
    strict = parse(
        {
            "Name": "arch-strict",
            "OperatingSystem": "ARCH",
            "ApprovalRules": {
                "PatchRules": [{"PatchFilterGroup": {"PatchFilters": []}, "ApproveAfterDays": 0}]
            },
        }
    )
    assert evaluate(strict, pkg, "Arch", NOW).status == NOT_APPROVED  # fmt: skip


def test_every_predefined_baseline_parses_and_approves_what_aws_says() -> None:
    found = {b.operating_system: b for b in defaults.all_predefined()}
    assert set(found) == set(defaults.PREDEFINED)
    windows = found["WINDOWS"]
    kb = Package("KB5034441", kb="KB5034441", classification="SecurityUpdates",
                 severity="Critical", release_time=NOW - 8 * DAY)  # fmt: skip
    assert evaluate(windows, kb, "WindowsServer2022", NOW).status == APPROVED
    low = Package("KB1", kb="KB1", classification="SecurityUpdates", severity="Low",
                  release_time=NOW - 8 * DAY)  # fmt: skip
    assert evaluate(windows, low, "WindowsServer2022", NOW).status == NOT_APPROVED
    ubuntu = found["UBUNTU"]
    sec = Package("openssl", "amd64", "3", security=True, classification="Security",
                  priority="Important", section="libs")  # fmt: skip
    assert evaluate(ubuntu, sec, "Ubuntu22.04", NOW).status == APPROVED


@pytest.mark.parametrize(
    ("os_name", "entry", "pkg", "hit"),
    [
        ("REDHAT_ENTERPRISE_LINUX", "openssl-1:3.0.7-27.el9.x86_64",
         Package("openssl", "x86_64", "1:3.0.7-27.el9"), True),
        ("REDHAT_ENTERPRISE_LINUX", "openssl-3.0.7-27.el9.x86_64",
         Package("openssl", "x86_64", "1:3.0.7-27.el9"), True),
        ("REDHAT_ENTERPRISE_LINUX", "RHSA-2024:1234",
         Package("openssl", "x86_64", "3", advisories=("RHSA-2024:1234",)), True),
        ("REDHAT_ENTERPRISE_LINUX", "openssl.i686", Package("openssl", "x86_64", "3"), False),
        ("DEBIAN", "libc6", Package("libc6", "amd64", "2.36-9"), True),
        ("DEBIAN", "libc6:amd64", Package("libc6", "amd64", "2.36-9"), True),
        ("DEBIAN", "libc6=2.36-9", Package("libc6", "amd64", "2.36-8"), False),
        ("WINDOWS", "kb5034441", Package("KB5034441", kb="KB5034441"), True),
    ],
)  # fmt: skip
def test_patch_names_match_as_each_os_writes_them(
    os_name: str, entry: str, pkg: Package, hit: bool
) -> None:
    names.check(os_name, entry, "ApprovedPatches[0]")
    assert (names.matches(os_name, (entry,), pkg) is not None) is hit
