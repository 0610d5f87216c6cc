"""macOS (softwareupdate and Homebrew) as Patch Manager uses it, replaying output recorded
in the tools' real formats (tests/fixtures/patching/macos/): neither runs on Linux."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching.base import PackageError
from agent.patching.macos import BREW_ENV, Patcher, parse_list
from agent.patching.model import Package
from agent.tools import Completed, ToolTimeout

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/macos"
SU = "softwareupdate"


def _out(name: str) -> str:
    return (FIXTURES / name).read_text()


def _done(stdout: str = "", code: int = 0, stderr: str = "") -> Completed:
    return Completed(("tool",), code, stdout, stderr)


class Replay:
    """A Runner answering each expected argv (and environment) with recorded output."""

    def __init__(self, *answers: tuple[list[str], Completed | Exception]) -> None:
        self.answers = list(answers)

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        assert self.answers, f"unexpected command {argv}"
        args, answer = self.answers.pop(0)
        assert argv == args
        # brew always runs without auto-update or analytics; Apple's tools need nothing.
        assert dict(env) == (BREW_ENV if "brew" in argv[0] or argv[0] == "sudo" else {})
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def brew(tmp_path: Path) -> str:
    path = tmp_path / "opt/homebrew/bin/brew"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/bash\n")
    return str(path)


SW_VERS = (["sw_vers", "-productVersion"], _done(_out("sw_vers_productVersion.stdout")))
LIST = (
    [SU, "--list"],
    _done(_out("softwareupdate_list.stdout"), 0, _out("softwareupdate_list.stderr")),
)


def _brew_scan(brew: str) -> list[tuple[list[str], Completed | Exception]]:
    return [
        ([brew, "update", "--quiet"], _done()),
        ([brew, "outdated", "--json=v2"], _done(_out("brew_outdated_json_v2.json"))),
        (
            [brew, "info", "--json=v2", "--installed"],
            _done(_out("brew_info_json_v2_installed.json")),
        ),
    ]


def test_scan_lists_softwareupdate_items_and_outdated_brew_packages(
    tmp_path: Path, brew: str
) -> None:
    run = Replay(SW_VERS, LIST, *_brew_scan(brew))
    scan = Patcher(str(tmp_path), run=run).scan()
    assert scan.product == "Sonoma14.5"
    assert scan.updates == [
        Package(
            name="macOS Sonoma 14.6-23G80",
            version="14.6",
            classification="softwareupdate",
            title="macOS Sonoma 14.6",
        ),
        Package(
            name="Safari17.6SonomaAuto-17.6",
            version="17.6",
            classification="softwareupdate",
            title="Safari",
        ),
        Package(
            name="Command Line Tools for Xcode-15.3",
            version="15.3",
            classification="softwareupdate",
            title="Command Line Tools for Xcode",
        ),
        Package(name="ca-certificates", version="2024-07-02", classification="brew"),
        Package(name="openssl@3", version="3.3.1", classification="brew"),
        Package(name="firefox", version="127.0.2", classification="brew cask"),
    ]
    # A pinned formula is not offered: `brew upgrade` would not touch it.
    assert scan.notes == ["brew: node is pinned at 21.7.3"]
    assert [(p.name, p.version, p.classification) for p in scan.installed] == [
        ("ca-certificates", "2024-03-11", "brew"),
        ("node", "21.7.3", "brew"),
        ("openssl@3", "3.3.0", "brew"),
        ("firefox", "126.0", "brew cask"),
    ]
    assert scan.installed[2].installed_time == 1712900000.0
    assert run.answers == []


def test_scan_without_homebrew_uses_softwareupdate_alone(tmp_path: Path) -> None:
    none = _done("", 0, _out("softwareupdate_list_none.stderr"))
    run = Replay(SW_VERS, ([SU, "--list"], none))
    scan = Patcher(str(tmp_path), run=run).scan()
    assert (scan.updates, scan.installed) == ([], [])
    assert scan.notes == ["Homebrew is not installed: softwareupdate only"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_as_root_brew_runs_as_the_owner_of_its_prefix(tmp_path: Path, brew: str) -> None:
    nobody = pwd.getpwnam("nobody")
    os.chown(brew, nobody.pw_uid, nobody.pw_gid)
    sudo = ["sudo", "-n", "-u", "nobody", "-H", brew]
    answers = [([*sudo, *argv[1:]], answer) for argv, answer in _brew_scan(brew)]
    run = Replay(SW_VERS, LIST, *answers)
    Patcher(str(tmp_path), run=run).scan()
    assert run.answers == []


@pytest.mark.parametrize(
    ("title", "label", "security"),
    [
        ("Security Update 2022-005 Catalina", "Security Update 2022-005 Catalina-10.15.7", True),
        ("Rapid Security Response macOS Ventura 13.4.1 (a)", "macOS 13.4.1 (a)-22F770820b", True),
        ("Background Security Improvement", "BSI-26.1", True),
        ("macOS Sonoma 14.6", "macOS Sonoma 14.6-23G80", False),
        ("Safari", "Safari17.6SonomaAuto-17.6", False),
    ],
)
def test_security_updates_are_told_by_their_title(title: str, label: str, security: bool) -> None:
    listed = f"* Label: {label}\n\tTitle: {title}, Version: 1, Size: 1KiB, Recommended: YES, \n"
    run = Replay(
        (["sw_vers", "-productVersion"], _done("13.4.1\n")), ([SU, "--list"], _done(listed))
    )
    scan = Patcher("/nonexistent", run=run).scan()
    assert scan.product == "Ventura13.4.1"
    assert [u.security for u in scan.updates] == [security]


@pytest.mark.parametrize(
    ("version", "product"),
    [
        ("10.15.7", "Catalina10.15.7"),
        ("11.7.10", "BigSur11.7.10"),
        ("15.0", "Sequoia15.0"),
        ("99.1", "macOS99.1"),
    ],
)
def test_product_is_named_as_aws_names_macos_releases(version: str, product: str) -> None:
    run = Replay((["sw_vers", "-productVersion"], _done(version + "\n")), ([SU, "--list"], _done()))
    assert Patcher("/nonexistent", run=run).scan().product == product


def test_restart_action_is_read_from_the_list() -> None:
    items = parse_list(_out("softwareupdate_list.stdout"))
    assert [(i.label, i.restart) for i in items] == [
        ("macOS Sonoma 14.6-23G80", True),
        ("Safari17.6SonomaAuto-17.6", False),
        ("Command Line Tools for Xcode-15.3", False),
    ]


def _su(label: str, version: str, title: str) -> Package:
    return Package(name=label, version=version, classification="softwareupdate", title=title)


def test_install_of_softwareupdate_items_reports_the_restart(tmp_path: Path) -> None:
    safari = _su("Safari17.6SonomaAuto-17.6", "17.6", "Safari")
    sonoma = _su("macOS Sonoma 14.6-23G80", "14.6", "macOS Sonoma 14.6")
    install = _done(_out("softwareupdate_install.stdout"), 0, _out("softwareupdate_install.stderr"))
    run = Replay(
        LIST,
        ([SU, "--install", safari.name, sonoma.name], install),
        ([SU, "--list"], _done(_out("softwareupdate_list_after.stdout"))),
    )
    outcome = Patcher(str(tmp_path), run=run).install([safari, sonoma])
    # Sonoma is staged (still listed, Action: restart): installed, waiting for the restart.
    assert outcome.installed == [safari, sonoma]
    assert outcome.failed == {}
    assert outcome.reboot_required
    assert run.answers == []


def test_install_reports_a_label_softwareupdate_refuses(tmp_path: Path) -> None:
    tools = _su("Command Line Tools for Xcode-15.3", "15.3", "Command Line Tools for Xcode")
    refused = _done(
        "",
        0,
        _out("softwareupdate_install_unknown.stderr").replace(
            "Safari17.5SonomaAuto-17.5", tools.name
        ),
    )
    run = Replay(
        LIST,
        ([SU, "--install", tools.name], refused),
        ([SU, "--list"], _done(_out("softwareupdate_list_after.stdout"))),
    )
    outcome = Patcher(str(tmp_path), run=run).install([tools])
    assert outcome.installed == []
    assert outcome.failed == {tools.name: "softwareupdate: No such update"}
    assert not outcome.reboot_required


def test_install_of_a_label_no_longer_offered_runs_nothing(tmp_path: Path) -> None:
    gone = _su("Safari17.5SonomaAuto-17.5", "17.5", "Safari")
    run = Replay(LIST)
    outcome = Patcher(str(tmp_path), run=run).install([gone])
    assert outcome.failed == {gone.name: "softwareupdate does not offer it (any more)"}


def test_install_of_an_item_still_listed_afterwards_failed(tmp_path: Path) -> None:
    tools = _su("Command Line Tools for Xcode-15.3", "15.3", "Command Line Tools for Xcode")
    run = Replay(
        LIST,
        ([SU, "--install", tools.name], _done("Downloading Command Line Tools for Xcode\n")),
        ([SU, "--list"], _done(_out("softwareupdate_list_after.stdout"))),
    )
    outcome = Patcher(str(tmp_path), run=run).install([tools])
    assert outcome.failed == {tools.name: "softwareupdate still lists it after the install"}


def _brew_pkg(name: str, version: str, cask: bool = False) -> Package:
    return Package(name=name, version=version, classification="brew cask" if cask else "brew")


def test_install_upgrades_exactly_the_named_formulae_and_casks(tmp_path: Path, brew: str) -> None:
    info = [brew, "info", "--json=v2", "--installed"]
    run = Replay(
        (info, _done(_out("brew_info_json_v2_installed.json"))),
        ([brew, "upgrade", "--formula", "openssl@3"], _done(_out("brew_upgrade_openssl.stdout"))),
        ([brew, "upgrade", "--cask", "firefox"], _done(_out("brew_upgrade_firefox.stdout"))),
        (info, _done(_out("brew_info_json_v2_installed_after.json"))),
    )
    outcome = Patcher(str(tmp_path), run=run).install(
        [_brew_pkg("openssl@3", "3.3.1"), _brew_pkg("firefox", "127.0.2", cask=True)]
    )
    # ca-certificates came along as openssl@3's dependency.
    assert [(p.name, p.version) for p in outcome.installed] == [
        ("ca-certificates", "2024-07-02"),
        ("openssl@3", "3.3.1"),
        ("firefox", "127.0.2"),
    ]
    assert outcome.failed == {}
    assert outcome.notes == []
    assert run.answers == []


def test_install_fails_whole_when_a_blocked_formula_would_be_upgraded(
    tmp_path: Path, brew: str
) -> None:
    dry = ([brew, "upgrade", "--dry-run", "--formula", "openssl@3"],)
    run = Replay((dry[0], _done(_out("brew_upgrade_dry_run.stdout"))))
    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=run).install(
            [_brew_pkg("openssl@3", "3.3.1")], blocked=["ca-certificates"]
        )
    assert str(caught.value) == (
        "ca-certificates is rejected (RejectedPatchesAction BLOCK) and openssl@3 needs it"
    )
    assert run.answers == []


def test_a_brew_that_changed_nothing_and_failed_is_a_package_error(
    tmp_path: Path, brew: str
) -> None:
    info = [brew, "info", "--json=v2", "--installed"]
    locked = _done(
        "",
        1,
        "Error: A `brew upgrade openssl@3` process has already locked "
        "/opt/homebrew/Cellar/openssl@3.\nPlease wait for it to finish.\n",
    )
    run = Replay(
        (info, _done(_out("brew_info_json_v2_installed.json"))),
        ([brew, "upgrade", "--formula", "openssl@3"], locked),
        (info, _done(_out("brew_info_json_v2_installed.json"))),
    )
    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=run).install([_brew_pkg("openssl@3", "3.3.1")])
    assert str(caught.value) == (
        "brew upgrade failed: Error: A `brew upgrade openssl@3` process has already locked "
        "/opt/homebrew/Cellar/openssl@3. (exit 1)"
    )


def test_brew_update_locked_fails_the_scan_with_brews_message(tmp_path: Path, brew: str) -> None:
    run = Replay(
        SW_VERS,
        LIST,
        ([brew, "update", "--quiet"], _done("", 1, _out("brew_update_locked.stderr"))),
    )
    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=run).scan()
    assert str(caught.value) == (
        "brew update failed: Error: Another `brew update` process is already running. (exit 1)"
    )


def test_brew_updates_without_homebrew_fail_per_package(tmp_path: Path) -> None:
    outcome = Patcher(str(tmp_path), run=Replay()).install([_brew_pkg("openssl@3", "3.3.1")])
    assert outcome.failed == {"openssl@3": "Homebrew is not installed"}


def test_install_refuses_an_option_as_a_name(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="invalid Homebrew name '--force'"):
        Patcher(str(tmp_path), run=Replay()).install([_brew_pkg("--force", "1")])
    with pytest.raises(PackageError, match="invalid softwareupdate label '--all'"):
        Patcher(str(tmp_path), run=Replay()).install([_su("--all", "1", "all")])


def test_a_failing_softwareupdate_is_a_package_error(tmp_path: Path) -> None:
    failed = _done(
        "",
        1,
        "Software Update Tool\n\nFinding available software\n"
        "Cannot connect to the Software Update server.\n",
    )
    run = Replay(SW_VERS, ([SU, "--list"], failed))
    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=run).scan()
    assert str(caught.value) == (
        "softwareupdate --list failed: Cannot connect to the Software Update server. (exit 1)"
    )


def test_a_hung_tool_is_a_package_error(tmp_path: Path) -> None:
    run = Replay((["sw_vers", "-productVersion"], ToolTimeout("sw_vers did not finish")))
    with pytest.raises(PackageError, match="sw_vers did not finish"):
        Patcher(str(tmp_path), run=run).scan()
