"""apk (Alpine) as Patch Manager uses it, replaying output recorded from apk-tools 2.14
(tests/fixtures/patching/apk/): Alpine's apk cannot run on this Debian machine."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching.apk import Patcher
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.tools import Completed, ToolTimeout

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/apk"
UPGRADABLE = ("busybox", "ca-certificates-bundle", "libcrypto3", "libssl3", "linux-virt")


def _out(name: str) -> str:
    return (FIXTURES / name).read_text()


class Replay:
    """A Runner answering each expected argv with its recorded output, in order."""

    def __init__(self, root: Path, *answers: tuple[list[str], Completed | Exception]) -> None:
        self.prefix = ["apk", "--root", str(root)]
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append(argv)
        assert timeout == 3600.0
        assert self.answers, f"unexpected command {argv}"
        args, answer = self.answers.pop(0)
        assert argv == [*self.prefix, *args]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _done(stdout: str = "", code: int = 0, stderr: str = "") -> Completed:
    return Completed(("apk",), code, stdout, stderr)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An Alpine 3.19 tree: os-release, apk's installed database, a cached APKINDEX."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text(
        'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'
    )
    (tmp_path / "lib/apk/db").mkdir(parents=True)
    (tmp_path / "lib/apk/db/installed").write_text(_out("installed"))
    cache = tmp_path / "var/cache/apk"
    cache.mkdir(parents=True)
    with tarfile.open(cache / "APKINDEX.6d8b8e3b.tar.gz", "w:gz") as archive:
        for member, fixture in (("DESCRIPTION", "DESCRIPTION.main"), ("APKINDEX", "APKINDEX.main")):
            data = (FIXTURES / fixture).read_bytes()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return tmp_path


def _scan_answers() -> list[tuple[list[str], Completed | Exception]]:
    return [
        (["update"], _done(_out("update.stdout"))),
        (["list", "--installed"], _done(_out("list_installed.stdout"))),
        (["list", "--upgradable"], _done(_out("list_upgradable.stdout"))),
    ]


def test_scan_lists_installed_and_upgradable_with_build_times(root: Path) -> None:
    run = Replay(root, *_scan_answers())
    scan = Patcher(str(root), run=run).scan()
    assert scan.product == "Alpine3.19"
    assert len(scan.installed) == 9
    busybox = next(p for p in scan.installed if p.name == "busybox")
    # The installed version's build time comes from lib/apk/db/installed.
    assert busybox == Package(
        name="busybox", arch="x86_64", version="1.36.1-r15", release_time=1699446125.0
    )
    musl = next(p for p in scan.installed if p.name == "musl")
    assert (musl.version, musl.release_time) == ("1.2.4_git20230717-r4", None)
    assert [u.name for u in scan.updates] == list(UPGRADABLE)
    libssl = next(u for u in scan.updates if u.name == "libssl3")
    assert libssl == Package(
        name="libssl3",
        arch="x86_64",
        version="3.1.4-r6",
        release_time=1711981126.0,
        repository="https://dl-cdn.alpinelinux.org/alpine/v3.19/main",
    )
    # apk has no security metadata.
    assert {(u.classification, u.severity, u.security) for u in scan.updates} == {("", "", False)}
    assert not scan.reboot_required
    assert run.answers == []


def test_scan_without_cached_index_has_no_release_time(tmp_path: Path) -> None:
    run = Replay(tmp_path, *_scan_answers())
    scan = Patcher(str(tmp_path), run=run).scan()
    assert scan.product == ""
    assert [u.release_time for u in scan.updates] == [None] * 5


def test_scan_adds_the_baseline_sources_as_repositories(root: Path) -> None:
    source = Source("edge", ("Alpine3.19",), "# extra\nhttps://mirror.example/alpine/edge/main\n")
    extra = ["--repository", "https://mirror.example/alpine/edge/main"]
    answers = [([*extra, *args], answer) for args, answer in _scan_answers()]
    run = Replay(root, *answers)
    Patcher(str(root), run=run).scan([source])
    assert run.answers == []


def test_scan_refuses_a_source_line_that_is_an_option(root: Path) -> None:
    source = Source("bad", (), "--allow-untrusted\n")
    with pytest.raises(PackageError, match="patch source 'bad': invalid line '--allow-untrusted'"):
        Patcher(str(root), run=Replay(root)).scan([source])


def test_scan_with_an_unreachable_repository_fails_with_apks_warning(root: Path) -> None:
    answer = _done(_out("update_unreachable.stdout"), 1, _out("update_unreachable.stderr"))
    run = Replay(root, (["update"], answer))
    with pytest.raises(PackageError) as caught:
        Patcher(str(root), run=run).scan()
    assert str(caught.value) == (
        "apk update failed: WARNING: updating and opening "
        "https://mirror.invalid/alpine/v3.19/main: DNS lookup error (exit 1)"
    )


def test_scan_of_the_real_root_passes_no_root_option() -> None:
    seen: list[list[str]] = []

    def run(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        seen.append(argv)
        return _done()

    Patcher("/", run=run).scan()
    assert seen == [
        ["apk", "update"],
        ["apk", "list", "--installed"],
        ["apk", "list", "--upgradable"],
    ]


def _update(name: str, version: str) -> Package:
    return Package(name=name, arch="x86_64", version=version)


def test_install_upgrades_exactly_the_named_packages(root: Path) -> None:
    run = Replay(
        root,
        (["upgrade", "--simulate", "busybox", "libssl3"], _done(_out("upgrade_simulate.stdout"))),
        (["list", "--installed"], _done(_out("list_installed.stdout"))),
        (["upgrade", "busybox", "libssl3"], _done(_out("upgrade.stdout"))),
        (["list", "--installed"], _done(_out("list_installed_after.stdout"))),
    )
    outcome = Patcher(str(root), run=run).install(
        [_update("busybox", "1.36.1-r20"), _update("libssl3", "3.1.4-r6")]
    )
    # libcrypto3 came along as libssl3's dependency; the others stayed.
    assert outcome.installed == [
        _update("busybox", "1.36.1-r20"),
        _update("libcrypto3", "3.1.4-r6"),
        _update("libssl3", "3.1.4-r6"),
    ]
    assert outcome.failed == {}
    assert not outcome.reboot_required
    assert run.answers == []


def test_install_of_a_kernel_asks_for_a_reboot(root: Path) -> None:
    simulated = "(1/1) Upgrading linux-virt (6.6.14-r0 -> 6.6.31-r0)\nOK: 110 MiB in 17 packages\n"
    after = _out("list_installed.stdout").replace("linux-virt-6.6.14-r0", "linux-virt-6.6.31-r0")
    run = Replay(
        root,
        (["upgrade", "--simulate", "linux-virt"], _done(simulated)),
        (["list", "--installed"], _done(_out("list_installed.stdout"))),
        (["upgrade", "linux-virt"], _done(simulated)),
        (["list", "--installed"], _done(after)),
    )
    outcome = Patcher(str(root), run=run).install([_update("linux-virt", "6.6.31-r0")])
    assert outcome.installed == [_update("linux-virt", "6.6.31-r0")]
    assert outcome.reboot_required


def test_install_fails_whole_when_a_blocked_package_is_needed(root: Path) -> None:
    run = Replay(
        root,
        (["upgrade", "--simulate", "busybox", "libssl3"], _done(_out("upgrade_simulate.stdout"))),
        (["upgrade", "--simulate", "busybox"], _done(_out("upgrade_simulate_busybox.stdout"))),
        (["upgrade", "--simulate", "libssl3"], _done(_out("upgrade_simulate_libssl3.stdout"))),
    )
    with pytest.raises(PackageError) as caught:
        Patcher(str(root), run=run).install(
            [_update("busybox", "1.36.1-r20"), _update("libssl3", "3.1.4-r6")],
            blocked=["libcrypto3"],
        )
    assert str(caught.value) == (
        "libcrypto3 is rejected (RejectedPatchesAction BLOCK) and libssl3 needs it"
    )
    # Nothing but simulations ran.
    assert all("--simulate" in call for call in run.calls)
    assert run.answers == []


def test_install_skips_a_package_the_repository_no_longer_offers_at_that_version(
    root: Path,
) -> None:
    run = Replay(
        root,
        (["upgrade", "--simulate", "busybox", "libssl3"], _done(_out("upgrade_simulate.stdout"))),
        (["upgrade", "--simulate", "libssl3"], _done(_out("upgrade_simulate_libssl3.stdout"))),
        (["list", "--installed"], _done(_out("list_installed.stdout"))),
        (["upgrade", "libssl3"], _done(_out("upgrade_simulate_libssl3.stdout"))),
        (["list", "--installed"], _done(_out("list_installed_after.stdout"))),
    )
    outcome = Patcher(str(root), run=run).install(
        [_update("busybox", "1.36.1-r18"), _update("libssl3", "3.1.4-r6")]
    )
    assert outcome.failed == {
        "busybox.x86_64": "apk would install busybox 1.36.1-r20, not the approved 1.36.1-r18"
    }
    assert run.answers == []


def test_install_of_nothing_upgradable_runs_no_upgrade(root: Path) -> None:
    run = Replay(root, (["upgrade", "--simulate", "zlib"], _done("OK: 10 MiB in 17 packages\n")))
    outcome = Patcher(str(root), run=run).install([_update("zlib", "1.3.1-r0")])
    assert outcome.installed == []
    assert outcome.failed == {
        "zlib.x86_64": "apk plans no change to zlib (not upgradable to 1.3.1-r0)"
    }


def test_install_while_another_apk_holds_the_lock_fails_at_once(root: Path) -> None:
    run = Replay(root, (["upgrade", "--simulate", "busybox"], _done("", 99, _out("lock.stderr"))))
    with pytest.raises(PackageError) as caught:
        Patcher(str(root), run=run).install([_update("busybox", "1.36.1-r20")])
    assert str(caught.value) == (
        "apk upgrade --simulate busybox failed: ERROR: Unable to lock database: "
        "Resource temporarily unavailable (exit 99)"
    )


def test_install_reports_apks_unsatisfiable_dependencies_on_one_line(root: Path) -> None:
    answer = _done("", 1, _out("upgrade_unsatisfiable.stderr"))
    run = Replay(root, (["upgrade", "--simulate", "libssl3"], answer))
    with pytest.raises(PackageError) as caught:
        Patcher(str(root), run=run).install([_update("libssl3", "3.1.4-r6")])
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "apk upgrade --simulate libssl3 failed: ERROR: unable to select packages: "
        "so:libcrypto.so.3 (no such package): required by: libssl3-3.1.4-r6[so:libcrypto.so.3] "
        "(exit 1)"
    )


def test_install_that_fails_midway_is_not_reported_as_success(root: Path) -> None:
    stderr = "ERROR: busybox-1.36.1-r20: failed to rename usr/bin/.apk.1f2e: No space left\n"
    run = Replay(
        root,
        (["upgrade", "--simulate", "busybox"], _done(_out("upgrade_simulate_busybox.stdout"))),
        (["list", "--installed"], _done(_out("list_installed.stdout"))),
        (["upgrade", "busybox"], _done("1 error; 10 MiB in 17 packages\n", 1, stderr)),
    )
    with pytest.raises(PackageError, match="No space left"):
        Patcher(str(root), run=run).install([_update("busybox", "1.36.1-r20")])


@pytest.mark.parametrize(
    ("name", "version", "said"),
    [
        ("--allow-untrusted", "1.0-r0", "invalid apk package name '--allow-untrusted'"),
        ("busybox", "1.0 r0", "invalid apk package version '1.0 r0'"),
        ("busybox", "-r0", "invalid apk package version '-r0'"),
    ],
)
def test_install_refuses_a_bad_name_or_version(
    root: Path, name: str, version: str, said: str
) -> None:
    with pytest.raises(PackageError, match=said):
        Patcher(str(root), run=Replay(root)).install([_update(name, version)])


def test_a_hung_apk_is_a_package_error(root: Path) -> None:
    run = Replay(root, (["update"], ToolTimeout("apk did not finish within 3600 s")))
    with pytest.raises(PackageError, match="apk did not finish within 3600 s"):
        Patcher(str(root), run=run).scan()


def test_a_missing_apk_is_a_package_error(root: Path) -> None:
    run = Replay(root, (["update"], FileNotFoundError(2, "No such file or directory")))
    with pytest.raises(PackageError, match="cannot run apk: No such file or directory"):
        Patcher(str(root), run=run).scan()


def test_a_relative_root_is_refused() -> None:
    with pytest.raises(PackageError, match="an absolute path"):
        Patcher("alpine")
