"""Windows Update (the WUA API through Windows PowerShell) as Patch Manager uses it,
replaying the JSON its scripts print on Windows Server 2022
(tests/fixtures/patching/windows/): Windows Update cannot run here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.patching.base import PackageError
from agent.patching.model import Package, Source
from agent.patching.windows_update import (
    SCAN_SCRIPT,
    Patcher,
    classification,
    install_script,
    product,
)
from agent.tools import Completed, ToolTimeout

FIXTURES = Path(__file__).parent.parent / "fixtures/patching/windows"
POWERSHELL = ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command"]
CU = "8b8e3c5a-3f0e-4b39-9d46-0d0f8a4c2e11"
DRIVER = "5c2a91d4-0b7e-4e2f-a3c8-96e1f0d2b7a5"


def _out(name: str) -> str:
    return (FIXTURES / name).read_text()


def _done(stdout: str = "", code: int = 0, stderr: str = "") -> Completed:
    return Completed(("powershell.exe",), code, stdout, stderr)


class Replay:
    """A Runner answering PowerShell running exactly ``script`` with recorded output."""

    def __init__(self, script: str, answer: Completed | Exception) -> None:
        self.script = script
        self.answer = answer
        self.calls = 0

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls += 1
        assert argv == [*POWERSHELL, self.script]
        assert dict(env) == {}
        assert timeout == 3600.0
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _day(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_scan_reads_updates_and_installed_from_the_update_searcher() -> None:
    run = Replay(SCAN_SCRIPT, _done(_out("scan_server2022.json")))
    scan = Patcher(run=run).scan()
    assert scan.product == "WindowsServer2022"
    assert not scan.reboot_required
    cumulative = (
        "2024-06 Cumulative Update for Microsoft server operating system version 21H2 for "
        "x64-based Systems (KB5039227)"
    )
    assert scan.updates[0] == Package(
        name="KB5039227",
        classification="SecurityUpdates",
        severity="Critical",
        release_time=_day("2024-06-11"),
        security=True,
        advisories=("KB5039227",),
        title=cumulative,
        kb="KB5039227",
    )
    assert [(u.key, u.classification, u.severity) for u in scan.updates] == [
        ("KB5039227", "SecurityUpdates", "Critical"),
        ("KB5039343", "Updates", "Unspecified"),
        ("KB2267602", "DefinitionUpdates", "Unspecified"),
        # A driver has no KB id: it is known by its UpdateID.
        (DRIVER, "Drivers", "Unspecified"),
    ]
    assert [(p.key, p.severity) for p in scan.installed] == [
        ("KB5037782", "Critical"),
        ("KB5037422", "Important"),
    ]
    assert run.calls == 1


def test_the_scan_script_asks_wua_what_the_contract_needs() -> None:
    for needed in (
        "Get-CimInstance -ClassName Win32_OperatingSystem",
        "New-Object -ComObject Microsoft.Update.Session",
        "Search('IsInstalled=0 and Type=''Software''')",
        "Search('IsInstalled=1')",
        "Microsoft.Update.SystemInfo",
        "$u.Identity.UpdateID",
        "@($u.KBArticleIDs)",
        "$u.MsrcSeverity",
        "$c.Name",
        "$u.LastDeploymentChangeTime",
        "ConvertTo-Json -Depth 4",
    ):
        assert needed in SCAN_SCRIPT, needed
    assert '"' not in SCAN_SCRIPT  # nothing for the command line's quoting to mangle


def test_a_node_waiting_for_a_restart_says_so() -> None:
    text = _out("scan_server2022.json").replace(
        '"RebootRequired":  false,\n    "Available"', '"RebootRequired":  true,\n    "Available"'
    )
    assert Patcher(run=Replay(SCAN_SCRIPT, _done(text))).scan().reboot_required


def test_a_scan_with_no_updates_at_all() -> None:
    text = (
        '{"Caption": "Microsoft Windows 11 Pro", "RebootRequired": false,'
        ' "Available": [], "Installed": null}'
    )
    scan = Patcher(run=Replay(SCAN_SCRIPT, _done(text))).scan()
    assert (scan.product, scan.updates, scan.installed) == ("Windows11", [], [])


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Microsoft Windows Server 2022 Datacenter", "WindowsServer2022"),
        ("Microsoft Windows Server 2019 Standard", "WindowsServer2019"),
        ("Microsoft Windows Server 2012 R2 Standard", "WindowsServer2012R2"),
        ("Microsoft Windows 10 Enterprise", "Windows10"),
        ("Microsoft Hyper-V Server", ""),
    ],
)
def test_product_from_the_os_caption(caption: str, expected: str) -> None:
    assert product(caption) == expected


def test_classification_is_the_first_aws_category() -> None:
    assert classification(["Windows Server 2022", "Critical Updates"]) == "CriticalUpdates"
    assert classification(["Update Rollups", "Security Updates"]) == "UpdateRollups"
    assert classification(["Microsoft Defender Antivirus"]) == ""


def test_scan_failing_in_wua_is_one_line_with_its_hresult() -> None:
    run = Replay(SCAN_SCRIPT, _done("", 1, _out("search_offline.stderr")))
    with pytest.raises(PackageError) as caught:
        Patcher(run=run).scan()
    assert str(caught.value) == (
        'Windows Update search failed: Exception calling "Search" with "1" argument(s): '
        '"Exception from HRESULT: 0x8024402C" (exit 1)'
    )


def test_scan_output_that_is_not_json_is_a_package_error() -> None:
    with pytest.raises(PackageError, match="PowerShell's output is not JSON"):
        Patcher(run=Replay(SCAN_SCRIPT, _done("WARNING: something\n"))).scan()


def test_a_hung_powershell_is_a_package_error() -> None:
    run = Replay(SCAN_SCRIPT, ToolTimeout("powershell.exe did not finish within 3600 s"))
    with pytest.raises(PackageError, match="did not finish within 3600 s"):
        Patcher(run=run).scan()


def _kb(kb: str) -> Package:
    return Package(name=kb, kb=kb, classification="SecurityUpdates", advisories=(kb,))


def test_install_gives_wua_exactly_the_chosen_updates() -> None:
    chosen = [_kb("KB5039227"), _kb("KB5039343"), Package(name=DRIVER, classification="Drivers")]
    script = install_script([DRIVER], ["KB5039227", "KB5039343"])
    assert f"$ids = @('{DRIVER}'); $kbs = @('KB5039227', 'KB5039343');" in script
    for needed in (
        "CreateUpdateDownloader()",
        "CreateUpdateInstaller()",
        "$u.AcceptEula()",
        "GetUpdateResult($i)",
        "[int]$r.ResultCode",
        "[bool]$r.RebootRequired",
    ):
        assert needed in script, needed
    run = Replay(script, _done(_out("install_results.json")))
    # Windows updates have no dependencies: blocked (another KB) changes nothing.
    outcome = Patcher(run=run).install(chosen, blocked=["KB5037782"])
    assert outcome.installed == [chosen[0], chosen[2]]
    # The installer's ResultCode 4 (Failed) with WU_E_ALL_UPDATES_FAILED.
    assert outcome.failed == {"KB5039343": "Windows Update: Failed (HRESULT 0x80240022)"}
    assert outcome.reboot_required
    assert run.calls == 1


def test_an_update_no_longer_offered_is_failed_not_installed() -> None:
    text = '{"RebootRequired": false, "Updates": []}'
    script = install_script([], ["KB5000001"])
    outcome = Patcher(run=Replay(script, _done(text))).install([_kb("KB5000001")])
    assert outcome.installed == []
    assert outcome.failed == {
        "KB5000001": "Windows Update does not offer it (installed, superseded or hidden)"
    }
    assert not outcome.reboot_required


def test_install_of_nothing_runs_nothing() -> None:
    run = Replay("", _done())
    assert Patcher(run=run).install([], sources=[Source("x", (), "")]).notes == [
        "Windows Update takes no patch sources; ignored"
    ]
    assert run.calls == 0


@pytest.mark.parametrize(
    "bad",
    [
        Package(name="KB1'); Remove-Item C:\\ -Recurse; ('", kb="KB1'); Remove-Item C:\\; ('"),
        Package(name="not-a-guid"),
    ],
)
def test_install_refuses_what_is_neither_a_kb_nor_an_update_id(bad: Package) -> None:
    with pytest.raises(PackageError, match="a KB id \\(KB5034441\\) or an UpdateID"):
        Patcher(run=Replay("", _done())).install([bad])
