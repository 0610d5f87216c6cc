"""zypper's output as agent/patching/zypper.py reads it: XML recorded from the real zypper
1.14 (``--xmlout``) against the repository tests/integration/zypprepo.py builds, and the
provider's failure paths replayed through its ``run`` seam."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching import rpm_db, zypper
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.tools import Completed

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/zypper"


def _read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_list_updates_gives_each_candidate_with_its_repository() -> None:
    updates = zypper.parse_updates(_read("list-updates.xml"))
    assert [(u.name, u.arch, u.version, u.repository) for u in updates] == [
        ("corral-app", "noarch", "2.0-1", "corral"),
        ("corral-fix", "noarch", "2.0-1", "corral"),
        ("corral-lib", "noarch", "2.0-1", "corral"),
        ("corral-plain", "noarch", "2.0-1", "corral"),
        ("corral-sec", "noarch", "2.0-1", "corral"),
    ]
    assert updates[0].classification == ""


def test_list_patches_gives_category_severity_date_and_cves() -> None:
    patches = {p.name: p for p in zypper.parse_patches(_read("list-patches.xml"))}
    assert sorted(patches) == ["CORRAL-FU-2024:0003", "CORRAL-RU-2024:0002", "CORRAL-SU-2024:0001"]
    security = patches["CORRAL-SU-2024:0001"]
    assert (security.category, security.severity, security.status) == (
        "security",
        "important",
        "needed",
    )
    assert security.issued == 1709251200.0
    assert security.cves == ("CVE-2024-0001",)
    assert security.summary == "Security update for corral-sec"
    assert patches["CORRAL-FU-2024:0003"].status == "optional"
    assert patches["CORRAL-RU-2024:0002"].cves == ()


def test_patch_info_names_the_packages_of_each_patch() -> None:
    assert zypper.parse_patch_packages(_read("info-patch.txt")) == {
        "CORRAL-SU-2024:0001": ("corral-sec",),
        "CORRAL-RU-2024:0002": ("corral-fix",),
        "CORRAL-FU-2024:0003": ("corral-app", "corral-lib"),
    }


def test_scan_metadata_comes_from_the_patches() -> None:
    patches = zypper.parse_patches(_read("list-patches.xml"))
    names = zypper.parse_patch_packages(_read("info-patch.txt"))
    patches = [zypper.Patch(**{**vars(p), "packages": names[p.name]}) for p in patches]
    got = {
        u.name: u
        for u in (
            zypper.with_patches(u, patches) for u in zypper.parse_updates(_read("list-updates.xml"))
        )
    }
    sec = got["corral-sec"]
    assert (sec.classification, sec.severity, sec.security) == ("Security", "Important", True)
    assert (sec.release_time, sec.advisories, sec.cves) == (
        1709251200.0,
        ("CORRAL-SU-2024:0001",),
        ("CVE-2024-0001",),
    )
    assert (got["corral-fix"].classification, got["corral-fix"].severity) == (
        "Recommended",
        "Moderate",
    )
    assert got["corral-lib"].classification == "Feature"
    assert got["corral-lib"].advisories == ("CORRAL-FU-2024:0003",)
    plain = got["corral-plain"]
    assert (plain.classification, plain.severity, plain.release_time) == ("", "", None)


def test_the_most_urgent_patch_wins_and_all_are_advisories() -> None:
    update = Package(name="libfoo1", arch="x86_64", version="2-1")
    patches = [
        zypper.Patch("P-opt", "optional", "low", 1.0, "", ("CVE-1",), "needed", ("libfoo1",)),
        zypper.Patch(
            "P-sec", "security", "critical", 2.0, "t", ("CVE-2",), "needed", ("libfoo1.x86_64",)
        ),
        zypper.Patch("P-other", "security", "critical", 3.0, "", (), "needed", ("libfoo1.i586",)),
        zypper.Patch("P-doc", "document", "unspecified", 4.0, "", (), "needed", ("libfoo1",)),
    ]
    got = zypper.with_patches(update, patches)
    assert (got.classification, got.severity, got.release_time) == ("Security", "Critical", 2.0)
    assert got.advisories == ("P-sec", "P-opt", "P-doc")
    assert got.cves == ("CVE-2", "CVE-1")
    doc = zypper.with_patches(update, patches[3:])
    assert (doc.classification, doc.severity) == ("Document", "")


def test_rpm_query_gives_installed_packages_with_epoch_and_install_time() -> None:
    rs, fs = rpm_db.RS, rpm_db.FS
    extra = f"gpg-pubkey{fs}(none){fs}abc-def{fs}1700000000{rs}"
    extra += f"\nbash{fs}x86_64{fs}1:5.2-3.1{fs}1700000001{rs}"
    installed = rpm_db.parse_installed(_read("rpm-qa.txt") + extra)
    assert [(p.name, p.version) for p in installed] == [
        ("bash", "1:5.2-3.1"),
        ("corral-app", "1.0-1"),
        ("corral-fix", "1.0-1"),
        ("corral-lib", "1.0-1"),
        ("corral-plain", "1.0-1"),
        ("corral-sec", "1.0-1"),
    ]
    assert installed[0].installed_time == 1700000001.0
    assert installed[0].key == "bash.x86_64"


def test_errors_are_zyppers_own_messages_on_one_line() -> None:
    locked = Completed(("zypper",), 7, _read("locked.xml"), "")
    assert zypper.zypper_error(locked) == (
        "System management is locked by the application with pid 4242 (sleep). "
        "Close this application before trying again. (exit 7)"
    )
    down = zypper.zypper_error(Completed(("zypper",), 4, _read("refresh-unreachable.xml"), ""))
    assert down.startswith("Problem retrieving files from 'corral'. Specified path '/srv/repo'")
    assert down.endswith("Could not refresh the repositories because of errors. (exit 4)")
    assert "\n" not in down
    assert zypper.zypper_error(Completed(("zypper",), 1, "", "zypper: boom\n")) == (
        "zypper: boom (exit 1)"
    )


def test_a_blocked_dependency_is_named_with_what_needs_it() -> None:
    out = _read("install-blocked.xml")
    assert zypper.blocked_reason(out, ["corral-lib"]) == (
        "corral-lib is rejected (RejectedPatchesAction BLOCK) and corral-app needs it "
        "(zypper: corral-app-2.0-1.noarch requires corral-lib >= 2.0, but this requirement "
        "cannot be provided)"
    )
    assert zypper.blocked_reason(out, ["corral-li"]) is None
    assert zypper.blocked_reason("not xml", ["corral-lib"]) is None


def test_output_without_xml_is_an_error() -> None:
    with pytest.raises(PackageError, match="zypper list-updates: no XML"):
        zypper.parse_updates("Segmentation fault\n")
    with pytest.raises(PackageError, match="zypper list-patches: no XML"):
        zypper.parse_patches("<stream><oops")


class Replay:
    """Answers each zypper subcommand with recorded output; records the argv."""

    def __init__(self, answers: Mapping[str, Completed]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append(argv)
        assert env["ZYPP_LOCK_TIMEOUT"] == "0"
        for word in argv:
            if word in self.answers:
                return self.answers[word]
        return Completed(tuple(argv), 0, "<stream></stream>", "")


def test_a_held_lock_fails_the_scan_at_once() -> None:
    run = Replay({"refresh": Completed(("zypper",), 7, _read("locked.xml"), "")})
    with pytest.raises(PackageError, match=r"^zypper refresh failed: System management is lock"):
        zypper.Patcher("/srv/root", run=run).scan()
    assert len(run.calls) == 1
    assert run.calls[0][:3] == ["zypper", "--root", "/srv/root"]


def test_a_version_zypper_cannot_find_fails_whole_and_locks_are_removed() -> None:
    run = Replay(
        {
            "install": Completed(("zypper",), 104, _read("install-no-provider.xml"), ""),
            "-qa": Completed(("rpm",), 0, _read("rpm-qa.txt"), ""),
        }
    )
    patcher = zypper.Patcher("/srv/root", run=run)
    wanted = Package(name="corral-sec", arch="noarch", version="9.0-1")
    with pytest.raises(PackageError, match=r"No provider of 'corral-sec.noarch=9.0-1' found"):
        patcher.install([wanted], blocked=["corral-lib"])
    commands = [c[c.index("--xmlout") + 1] if "--xmlout" in c else c[0] for c in run.calls]
    assert commands == ["rpm", "locks", "addlock", "install", "removelock"]
    assert run.calls[3][-1] == "corral-sec.noarch=9.0-1"
    assert run.calls[4][-1] == "corral-lib"


@pytest.mark.parametrize(
    ("package", "blocked", "message"),
    [
        (Package(name="-rf", version="1-1"), (), "invalid package name '-rf'"),
        (Package(name="ok", version="1 2"), (), "invalid package version '1 2'"),
        (Package(name="ok", version="1-1"), ("--all",), "invalid package name '--all'"),
    ],
)
def test_bad_names_and_versions_are_refused_before_zypper_runs(
    package: Package, blocked: tuple[str, ...], message: str
) -> None:
    run = Replay({})
    with pytest.raises(PackageError, match=message):
        zypper.Patcher("/srv/root", run=run).install([package], blocked=blocked)
    assert run.calls == []


def test_a_relative_root_is_refused() -> None:
    with pytest.raises(PackageError, match="invalid package root 'srv'"):
        zypper.Patcher("srv")


def test_a_missing_zypper_is_a_package_error() -> None:
    def missing(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(PackageError, match="cannot run zypper: No such file or directory"):
        zypper.Patcher(run=missing).scan()


def test_baseline_sources_become_plus_repos() -> None:
    source = Source("extra", ("Suse15.5",), "[extra]\nname=Extra\nbaseurl = file:///srv/x\n")
    run = Replay({})
    zypper.Patcher("/", run=run).scan([source])
    refresh = run.calls[0]
    assert refresh[:2] == ["zypper", "--non-interactive"]
    assert refresh[refresh.index("--plus-repo") + 1] == "file:///srv/x"
