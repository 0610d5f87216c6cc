"""The predefined patch baselines, one per operating system, as AWS's (docs/patching.md lists
them beside AWS's wording).  Their ids are their names; they cannot be changed or deleted,
only replaced as an OS's default (``corral baselines set-default``).  The agent uses the one
for its OS when a command carries no baseline (a document run locally with run-document).
"""

from __future__ import annotations

from typing import Any, Final

from agent.patching.baseline import Baseline, parse

_DEBIAN_PRIORITIES: Final = ["Required", "Important", "Standard", "Optional", "Extra"]


def _rule(
    filters: dict[str, list[str]], days: int | None = 7, non_security: bool = False
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "PatchFilterGroup": {"PatchFilters": [{"Key": k, "Values": v} for k, v in filters.items()]},
        "ComplianceLevel": "UNSPECIFIED",
        "EnableNonSecurity": non_security,
    }
    if days is not None:
        rule["ApproveAfterDays"] = days
    return rule


def _debian(os_name: str, name: str, what: str) -> dict[str, Any]:
    return {
        "Name": name,
        "OperatingSystem": os_name,
        "Description": f"Default patch baseline for {what}: every security update (from the "
        "security suite) of priority Required, Important, Standard, Optional or Extra, "
        "approved at once (the repositories carry no release dates).",
        "ApprovalRules": {
            "PatchRules": [
                _rule({"PRODUCT": ["*"], "SECTION": ["*"], "PRIORITY": _DEBIAN_PRIORITIES}, None)
            ]
        },
    }


def _rhel(os_name: str, name: str, what: str, severities: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "OperatingSystem": os_name,
        "Description": f"Default patch baseline for {what}: Security updates of severity "
        f"{' or '.join(severities)}, and Bugfix updates, 7 days after release.",
        "ApprovalRules": {
            "PatchRules": [
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["Security"], "SEVERITY": severities}),
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["Bugfix"]}),
            ]
        },
    }


_CRIT_IMP: Final = ["Critical", "Important"]

PREDEFINED: Final[dict[str, dict[str, Any]]] = {
    "UBUNTU": _debian("UBUNTU", "AWS-UbuntuDefaultPatchBaseline", "Ubuntu"),
    "DEBIAN": _debian("DEBIAN", "AWS-DebianDefaultPatchBaseline", "Debian"),
    "RASPBIAN": _debian("RASPBIAN", "AWS-DefaultRaspbianPatchBaseline", "Raspberry Pi OS"),
    "REDHAT_ENTERPRISE_LINUX": _rhel(
        "REDHAT_ENTERPRISE_LINUX",
        "AWS-RedHatDefaultPatchBaseline",
        "Red Hat Enterprise Linux (and Fedora)",
        _CRIT_IMP,
    ),
    "AMAZON_LINUX_2023": _rhel(
        "AMAZON_LINUX_2023",
        "AWS-AmazonLinux2023DefaultPatchBaseline",
        "Amazon Linux 2023",
        _CRIT_IMP,
    ),
    "AMAZON_LINUX_2022": _rhel(
        "AMAZON_LINUX_2022",
        "AWS-AmazonLinux2022DefaultPatchBaseline",
        "Amazon Linux 2022",
        _CRIT_IMP,
    ),
    "AMAZON_LINUX": _rhel(
        "AMAZON_LINUX", "AWS-AmazonLinuxDefaultPatchBaseline", "Amazon Linux", _CRIT_IMP
    ),
    "AMAZON_LINUX_2": _rhel(
        "AMAZON_LINUX_2", "AWS-AmazonLinux2DefaultPatchBaseline", "Amazon Linux 2", _CRIT_IMP
    ),
    "ROCKY_LINUX": _rhel(
        "ROCKY_LINUX", "AWS-RockyLinuxDefaultPatchBaseline", "Rocky Linux", _CRIT_IMP
    ),
    "ALMA_LINUX": _rhel("ALMA_LINUX", "AWS-AlmaLinuxDefaultPatchBaseline", "AlmaLinux", _CRIT_IMP),
    "ORACLE_LINUX": _rhel(
        "ORACLE_LINUX",
        "AWS-OracleLinuxDefaultPatchBaseline",
        "Oracle Linux",
        ["Important", "Moderate"],
    ),
    "CENTOS": {
        "Name": "AWS-CentOSDefaultPatchBaseline",
        "OperatingSystem": "CENTOS",
        "Description": "Default patch baseline for CentOS: every update, including "
        "non-security updates, 7 days after release.",
        "ApprovalRules": {
            "PatchRules": [
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["*"], "SEVERITY": ["*"]}, 7, True)
            ]
        },
    },
    "SUSE": {
        "Name": "AWS-SuseDefaultPatchBaseline",
        "OperatingSystem": "SUSE",
        "Description": "Default patch baseline for SUSE: Security patches of severity "
        "Critical or Important, 7 days after release.",
        "ApprovalRules": {
            "PatchRules": [
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["Security"], "SEVERITY": _CRIT_IMP})
            ]
        },
    },
    "MACOS": {
        "Name": "AWS-MacOSDefaultPatchBaseline",
        "OperatingSystem": "MACOS",
        "Description": "Default patch baseline for macOS: every security update, and every "
        "package with a current update (softwareupdate, installer, brew, brew cask).",
        "ApprovalRules": {
            "PatchRules": [
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["*"]}, 0),
                _rule({"PRODUCT": ["*"], "CLASSIFICATION": ["*"]}, 0, True),
            ]
        },
    },
    "WINDOWS": {
        "Name": "AWS-DefaultPatchBaseline",
        "OperatingSystem": "WINDOWS",
        "Description": "Default patch baseline for Windows: CriticalUpdates and "
        "SecurityUpdates of MSRC severity Critical or Important, 7 days after release.",
        "ApprovalRules": {
            "PatchRules": [
                _rule(
                    {
                        "PRODUCT": ["*"],
                        "CLASSIFICATION": ["CriticalUpdates", "SecurityUpdates"],
                        "MSRC_SEVERITY": _CRIT_IMP,
                    }
                )
            ]
        },
    },
    "ARCH": {
        "Name": "Corral-ArchDefaultPatchBaseline",
        "OperatingSystem": "ARCH",
        "Description": "Default patch baseline for Arch Linux (Corral's): every update 7 days "
        "after its package was built (pacman has no security metadata).",
        "ApprovalRules": {"PatchRules": [_rule({"PRODUCT": ["*"]}, 7, True)]},
    },
    "ALPINE": {
        "Name": "Corral-AlpineDefaultPatchBaseline",
        "OperatingSystem": "ALPINE",
        "Description": "Default patch baseline for Alpine Linux (Corral's): every update 7 "
        "days after its package was built (apk has no security metadata).",
        "ApprovalRules": {"PatchRules": [_rule({"PRODUCT": ["*"]}, 7, True)]},
    },
}
PREDEFINED_IDS: Final = frozenset(str(b["Name"]) for b in PREDEFINED.values())


def predefined(operating_system: str) -> Baseline | None:
    raw = PREDEFINED.get(operating_system)
    if raw is None:
        return None
    return parse(raw, baseline_id=str(raw["Name"]))


def all_predefined() -> list[Baseline]:
    return [parse(raw, baseline_id=str(raw["Name"])) for raw in PREDEFINED.values()]
