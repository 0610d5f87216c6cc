"""The apt Patcher's reading of apt's and dpkg's output, and its decisions, on output recorded
from the real tools (tests/fixtures/patching/apt: a Debian 12 host's ``apt-get -s
dist-upgrade`` and ``apt-get indextargets``, apt-get update's failures); apt itself runs in
tests/integration/test_patching_apt.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.patching.apt import Patcher
from agent.patching.apt_output import (
    Inst,
    Published,
    apt_failure,
    parse_installed,
    parse_packages,
    parse_removals,
    parse_simulation,
    parse_targets,
)
from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.tools import Completed

FIXTURES = Path(__file__).parent.parent / "fixtures" / "patching" / "apt"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_the_simulation_gives_each_candidate_and_the_suites_publishing_it() -> None:
    found = {i.name: i for i in parse_simulation(fixture("dist-upgrade-bookworm.txt"))}
    assert len(found) == 127  # every Inst line; Conf lines and the summary are not packages
    assert found["libssl3"] == Inst(
        "libssl3",
        "amd64",
        "3.0.19-1~deb12u2",
        "3.0.22-1~deb12u2",
        (Published("oldstable-security", label="Debian-Security"),),
    )
    assert found["libssl3"].published[0].security
    both = found["libgcrypt20"].published
    assert [p.suite for p in both] == ["oldstable", "oldstable-security"]
    assert [p.security for p in both] == [False, True]
    assert found["bash"].published == (Published("oldstable", label="Debian"),)
    # apt's dependency notes after the closing parenthesis are not part of the version
    assert found["libpam-modules-bin"].version == "1.5.2-6+deb12u3"
    assert found["libpam-modules-bin"].arch == "amd64"
    assert found["login"].old == "1:4.13+dfsg1-1+deb12u1"
    assert found["init-system-helpers"].arch == "all"


def test_simulation_lines_of_other_shapes() -> None:
    text = (
        "NOTE: This is only a simulation!\n"
        "Remv oldpkg [1.0]\n"
        "Inst libfoo:i386 [1.0-1] (1.0-2 Ubuntu:22.04/jammy-security, Ubuntu:22.04/jammy-updates"
        " [i386])\n"
        "Inst newdep (2.0 Debian Backports:12-backports/stable-backports [amd64])\n"
        "Inst local [0.9] (1.0 localhost [all])\n"
        "Inst unlabelled [1] (2 5.0/stable [all])\n"
        "Conf libfoo:i386 (1.0-2 Ubuntu:22.04/jammy-security [i386])\n"
    )
    found = parse_simulation(text)
    assert [(i.name, i.arch, i.old, i.version) for i in found] == [
        ("libfoo", "i386", "1.0-1", "1.0-2"),
        ("newdep", "amd64", "", "2.0"),
        ("local", "all", "0.9", "1.0"),
        ("unlabelled", "all", "1", "2"),
    ]
    assert found[0].published == (
        Published("jammy-security", label="Ubuntu"),
        Published("jammy-updates", label="Ubuntu"),
    )
    assert found[1].published == (Published("stable-backports", label="Debian Backports"),)
    assert found[2].published == (Published("localhost"),)
    assert found[3].published == (Published("stable"),)


def test_the_packages_a_simulation_would_remove() -> None:
    text = (
        "Remv corral-old [1.0-1]\n"
        "Remv libbar:i386 [2:1.1-1]\n"
        "Purg gone [3]\n"
        "Inst corral-new [1.0-1] (2.0-1 Corral:1/stable [all])\n"
        "Conf corral-new (2.0-1 Corral:1/stable [all])\n"
    )
    assert parse_removals(text) == ["corral-old 1.0-1", "libbar:i386 2:1.1-1", "gone 3"]
    assert parse_removals(fixture("dist-upgrade-bookworm.txt")) == []


@pytest.mark.parametrize(
    ("published", "security"),
    [
        (Published("bookworm-security", "bookworm-security", "Debian", "Debian-Security"), True),
        (Published("oldstable-security", "bookworm-security", "Debian", "Debian-Security"), True),
        (Published("jammy-security", "jammy", "Ubuntu", "Ubuntu"), True),
        (Published("stable", "stable", "Debian", "Debian-Security"), True),  # by its label
        (Published("stable-updates", "bookworm-updates", "Debian", "Debian"), False),
        (Published("jammy-updates", "jammy", "Ubuntu", "Ubuntu"), False),
        (Published("security", "security", "Corral", "Corral"), False),
    ],
)
def test_what_makes_a_suite_a_security_one(published: Published, security: bool) -> None:
    assert published.security is security


def test_installed_packages_and_the_half_installed_ones() -> None:
    text = (
        "bash\tamd64\t5.2.15-2+b8\tinstalled\tshells\trequired\n"
        "libc6\tamd64\t2.36-9+deb12u4\ttriggers-pending\tlibs\toptional\n"
        "gone\tamd64\t1.0\tconfig-files\tadmin\toptional\n"
        "broken\tall\t2.0\thalf-configured\tutils\textra\n"
        "odd line without tabs\n"
        "\n"
    )
    installed, notes = parse_installed(text)
    assert installed == [
        Package("bash", "amd64", "5.2.15-2+b8", section="shells", priority="Required"),
        Package("libc6", "amd64", "2.36-9+deb12u4", section="libs", priority="Optional"),
    ]
    assert notes == ["broken 2.0 is half-configured (dpkg --configure -a may finish it)"]


def test_index_targets_name_each_packages_file_and_its_release() -> None:
    targets = parse_targets(fixture("indextargets-bookworm.txt"))
    assert [t[1] for t in targets] == [
        Published("oldstable", "bookworm", "Debian", "Debian"),
        Published("oldstable-updates", "bookworm-updates", "Debian", "Debian"),
        Published("oldstable-security", "bookworm-security", "Debian", "Debian-Security"),
    ]
    assert targets[2][0].endswith("bookworm-security_main_binary-amd64_Packages.lz4")


def test_packages_stanzas_of_the_wanted_packages_only() -> None:
    text = (
        "Package: libssl3\nVersion: 3.0.22-1~deb12u2\nArchitecture: amd64\n"
        "Priority: optional\nSection: libs\nDescription: Secure Sockets Layer\n"
        " Package: not-a-field continuation line\n\n"
        "Package: unwanted\nVersion: 1\nArchitecture: all\nSection: misc\n\n"
        "Package: bare\nVersion: 2\n"
    )
    found = list(parse_packages(text, frozenset({"libssl3", "bare"})))
    assert found == [
        ("libssl3", "amd64", "3.0.22-1~deb12u2", "libs", "optional"),
        ("bare", "", "2", "", ""),
    ]


@pytest.mark.parametrize(
    ("recorded", "said"),
    [
        (
            "install-locked",
            "E: Could not get lock /tmp/aptx/root/var/lib/dpkg/lock-frontend. "
            "It is held by process 16159 (python3)",
        ),
        (
            "update-closed-port",
            "E: Failed to fetch http://127.0.0.1:9/debian/dists/stable/InRelease  Could not "
            "connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)",
        ),
        (  # apt before 2.1.16 (no APT::Update::Error-Mode): only warnings, and exit 0
            "update-closed-port-apt2.0",
            "W: Failed to fetch http://127.0.0.1:9/debian/dists/stable/InRelease  Could not "
            "connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)",
        ),
        (
            "update-nonexistent",
            "E: Failed to fetch file:/nonexistent/dists/stable/main/binary-amd64/Packages  "
            "File not found - /nonexistent/dists/stable/main/binary-amd64/Packages "
            "(2: No such file or directory)",
        ),
        (
            "update-untrusted-key",
            "E: The repository 'file:/tmp/aptx/signed stable InRelease' is not signed. "
            "W: GPG error: file:/tmp/aptx/signed stable InRelease: The following signatures "
            "couldn't be verified because the public key is not available: "
            "NO_PUBKEY 34AE53253CB91000",
        ),
    ],
)
def test_apts_reason_is_its_own_specific_line(recorded: str, said: str) -> None:
    stdout_file = FIXTURES / f"{recorded}.stdout"
    stdout = stdout_file.read_text() if stdout_file.exists() else ""
    assert apt_failure(stdout, fixture(f"{recorded}.stderr")) == said


class Replay:
    """A runner answering each command from a table (the first entry whose words all appear
    in the argv), recording what ran and, for an extra sources dir, what it held."""

    def __init__(self, answers: list[tuple[tuple[str, ...], Completed]]) -> None:
        self.answers = answers
        self.ran: list[list[str]] = []
        self.parts: dict[str, str] = {}

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.ran.append(argv)
        for option in argv:
            if option.startswith("Dir::Etc::sourceparts="):
                parts = Path(option.partition("=")[2])
                for entry in parts.iterdir():
                    target = f" -> {entry.readlink()}" if entry.is_symlink() else ""
                    self.parts[entry.name] = entry.read_text() + target
        for words, answer in self.answers:
            if all(w in argv for w in words):
                return answer
        raise AssertionError(f"unexpected {argv}")


def done(stdout: str = "", stderr: str = "", code: int = 0) -> Completed:
    return Completed((), code, stdout, stderr)


DPKG_OLD = "corral-tool\tall\t1.0-1\tinstalled\tutils\toptional\n"


def test_a_warning_that_an_index_was_not_fetched_fails_the_scan(tmp_path: Path) -> None:
    """apt 2.0 (Ubuntu 20.04) says W: and exits 0 when a repository is unreachable."""
    stderr = fixture("update-closed-port-apt2.0.stderr")
    run = Replay([(("update",), done(stderr=stderr))])
    with pytest.raises(PackageError, match=r"^apt-get update failed: W: Failed to fetch http"):
        Patcher(str(tmp_path), run=run).scan()


def test_other_warnings_become_notes_and_the_scan_reads_the_lists(tmp_path: Path) -> None:
    lists = tmp_path / "Packages"
    lists.write_text(
        "Package: corral-tool\nVersion: 1.1-1\nArchitecture: all\nSection: utils\n"
        "Priority: important\n"
    )
    warning = "W: Target Packages (main/binary-amd64/Packages) is configured multiple times"
    run = Replay(
        [
            (("update",), done(stderr=warning + "\n")),
            (("dpkg-query",), done(DPKG_OLD)),
            (("dist-upgrade",), done("Inst corral-tool [1.0-1] (1.1-1 Corral:1/stable [all])\n")),
            (("indextargets",), done(f"{lists}\tstable\tstable\tCorral\tCorral\n")),
        ]
    )
    scan = Patcher(str(tmp_path), run=run).scan()
    assert scan.notes == [warning]
    assert scan.updates == [
        Package(
            "corral-tool",
            "all",
            "1.1-1",
            repository="stable",
            section="utils",
            priority="Important",
        )
    ]
    assert scan.product == ""  # no os-release in this root


def test_a_package_apt_silently_left_alone_is_reported_failed(tmp_path: Path) -> None:
    run = Replay(
        [
            (("dpkg-query",), done(DPKG_OLD)),
            (("-s", "install"), done("Inst corral-tool [1.0-1] (1.1-1 Corral:1/stable [all])\n")),
            (("install",), done("0 upgraded, 0 newly installed\n")),
        ]
    )
    update = Package("corral-tool", "all", "1.1-1")
    outcome = Patcher(str(tmp_path), run=run).install([update])
    assert outcome.installed == []
    assert outcome.failed == {
        "corral-tool.all": "apt-get install ended with corral-tool unchanged, not 1.1-1"
    }
    install = run.ran[-2]
    assert install[-2:] == ["--", "corral-tool=1.1-1"]
    assert "DPkg::Lock::Timeout=0" in install
    assert "upgrade" not in install and "dist-upgrade" not in install


def test_apt_is_never_asked_to_retry_a_failed_download(tmp_path: Path) -> None:
    scan = Replay([(("update",), done(stderr="E: stop here\n", code=100))])
    with pytest.raises(PackageError):
        Patcher(str(tmp_path), run=scan).scan()
    install = Replay(
        [
            (("dpkg-query",), done(DPKG_OLD)),
            (("-s", "install"), done("Inst corral-tool [1.0-1] (1.1-1 Corral:1/stable [all])\n")),
            (("install",), done()),
        ]
    )
    Patcher(str(tmp_path), run=install).install([Package("corral-tool", "all", "1.1-1")])
    apt_runs = [argv for argv in [*scan.ran, *install.ran] if argv[0] == "apt-get"]
    assert ["update" in a or "install" in a for a in apt_runs] == [True, True, True]
    assert all("Acquire::Retries=0" in argv for argv in apt_runs)


def test_a_half_applied_install_is_an_error_naming_what_changed(tmp_path: Path) -> None:
    failing = "E: Sub-process /usr/bin/dpkg returned an error code (1)\n"
    run = Replay(
        [
            (("-s", "install"), done("Inst corral-tool [1.0-1] (1.1-1 Corral:1/stable [all])\n")),
            (("install",), done(stderr=failing, code=100)),
        ]
    )
    reads = iter([DPKG_OLD, DPKG_OLD.replace("1.0-1", "1.1-1")])  # before, after

    def runner(argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        return done(next(reads)) if argv[0] == "dpkg-query" else run(argv, env, timeout)

    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=runner).install([Package("corral-tool", "all", "1.1-1")])
    assert str(caught.value) == (
        "apt-get install failed: E: Sub-process /usr/bin/dpkg returned an error code (1) "
        "(exit 100); changed before it failed: corral-tool 1.1-1"
    )


def test_a_baselines_sources_are_a_temporary_sources_list_d(tmp_path: Path) -> None:
    own = tmp_path / "etc/apt/sources.list.d"
    own.mkdir(parents=True)
    (own / "node.list").write_text("deb http://node.invalid stable main\n")
    (own / "README").write_text("not a sources file\n")
    run = Replay([(("update",), done(stderr="E: stop here\n", code=100))])
    sources = [
        Source("one", ("Debian12",), "deb http://one.invalid stable main"),
        Source("two", ("Debian12",), "deb http://two.invalid stable main\n"),
    ]
    with pytest.raises(PackageError, match="E: stop here"):
        Patcher(str(tmp_path), run=run).scan(sources)
    assert run.parts == {
        "node.list": f"deb http://node.invalid stable main\n -> {own / 'node.list'}",
        "zz-corral-patch-0.list": "deb http://one.invalid stable main\n",
        "zz-corral-patch-1.list": "deb http://two.invalid stable main\n",
    }
    parts = next(a for a in run.ran[0] if a.startswith("Dir::Etc::sourceparts="))
    assert not Path(parts.partition("=")[2]).exists()  # removed after the call

    deb822 = Source("three", (), "Types: deb\nURIs: http://three.invalid\nSuites: stable\n")
    run = Replay([(("update",), done(stderr="E: stop here\n", code=100))])
    with pytest.raises(PackageError):
        Patcher(str(tmp_path), run=run).scan([sources[0], deb822])
    assert sorted(run.parts) == ["node.list", "zz-corral-patch-0.list", "zz-corral-patch-1.sources"]


def inst(name: str, old: str = "1.0") -> str:
    return (
        f"Inst {name} [{old}] (2.0 Corral:1/stable [all])\n"
        if old
        else (f"Inst {name} (2.0 Corral:1/stable [all])\n")
    )


@pytest.mark.parametrize(
    ("alone", "blocked", "message"),
    [
        (  # each update pulls its own; one needs the blocked library
            {"app": inst("lib") + inst("app"), "tool": inst("tool")},
            ["lib"],
            "lib is rejected (RejectedPatchesAction BLOCK) and app needs it",
        ),
        (
            {"app": inst("lib") + inst("app"), "tool": inst("lib") + inst("tool")},
            ["lib", "other"],
            "lib is rejected (RejectedPatchesAction BLOCK) and app, tool need it",
        ),
        (
            {"app": inst("new", "") + inst("app"), "tool": inst("tool")},
            ["new.all"],
            "new is rejected (RejectedPatchesAction BLOCK) and app needs it",
        ),
        (  # only the two together pull it (alternatives resolved differently)
            {"app": inst("app"), "tool": inst("tool")},
            ["lib"],
            "lib is rejected (RejectedPatchesAction BLOCK) and app, tool together need it",
        ),
        (
            {"app": inst("app"), "tool": inst("tool")},
            ["tool"],
            "tool is rejected (RejectedPatchesAction BLOCK) and the install asked for it",
        ),
    ],
)
def test_a_blocked_package_is_named_with_what_needs_it(
    tmp_path: Path, alone: dict[str, str], blocked: list[str], message: str
) -> None:
    together = inst("lib") + inst("new", "") + inst("app") + inst("tool")
    run = Replay(
        [
            (("dpkg-query",), done("")),
            (("-s", "install", "app=2.0", "tool=2.0"), done(together)),
            (("-s", "install", "app=2.0"), done(alone["app"])),
            (("-s", "install", "tool=2.0"), done(alone["tool"])),
        ]
    )
    updates = [Package("app", "all", "2.0"), Package("tool", "all", "2.0")]
    with pytest.raises(PackageError) as caught:
        Patcher(str(tmp_path), run=run).install(updates, blocked=blocked)
    assert str(caught.value) == f"{message}; nothing was installed"
    assert not any("-s" not in argv and "install" in argv for argv in run.ran)


class Refusing:
    """A runner that must not be called: bad input is refused before any tool runs."""

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        raise AssertionError(f"ran {argv}")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (Package("-oDir=/tmp", "all", "1.0"), "invalid package name '-oDir=/tmp'"),
        (Package("ok-name", "all", "1.0; reboot"), "invalid package version"),
        (Package("ok-name", "all", ""), "invalid package version ''"),
        (Package("ok-name", "amd64 -y", "1.0"), "invalid architecture 'amd64 -y' of ok-name"),
    ],
)
def test_bad_updates_are_refused_before_apt_runs(update: Package, message: str) -> None:
    with pytest.raises(PackageError, match=message):
        Patcher("/", run=Refusing()).install([update])


def test_nothing_to_install_runs_nothing_and_a_root_must_be_absolute() -> None:
    assert Patcher("/", run=Refusing()).install([]).installed == []
    with pytest.raises(PackageError, match="invalid package root"):
        Patcher("relative/root")
