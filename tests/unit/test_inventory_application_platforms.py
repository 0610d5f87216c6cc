"""AWS:Application on macOS (Homebrew) and Windows (installed programs), from output
recorded in the real tools' formats (tests/fixtures/inventory/): what cannot run here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.inventory import registry, schema
from agent.inventory.application import _windows
from agent.inventory.base import CollectContext, CollectError
from agent.tools import Completed

FIXTURES = Path(__file__).parent.parent / "fixtures/inventory"


class Replay:
    """A ``ctx.run`` answering each expected command with recorded output."""

    def __init__(self, answers: dict[str, Completed]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append((argv, dict(env)))
        for needle, answer in self.answers.items():
            if needle in " ".join(argv):
                return answer
        raise AssertionError(f"unexpected command {argv}")


def _done(stdout: str, code: int = 0, stderr: str = "") -> Completed:
    return Completed(("tool",), code, stdout, stderr)


def _brew_root(tmp_path: Path) -> Path:
    brew = tmp_path / "opt/homebrew/bin/brew"
    brew.parent.mkdir(parents=True)
    brew.write_text("#!/bin/bash\n")
    return tmp_path


def test_brew_formulae_and_casks(tmp_path: Path) -> None:
    run = Replay(
        {
            "info --json=v2": _done(
                (FIXTURES / "darwin/brew_info_json_v2_installed.json").read_text()
            )
        }
    )
    ctx = CollectContext(platform="MacOS", run=run, root=_brew_root(tmp_path))
    collect = registry.collector(schema.APPLICATION, "MacOS")
    assert collect is not None
    items = collect(ctx)
    assert items == [
        {
            "Name": "openssl@3",
            "Version": "3.4.0",
            "InstalledTime": "2024-10-30T13:27:07Z",
            "Summary": "Cryptography and SSL/TLS Toolkit",
            "URL": "https://openssl-library.org",
            "Publisher": "homebrew/core",
            "ApplicationType": "Formula",
            "PackageManager": "brew",
        },
        {
            "Name": "python@3.12",
            "Version": "3.12.7_1",  # the linked one of the two installed
            "InstalledTime": "2024-10-30T14:53:20Z",
            "Summary": "Interpreted, interactive, object-oriented programming language",
            "URL": "https://www.python.org/",
            "Publisher": "homebrew/core",
            "ApplicationType": "Formula",
            "PackageManager": "brew",
        },
        {
            "Name": "firefox",
            "Version": "132.0.1",
            "InstalledTime": "2024-11-06T13:33:20Z",
            "Summary": "Web browser",
            "URL": "https://www.mozilla.org/firefox/",
            "Publisher": "homebrew/cask",
            "ApplicationType": "Cask",
            "PackageManager": "brew",
        },
        {
            "Name": "iterm2",
            "Version": "3.5.9",  # what is installed, not the newest
            "InstalledTime": "2024-10-15T13:46:40Z",
            "Summary": "iTerm2",
            "URL": "https://iterm2.com/",
            "Publisher": "homebrew/cask",
            "ApplicationType": "Cask",
            "PackageManager": "brew",
        },
    ]
    assert ctx.warnings == ["brew: formula 'broken-formula' without a version; skipped"]
    argv, env = run.calls[0]
    assert argv[-4:] == ["/opt/homebrew/bin/brew", "info", "--json=v2", "--installed"]
    assert env["HOMEBREW_NO_AUTO_UPDATE"] == "1"


def test_brew_missing_or_failing(tmp_path: Path) -> None:
    ctx = CollectContext(platform="MacOS", run=Replay({}), root=tmp_path)
    collect = registry.collector(schema.APPLICATION, "MacOS")
    assert collect is not None
    assert collect(ctx) == []
    assert "Homebrew is not installed" in ctx.warnings[0]
    root = _brew_root(tmp_path)
    failing = Replay(
        {"brew": _done("", 1, "Error: Running Homebrew as root is extremely dangerous")}
    )
    with pytest.raises(CollectError, match="brew info failed: Error: Running Homebrew as root"):
        collect(CollectContext(platform="MacOS", run=failing, root=root))
    garbled = Replay({"brew": _done("==> Downloading https://formulae.brew.sh/api/")})
    with pytest.raises(CollectError, match="not JSON"):
        collect(CollectContext(platform="MacOS", run=garbled, root=root))


def _windows_replay(products: str | None = None) -> Replay:
    return Replay(
        {
            "Installer\\Products": _done(
                products or (FIXTURES / "windows/installer_products.json").read_text()
            ),
            "Wow6432Node": _done((FIXTURES / "windows/uninstall_i386.json").read_text()),
            "CurrentVersion\\Uninstall": _done(
                "\ufeff" + (FIXTURES / "windows/uninstall_x86_64.json").read_text()
            ),
        }
    )


def test_windows_installed_programs_as_add_remove_programs_shows_them() -> None:
    run = _windows_replay()
    ctx = CollectContext(platform="Windows", run=run)
    collect = registry.collector(schema.APPLICATION, "Windows")
    assert collect is not None
    assert collect(ctx) == [
        {
            "Name": "Git",
            "Version": "2.47.0",
            "Publisher": "The Git Development Community",
            "InstalledTime": "2024-11-04T00:00:00Z",
            "PackageId": "Git_is1",
            "URL": "https://gitforwindows.org/",
            "Architecture": "x86_64",
            "PackageManager": "MSI",
        },
        {
            "Name": "PowerShell 7-x64",
            "Version": "7.4.6.0",
            "Publisher": "Microsoft Corporation",
            "InstalledTime": "2024-10-15T00:00:00Z",
            "PackageId": "{B06D1894-3827-4E0C-A092-7DC50BE8B210}",
            "URL": "https://github.com/PowerShell/PowerShell",
            "Architecture": "x86_64",
            "PackageManager": "MSI",
        },
        {
            "Name": "Notepad++ (32-bit x86)",
            "Version": "8.7",
            "Publisher": "Notepad++ Team",
            "PackageId": "Notepad++",
            "URL": "https://notepad-plus-plus.org/",
            "Architecture": "i386",
            "PackageManager": "MSI",
        },
    ]
    # every call is PowerShell with a script, never a shell line
    assert all(
        argv[:4] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command"]
        for argv, _ in run.calls
    )


def test_windows_single_and_empty_answers_and_failures() -> None:
    # ConvertTo-Json of one value is not an array; nothing at all is empty output
    run = Replay(
        {
            "Installer\\Products": _done(""),
            "Wow6432Node": _done(""),
            "CurrentVersion\\Uninstall": _done(
                '{"DisplayName": "Solo", "DisplayVersion": "1.0", "PSChildName": "Solo"}'
            ),
        }
    )
    items = _windows.collect(CollectContext(platform="Windows", run=run))
    assert [i["Name"] for i in items] == ["Solo"]
    failing = Replay({"powershell": _done("", 1, "Get-ItemProperty : Access is denied")})
    with pytest.raises(CollectError, match="Access is denied"):
        _windows.collect(CollectContext(platform="Windows", run=failing))


def test_compressed_guid_as_windows_installer_packs_it() -> None:
    # amazon-ssm-agent's documented example
    assert (
        _windows.compressed_guid("2BE0FA87-5B36-43CF-95C8-C68D6673FB94")
        == "78AF0EB263B5FC34598C6CD86637BF49"
    )
    assert _windows.compressed_guid("not-a-guid") == ""
