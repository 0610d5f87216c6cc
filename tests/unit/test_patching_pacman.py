"""pacman's output as agent/patching/pacman.py reads it: recorded from the real pacman 6.0
(``LC_ALL=C TZ=UTC``) against the repository tests/integration/pacmanrepo.py builds, and the
provider's failure paths replayed through its ``run`` seam."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching import pacman
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.tools import Completed

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/pacman"
NAMES = ["corral-app", "corral-fix", "corral-lib", "corral-plain", "corral-sec"]


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_qi_gives_installed_packages_with_install_dates() -> None:
    installed = pacman.parse_installed(_read("Qi.txt"))
    assert [(p.name, p.arch, p.version) for p in installed] == [
        (name, "any", "1.0-1") for name in NAMES
    ]
    assert all(p.installed_time and p.installed_time > 1709251200 for p in installed)


def test_si_gives_repository_and_build_date_as_release_time() -> None:
    sync = pacman.parse_sync(_read("Si.txt"))
    assert sorted(sync) == ["corral-app", "corral-sec"]
    sec = sync["corral-sec"]
    assert (sec.version, sec.arch, sec.repository, sec.release_time) == (
        "2.0-1",
        "any",
        "corral",
        1709251200.0,
    )
    assert (sec.classification, sec.severity) == ("", "")
    assert sync["corral-app"].release_time == 1709251202.0


def test_info_joins_continuation_lines_and_keeps_the_first_repository() -> None:
    text = (
        "Repository      : core\nName            : bash\nVersion         : 5.2-1\n"
        "Optional Deps   : a: one\n                  b: two\n"
        "Build Date      : Tue Oct 10 09:08:07 2023\n\n"
        "Repository      : testing\nName            : bash\nVersion         : 5.3-1\n"
    )
    assert pacman.parse_info(text)[0]["Optional Deps"] == "a: one b: two"
    sync = pacman.parse_sync(text)
    assert (sync["bash"].repository, sync["bash"].release_time) == ("core", 1696928887.0)
    assert pacman.parse_date("None") is None


def test_qu_gives_the_newer_versions() -> None:
    assert pacman.parse_upgradable(_read("Qu.txt")) == dict.fromkeys(NAMES, "2.0-1")
    assert pacman.parse_upgradable("linux 6.1-1 -> 6.2-1 [ignored]\nnoise\n") == {"linux": "6.2-1"}


def test_errors_are_pacmans_own_lines() -> None:
    locked = Completed(("pacman",), 1, "", _read("S-locked.stderr"))
    assert pacman.pacman_error(locked) == (
        "failed to init transaction (unable to lock database); "
        "could not lock database: File exists (exit 1)"
    )
    down = Completed(("pacman",), 1, "", _read("Sy-unreachable.stderr"))
    assert pacman.pacman_error(down) == (
        "failed retrieving file 'corral.db' from disk : Couldn't open file /srv/repo/corral.db; "
        "failed to synchronize all databases (download library error) (exit 1)"
    )
    assert pacman.pacman_error(Completed(("pacman",), 1, "", "")) == "exit 1"


def test_a_blocked_dependency_is_named_with_what_needs_it() -> None:
    done = Completed(("pacman",), 1, _read("S-blocked.stdout"), _read("S-blocked.stderr"))
    assert pacman.blocked_reason(done, ["corral-lib"]) == (
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-app needs it "
        "(pacman: unable to satisfy dependency 'corral-lib>=2.0' required by corral-app)"
    )
    assert pacman.blocked_reason(done, ["corral-li"]) is None
    stderr_only = Completed(("pacman",), 1, "", _read("S-blocked.stderr"))
    assert pacman.blocked_reason(stderr_only, ["corral-lib"]) is not None


class Replay:
    """Answers each pacman operation (-Sy, -Qi, -S ...) with recorded output."""

    def __init__(self, answers: Mapping[str, Completed]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append(argv)
        assert (env["LC_ALL"], env["TZ"]) == ("C", "UTC")
        for word in argv:
            if word in self.answers:
                return self.answers[word]
        return Completed(tuple(argv), 0, "", "")


def _ok(stdout: str) -> Completed:
    return Completed(("pacman",), 0, stdout, "")


def test_a_version_the_sync_database_lacks_is_failed_without_running_pacman_s() -> None:
    run = Replay({"-Qi": _ok(_read("Qi.txt")), "-Si": _ok(_read("Si.txt"))})
    outcome = pacman.Patcher("/srv/root", run=run).install(
        [Package("corral-sec", "any", "1.5-1"), Package("corral-nope", "any", "1.0-1")]
    )
    assert outcome.installed == []
    assert outcome.failed == {
        "corral-sec.any": "the repositories offer corral-sec 2.0-1, not 1.5-1 "
        "(pacman installs only that)",
        "corral-nope.any": "corral-nope is in no sync database",
    }
    assert [c[c.index("--hookdir") + 2] for c in run.calls] == ["-Qi", "-Si"]


def test_a_held_lock_fails_the_install_with_pacmans_message() -> None:
    locked = Completed(("pacman",), 1, "", _read("S-locked.stderr"))
    run = Replay({"-Qi": _ok(_read("Qi.txt")), "-Si": _ok(_read("Si.txt")), "-S": locked})
    with pytest.raises(PackageError, match=r"^pacman -S failed: failed to init transaction "):
        pacman.Patcher("/srv/root", run=run).install(
            [Package("corral-sec", "any", "2.0-1")], blocked=["corral-lib"]
        )
    install = run.calls[-1]
    assert install[install.index("--ignore") + 1] == "corral-lib"
    assert install[-2:] == ["--", "corral-sec"]


def test_a_scan_reports_a_failed_sync() -> None:
    run = Replay({"-Sy": Completed(("pacman",), 1, "", _read("Sy-unreachable.stderr"))})
    with pytest.raises(PackageError, match=r"^pacman -Sy failed: failed retrieving file"):
        pacman.Patcher("/srv/root", run=run).scan()


def test_no_updates_is_an_empty_list() -> None:
    run = Replay({"-Qi": _ok(_read("Qi.txt")), "-Qu": Completed(("pacman",), 1, "", "")})
    scan = pacman.Patcher("/", run=run).scan()
    assert (scan.updates, len(scan.installed)) == ([], 5)
    assert run.calls[0][:4] == ["pacman", "--noconfirm", "--config", "/etc/pacman.conf"]
    assert "--root" not in run.calls[0]


@pytest.mark.parametrize(
    ("package", "blocked", "message"),
    [
        (Package(name="-rf", version="1-1"), (), "invalid package name '-rf'"),
        (Package(name="ok", version="1"), (), "invalid package version '1'"),
        (Package(name="ok", version="1-1"), ("--all",), "invalid package name '--all'"),
    ],
)
def test_bad_names_and_versions_are_refused_before_pacman_runs(
    package: Package, blocked: tuple[str, ...], message: str
) -> None:
    run = Replay({})
    with pytest.raises(PackageError, match=message):
        pacman.Patcher("/srv/root", run=run).install([package], blocked=blocked)
    assert run.calls == []


def test_a_missing_root_config_with_sources_is_a_package_error(tmp_path: Path) -> None:
    source = Source("extra", ("Arch",), "[extra]\nServer = file:///srv/extra\n")
    with pytest.raises(PackageError, match=r"cannot read \S+/etc/pacman.conf: No such file"):
        pacman.Patcher(str(tmp_path), run=Replay({})).scan([source])


def test_a_replaced_running_kernel_means_a_pending_reboot(tmp_path: Path) -> None:
    linux = [Package("linux", "x86_64", "6.9.1.arch1-1"), Package("bash", "x86_64", "5.2-1")]
    (tmp_path / "6.9.1-arch1-1").mkdir()
    assert pacman.kernel_replaced(linux, "6.9.1-arch1-1", tmp_path) is False
    assert pacman.kernel_replaced(linux, "6.8.0-arch1-1", tmp_path) is True
    assert pacman.kernel_replaced(linux[1:], "6.8.0-arch1-1", tmp_path) is False
