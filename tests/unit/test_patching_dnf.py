"""dnf's output as agent/patching/dnf_output.py reads it: recorded from the real dnf 4.14 and rpm
4.18 against the repository tests/integration/rpmrepo.py builds (TZ=UTC), and the
provider's paths replayed through its ``run`` seam (yum is the same code run as ``yum``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from agent.patching import dnf, dnf_output, rpm_db
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.tools import Completed

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/dnf"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_rpm_query_gives_name_arch_version_with_epoch_and_install_time() -> None:
    installed = rpm_db.parse_installed(_read("rpm-qa.txt"))
    assert [(p.name, p.arch, p.version) for p in installed] == [
        ("corral-dep", "noarch", "1.0-1"),
        ("corral-fix", "noarch", "1:1.0-1"),
        ("corral-plain", "noarch", "1.0-1"),
        ("corral-sec", "noarch", "1.0-1"),
    ]
    assert all(p.installed_time and p.installed_time > 1.7e9 for p in installed)
    record = rpm_db.FS.join(["gpg-pubkey", "(none)", "1-2", "1"]) + rpm_db.RS
    assert rpm_db.parse_installed(record + "garbage" + rpm_db.RS) == []


def test_repoquery_gives_newest_candidates_with_repository() -> None:
    updates = dnf_output.parse_upgrades(_read("repoquery-upgrades.txt") + "\nnot a record\n")
    assert [(u.key, u.version, u.repository) for u in updates] == [
        ("corral-dep.noarch", "2.0-1", "corral"),
        ("corral-fix.noarch", "1:1.1-1", "corral"),
        ("corral-plain.noarch", "1.5-1", "corral"),
        ("corral-sec.noarch", "2.0-1", "corral"),
    ]


def test_updateinfo_list_maps_advisories_to_nevras() -> None:
    assert dnf_output.parse_updateinfo_list(_read("updateinfo-list-updates.txt")) == [
        ("CORRAL-2024:0002", "corral-fix", "noarch", "1:1.1-1"),
        ("CORRAL-2024:0001", "corral-sec", "noarch", "2.0-1"),
    ]
    assert dnf_output.parse_updateinfo_list(_read("updateinfo-list-installed.txt")) == [
        ("CORRAL-2023:0100", "corral-plain", "noarch", "1.0-1"),
    ]
    verbose = "  X-1 bugfix  a-1.0-1.x86_64 2024-01-01 00:00:00\ni X-2 bugfix b-0-2.noarch\n"
    assert dnf_output.parse_updateinfo_list(verbose + "Last metadata expiration check: 0:01\n") == [
        ("X-1", "a", "x86_64", "1.0-1"),
        ("X-2", "b", "noarch", "0-2"),
    ]


def test_updateinfo_info_gives_type_severity_date_title_and_cves() -> None:
    info = dnf_output.parse_updateinfo_info(_read("updateinfo-info.txt"))
    assert sorted(info) == ["CORRAL-2023:0100", "CORRAL-2024:0001", "CORRAL-2024:0002"]
    security = info["CORRAL-2024:0001"]
    assert security == dnf_output.Advisory(
        id="CORRAL-2024:0001",
        type="security",
        severity="Important",
        # dnf shows the <updated> date (2024-03-07 12:00:00 UTC) over <issued> (03-05)
        issued=1709812800.0,
        title="Important: corral-sec security update",
        cves=("CVE-2024-1234", "CVE-2024-5678"),
    )
    assert (info["CORRAL-2024:0002"].type, info["CORRAL-2024:0002"].severity) == ("bugfix", "")
    assert info["CORRAL-2023:0100"].severity == "Low"


def test_an_advisory_description_with_colons_and_no_date_still_parses() -> None:
    text = (
        "=====\n  Moderate: x update\n=====\n  Update ID: X-1\n       Type: security\n"
        "    Updated: not a date\nDescription: Security Fix(es):\n           : * a: b\n"
        "   Severity: None\n"
    )
    (advisory,) = dnf_output.parse_updateinfo_info(text).values()
    assert (advisory.title, advisory.issued, advisory.severity) == ("Moderate: x update", None, "")


def test_the_most_urgent_advisory_gives_an_update_its_metadata() -> None:
    info = dnf_output.parse_updateinfo_info(_read("updateinfo-info.txt"))
    package = Package(name="corral-sec", arch="noarch", version="2.0-1")
    both = [info["CORRAL-2024:0002"], info["CORRAL-2024:0001"]]
    merged = dnf_output.with_advisories(package, both)
    assert (merged.classification, merged.severity, merged.security) == (
        "Security",
        "Important",
        True,
    )
    assert merged.advisories == ("CORRAL-2024:0001", "CORRAL-2024:0002")
    assert merged.release_time == 1709812800.0
    bugfix = dnf_output.with_advisories(package, [info["CORRAL-2024:0002"]])
    assert (bugfix.classification, bugfix.security) == ("Bugfix", False)
    assert dnf_output.with_advisories(package, []) == package
    enhancement = dnf_output.with_advisories(package, [info["CORRAL-2023:0100"]])
    assert (enhancement.classification, enhancement.severity) == ("Enhancement", "Low")


@pytest.mark.parametrize(
    ("nevra", "expected"),
    [
        ("corral-fix-1:1.1-1.noarch", ("corral-fix", "noarch", "1:1.1-1")),
        (
            "kernel-core-5.14.0-362.8.1.el9_3.x86_64",
            ("kernel-core", "x86_64", "5.14.0-362.8.1.el9_3"),
        ),
        ("a-0:1-2.noarch", ("a", "noarch", "1-2")),
        ("nodots", None),
        ("name-1.noarch", None),
    ],
)
def test_split_nevra(nevra: str, expected: tuple[str, str, str] | None) -> None:
    assert dnf_output.split_nevra(nevra) == expected


@pytest.mark.parametrize(
    ("fixture", "said"),
    [
        ("install-locked.stderr", r"^RPMDB already locked by \d+ \(exit 200\)$"),
        (
            "makecache-unreachable.stderr",
            r"^Failed to download metadata for repo 'gone': .*All mirrors were tried \(exit 1\)$",
        ),
        ("install-gpg.stderr", r"do not have any GPG public keys installed.*Problem repository"),
        ("install-blocked.stderr", r"requires corral-lib >= 1.0.*filtered out by exclude"),
    ],
)
def test_dnf_errors_are_one_line_in_dnfs_words(fixture: str, said: str) -> None:
    code = 200 if "locked" in fixture else 1
    message = dnf_output.dnf_error(Completed(("dnf",), code, "", _read(fixture)))
    assert "\n" not in message and "release version" not in message
    assert re.search(said, message), message


def test_a_blocked_dependency_names_the_package_and_what_needs_it() -> None:
    message = dnf_output.dnf_error(Completed(("dnf",), 1, "", _read("install-blocked.stderr")))
    reason = dnf_output.blocked_reason(message, ["corral-lib"])
    assert reason is not None
    assert reason.startswith(
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-dep needs it (dnf: "
    )
    assert dnf_output.blocked_reason(message, ["corral-other"]) is None


def test_reposdir_and_sources() -> None:
    assert dnf.repo_dirs("") == ["/etc/yum.repos.d", "/etc/yum/repos.d", "/etc/distro.repos.d"]
    assert dnf.repo_dirs("[main]\nreposdir=/a, /b\n") == ["/a", "/b"]
    assert dnf.repo_dirs("not ini [") == list(dnf.repo_dirs(""))
    with pytest.raises(PackageError, match=r"source 'x' is not a \.repo file: File contains no"):
        dnf.check_source(Source("x", (), "baseurl=file:///r\n"))
    with pytest.raises(PackageError, match=r"source 'z' is not a \.repo file: no \[repository\]"):
        dnf.check_source(Source("z", (), "# nothing\n"))
    with pytest.raises(PackageError, match=r"source 'y' is not a \.repo file"):
        dnf.check_source(Source("y", (), "[a]\n[a]\n"))


Reply = Callable[[list[str]], Completed]


class Recorder:
    """A ``run`` that records argv and answers from ``reply``."""

    def __init__(self, reply: Reply) -> None:
        self.calls: list[list[str]] = []
        self.reply = reply

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        assert env["TZ"] == "UTC"
        self.calls.append(argv)
        return self.reply(argv)


def _recorded(argv: list[str]) -> Completed:
    """dnf/yum/rpm answering as the recorded root does."""
    if argv[0] == "rpm":
        return Completed(tuple(argv), 0, _read("rpm-qa.txt"), "")
    if "repoquery" in argv:
        return Completed(tuple(argv), 0, _read("repoquery-upgrades.txt"), "")
    if "list" in argv:
        which = "updates" if "--updates" in argv else "installed"
        return Completed(tuple(argv), 0, _read(f"updateinfo-list-{which}.txt"), "")
    if "info" in argv:
        return Completed(tuple(argv), 0, _read("updateinfo-info.txt"), "")
    if "needs-restarting" in argv:
        return Completed(tuple(argv), 1, "", _read("needs-restarting-missing.stderr"))
    return Completed(tuple(argv), 0, "", "")


def test_yum_scans_with_the_same_commands_run_as_yum(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/yum.conf").write_text("[main]\nreposdir=/srv/repos\n")
    run = Recorder(_recorded)
    scan = dnf.YumPatcher(str(tmp_path), run=run).scan(
        [Source("extra", (), "[extra]\nbaseurl=file:///srv/extra\n")]
    )
    assert {u.key: u.classification for u in scan.updates} == {
        "corral-dep.noarch": "",
        "corral-fix.noarch": "Bugfix",
        "corral-plain.noarch": "",
        "corral-sec.noarch": "Security",
    }
    plain = next(p for p in scan.installed if p.name == "corral-plain")
    assert plain.advisories == ("CORRAL-2023:0100",)
    managers = [c for c in run.calls if c[0] != "rpm"]
    assert managers and all(c[0] == "yum" for c in managers)
    assert all(f"--installroot={tmp_path}" in c for c in managers)
    reposdir = next(a for a in managers[0] if a.startswith("--setopt=reposdir="))
    assert reposdir.startswith(f"--setopt=reposdir={tmp_path}/srv/repos,/")
    assert not Path(reposdir.split(",")[-1]).exists()  # the sources' directory is gone
    assert "--refresh" in managers[0] and all("-C" in c for c in managers[1:])
    assert not scan.reboot_required  # another root: never asked


def test_on_slash_a_newer_kernel_than_the_running_one_needs_a_reboot() -> None:
    import os

    running = os.uname().release
    record = rpm_db.FS.join(["kernel-core", "x86_64", "999.0-1", "2000000000"]) + rpm_db.RS
    old = rpm_db.FS.join(["kernel-core", "x86_64", "1.0-1", "1000000000"]) + rpm_db.RS

    def reply(argv: list[str]) -> Completed:
        if argv[0] == "rpm":
            return Completed(tuple(argv), 0, record + old, "")
        return _recorded(argv)

    scan = dnf.Patcher("/", run=Recorder(reply)).scan()
    assert scan.reboot_required is (running != "999.0-1.x86_64")

    def plugin(argv: list[str]) -> Completed:
        if "needs-restarting" in argv:
            return Completed(tuple(argv), 0, "No core libraries or services have been updated", "")
        return reply(argv)

    assert dnf.Patcher("/", run=Recorder(plugin)).scan().reboot_required is False

    def pending(argv: list[str]) -> Completed:
        if "needs-restarting" in argv:
            said = "Core libraries or services have been updated since boot-up:\n  * kernel\n\n"
            return Completed(
                tuple(argv), 1, said + "Reboot is required to fully utilize these updates.\n", ""
            )
        return reply(argv)

    assert dnf.Patcher("/", run=Recorder(pending)).scan().reboot_required is True


def test_install_turns_dnfs_refusal_into_the_blocked_reason(tmp_path: Path) -> None:
    def reply(argv: list[str]) -> Completed:
        if "install" in argv:
            assert "--exclude=corral-lib" in argv
            assert argv[-2:] == ["--", "corral-dep-2.0-1.noarch"]
            return Completed(tuple(argv), 1, "", _read("install-blocked.stderr"))
        return _recorded(argv)

    patcher = dnf.Patcher(str(tmp_path), run=Recorder(reply))
    dep = Package(name="corral-dep", arch="noarch", version="2.0-1")
    with pytest.raises(PackageError, match=r"^corral-lib is rejected .* corral-dep needs it"):
        patcher.install([dep], blocked=["corral-lib"])


def test_install_reports_a_package_dnf_did_not_move(tmp_path: Path) -> None:
    patcher = dnf.Patcher(str(tmp_path), run=Recorder(_recorded))
    fix = Package(name="corral-fix", arch="noarch", version="1:1.1-1")
    outcome = patcher.install([fix])
    assert outcome.installed == []
    assert outcome.failed == {"corral-fix.noarch": "dnf left corral-fix at 1:1.0-1, not 1:1.1-1"}


@pytest.mark.parametrize(
    ("package", "blocked", "said"),
    [
        (Package(name="-rf", arch="noarch", version="1-1"), (), "invalid package name '-rf'"),
        (Package(name="a", arch="noarch", version="1.0"), (), "invalid package version '1.0'"),
        (Package(name="a", arch="no*", version="1-1"), (), "invalid architecture 'no\\*'"),
        (Package(name="a", arch="noarch", version="1-1"), ("b;c",), "invalid rejected patch 'b;c'"),
        (
            Package(name="a", arch="noarch", version="1-1"),
            ("a",),
            r"^a is rejected \(RejectedPatchesAction BLOCK\)$",
        ),
    ],
)
def test_install_refuses_bad_input_before_running_dnf(
    package: Package, blocked: tuple[str, ...], said: str
) -> None:
    run = Recorder(_recorded)
    with pytest.raises(PackageError, match=said):
        dnf.Patcher("/", run=run).install([package], blocked=blocked)
    assert run.calls == []


def test_failures_to_run_are_package_errors() -> None:
    def missing(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(PackageError, match=r"^cannot run dnf: No such file or directory$"):
        dnf.Patcher("/", run=missing).scan()
    with pytest.raises(PackageError, match="invalid package root 'relative'"):
        dnf.Patcher("relative")
