"""Windows Update as Patch Manager uses it: the Windows Update Agent API
(``Microsoft.Update.Session``) driven from Windows PowerShell, whose scripts print JSON
(ConvertTo-Json), as agent/inventory/powershell.py runs them.

Scan (one script): the OS caption (``Get-CimInstance Win32_OperatingSystem``) gives the
product (``Microsoft Windows Server 2022 Datacenter`` -> ``WindowsServer2022``, ``... 2012
R2 ...`` -> ``WindowsServer2012R2``, ``Microsoft Windows 11 Pro`` -> ``Windows11``); the
searcher's ``IsInstalled=0 and Type='Software'`` the updates and ``IsInstalled=1`` the
installed ones; ``Microsoft.Update.SystemInfo``'s RebootRequired whether the node already
waits for a restart.  Each update: name and kb ``KB<first KBArticleID>`` (an update without
KB id, a driver say, is named by its UpdateID), title Title, classification the first of its
Categories that is an AWS classification (``Security Updates`` -> ``SecurityUpdates``,
CriticalUpdates, UpdateRollups, ServicePacks, Updates, FeaturePacks, DefinitionUpdates,
Drivers, Tools, Upgrades), severity MsrcSeverity (Critical, Important, Moderate, Low) or
``Unspecified`` (AWS's MSRC_SEVERITY value for updates Microsoft rates not),
release_time LastDeploymentChangeTime, advisories every KB id; security is true for
SecurityUpdates.

Install (one script): searches again and gives UpdateDownloader and UpdateInstaller exactly
the updates whose UpdateID or KB id was asked for (EULAs accepted), then reports, per update,
the WUA OperationResultCode and RebootRequired.  An asked-for update that Windows Update no
longer offers, or whose download or install did not succeed, goes in ``failed`` with the
result's meaning and HRESULT; the installer's RebootRequired is the outcome's.  The installed
packages are the ones whose install succeeded (a second full search would only repeat what
the installer said).  Windows updates have no dependencies: ``blocked`` is not consulted;
Windows Update takes no extra sources (noted when some are given).  A failing API call (no
network, the service disabled) raises PackageError with PowerShell's first error line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from agent.patching.base import PackageError
from agent.patching.model import InstallOutcome, Package, Scan, Source
from agent.patching.tools import ToolUser

# AWS's Windows CLASSIFICATION values, as WUA names the categories without their spaces.
CLASSIFICATIONS: Final = (
    "SecurityUpdates",
    "CriticalUpdates",
    "UpdateRollups",
    "ServicePacks",
    "Updates",
    "FeaturePacks",
    "DefinitionUpdates",
    "Drivers",
    "Tools",
    "Upgrades",
)
SEVERITIES: Final = ("Critical", "Important", "Moderate", "Low")
# WUA's OperationResultCode.
RESULTS: Final = {
    0: "NotStarted",
    1: "InProgress",
    2: "Succeeded",
    3: "SucceededWithErrors",
    4: "Failed",
    5: "Aborted",
}
_SUCCEEDED: Final = (2, 3)
_KB = re.compile(r"KB[0-9]{4,10}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")

PREAMBLE: Final = (
    "[Console]::OutputEncoding = [System.Text.Encoding]::UTF8; $ErrorActionPreference = 'Stop';"
)
# One update as JSON: what the scan and the install read of IUpdate.
_AS_OBJECT: Final = (
    "function Convert-Update($u) { [pscustomobject]@{"
    " UpdateID = $u.Identity.UpdateID;"
    " Title = $u.Title;"
    " KBArticleIDs = @($u.KBArticleIDs);"
    " MsrcSeverity = $u.MsrcSeverity;"
    " Categories = @(foreach ($c in $u.Categories) { $c.Name });"
    " LastDeploymentChangeTime = $u.LastDeploymentChangeTime.ToString('s');"
    " RebootRequired = [bool]$u.RebootRequired } };"
)
SCAN_SCRIPT: Final = " ".join(
    [
        PREAMBLE,
        _AS_OBJECT,
        "$os = Get-CimInstance -ClassName Win32_OperatingSystem;",
        "$session = New-Object -ComObject Microsoft.Update.Session;",
        "$session.ClientApplicationID = 'Corral';",
        "$searcher = $session.CreateUpdateSearcher();",
        "$available = $searcher.Search('IsInstalled=0 and Type=''Software''');",
        "$installed = $searcher.Search('IsInstalled=1');",
        "ConvertTo-Json -Depth 4 -InputObject ([pscustomobject]@{",
        " Caption = $os.Caption;",
        " RebootRequired =",
        " [bool](New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired;",
        " Available = @(foreach ($u in $available.Updates) { Convert-Update $u });",
        " Installed = @(foreach ($u in $installed.Updates) { Convert-Update $u }) })",
    ]
)
_INSTALL_SCRIPT: Final = " ".join(
    [
        PREAMBLE,
        "$ids = @({ids}); $kbs = @({kbs});",
        "$session = New-Object -ComObject Microsoft.Update.Session;",
        "$session.ClientApplicationID = 'Corral';",
        "$found = $session.CreateUpdateSearcher().Search('IsInstalled=0 and Type=''Software''');",
        "$chosen = New-Object -ComObject Microsoft.Update.UpdateColl;",
        "foreach ($u in $found.Updates) {",
        " $kb = @($u.KBArticleIDs | ForEach-Object { 'KB' + $_ });",
        " if ($ids -contains $u.Identity.UpdateID -or",
        " @($kb | Where-Object { $kbs -contains $_ }).Count -gt 0) {",
        " if (-not $u.EulaAccepted) { $u.AcceptEula() }; [void]$chosen.Add($u) } };",
        "$results = @(); $reboot = $false;",
        "if ($chosen.Count -gt 0) {",
        " $downloader = $session.CreateUpdateDownloader(); $downloader.Updates = $chosen;",
        " $download = $downloader.Download();",
        " $ready = New-Object -ComObject Microsoft.Update.UpdateColl;",
        " foreach ($u in $chosen) { if ($u.IsDownloaded) { [void]$ready.Add($u) } };",
        " $install = $null;",
        " if ($ready.Count -gt 0) {",
        " $installer = $session.CreateUpdateInstaller(); $installer.Updates = $ready;",
        " $install = $installer.Install(); $reboot = [bool]$install.RebootRequired };",
        " $j = 0;",
        " for ($i = 0; $i -lt $chosen.Count; $i++) {",
        " $u = $chosen.Item($i); $r = $download.GetUpdateResult($i);",
        " if ($u.IsDownloaded -and $install -ne $null) {",
        " $r = $install.GetUpdateResult($j); $j++ };",
        " $results += [pscustomobject]@{ UpdateID = $u.Identity.UpdateID; Title = $u.Title;",
        " KBArticleIDs = @($u.KBArticleIDs); ResultCode = [int]$r.ResultCode;",
        " HResult = [int]$r.HResult; RebootRequired = [bool]$r.RebootRequired } } };",
        "ConvertTo-Json -Depth 4 -InputObject",
        " ([pscustomobject]@{ RebootRequired = $reboot; Updates = $results })",
    ]
)


def install_script(ids: Sequence[str], kbs: Sequence[str]) -> str:
    """The install script for these UpdateIDs and KB ids (checked: GUIDs, KB<digits>)."""
    return _INSTALL_SCRIPT.replace("{ids}", ", ".join(f"'{i}'" for i in ids)).replace(
        "{kbs}", ", ".join(f"'{k}'" for k in kbs)
    )


class Patcher(ToolUser):
    name = "windows_update"

    @classmethod
    def _checked_root(cls, root: str) -> Path:
        return Path(root)  # Windows Update manages the running system only

    def scan(self, sources: Sequence[Source] = ()) -> Scan:
        self._seconds = 0.0
        found = self._powershell(SCAN_SCRIPT, "Windows Update search")
        if not isinstance(found, dict):
            raise PackageError("Windows Update search: expected a JSON object")
        return Scan(
            product=product(str(found.get("Caption") or "")),
            installed=[_package(u) for u in _objects(found.get("Installed"))],
            updates=[_package(u) for u in _objects(found.get("Available"))],
            reboot_required=found.get("RebootRequired") is True,
            notes=["Windows Update takes no patch sources; ignored"] if sources else [],
            manager_seconds=self._seconds,
        )

    def install(
        self,
        updates: Sequence[Package],
        *,
        blocked: Sequence[str] = (),
        sources: Sequence[Source] = (),
    ) -> InstallOutcome:
        self._seconds = 0.0
        ids: list[str] = []
        kbs: list[str] = []
        for update in updates:
            if update.kb and _KB.fullmatch(update.kb):
                kbs.append(update.kb)
            elif _GUID.fullmatch(update.name):
                ids.append(update.name)
            else:
                raise PackageError(
                    f"invalid Windows update {(update.kb or update.name)[:80]!r}: "
                    "a KB id (KB5034441) or an UpdateID"
                )
        outcome = InstallOutcome(installed=[])
        if sources:
            outcome.notes.append("Windows Update takes no patch sources; ignored")
        if not updates:
            return outcome
        found = self._powershell(install_script(ids, kbs), "Windows Update install")
        if not isinstance(found, dict):
            raise PackageError("Windows Update install: expected a JSON object")
        results = _objects(found.get("Updates"))
        done: set[str] = set()
        for update in updates:
            result = next((r for r in results if _matches(update, r)), None)
            if result is None:
                outcome.failed[update.key] = (
                    "Windows Update does not offer it (installed, superseded or hidden)"
                )
                continue
            done.add(update.key)
            code = result.get("ResultCode")
            if code in _SUCCEEDED:
                outcome.installed.append(update)
                if code == 3:
                    outcome.notes.append(f"{update.key}: installed with errors ({_said(result)})")
            else:
                outcome.failed[update.key] = f"Windows Update: {_said(result)}"
        outcome.reboot_required = found.get("RebootRequired") is True or any(
            r.get("RebootRequired") is True and r.get("ResultCode") in _SUCCEEDED for r in results
        )
        return outcome

    def _powershell(self, script: str, what: str) -> Any:
        argv = ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", script]
        done = self._tool(argv, label=f"powershell ({what})")
        if done.returncode != 0:
            raise PackageError(f"{what} failed: {done.reason()}")
        text = done.stdout.strip().lstrip("\ufeff")
        try:
            return json.loads(text)
        except ValueError:
            raise PackageError(f"{what}: PowerShell's output is not JSON") from None


def product(caption: str) -> str:
    """AWS's PRODUCT value for a Win32_OperatingSystem caption ("" when unknown)."""
    server = re.search(r"Windows Server (\d{4})( R2)?", caption)
    if server:
        return f"WindowsServer{server.group(1)}{'R2' if server.group(2) else ''}"
    client = re.search(r"Windows (\d+)\b", caption)
    return f"Windows{client.group(1)}" if client else ""


def classification(categories: Sequence[str]) -> str:
    for category in categories:
        name = category.replace(" ", "")
        if name in CLASSIFICATIONS:
            return name
    return ""


def _package(update: dict[str, Any]) -> Package:
    kbs = tuple(f"KB{k}" for k in _strings(update.get("KBArticleIDs")))
    kind = classification(_strings(update.get("Categories")))
    severity = update.get("MsrcSeverity")
    uid = update.get("UpdateID")
    return Package(
        name=kbs[0] if kbs else str(uid or ""),
        classification=kind,
        severity=severity if severity in SEVERITIES else "Unspecified",
        release_time=_time(update.get("LastDeploymentChangeTime")),
        security=kind == "SecurityUpdates",
        advisories=kbs,
        title=str(update.get("Title") or ""),
        kb=kbs[0] if kbs else "",
    )


def _matches(update: Package, result: dict[str, Any]) -> bool:
    if update.kb:
        return update.kb in {f"KB{k}" for k in _strings(result.get("KBArticleIDs"))}
    return str(result.get("UpdateID", "")).lower() == update.name.lower()


def _said(result: dict[str, Any]) -> str:
    code = result.get("ResultCode")
    meaning = RESULTS.get(code, f"result {code}") if isinstance(code, int) else "no result"
    hresult = result.get("HResult")
    if isinstance(hresult, int) and hresult != 0:
        return f"{meaning} (HRESULT 0x{hresult & 0xFFFFFFFF:08X})"
    return meaning


def _time(value: Any) -> float | None:
    """LastDeploymentChangeTime as the script writes it (``2024-06-11T00:00:00``, a date
    WUA gives without zone: taken as UTC), or as ConvertTo-Json writes a DateTime."""
    if isinstance(value, dict):
        value = value.get("value")
    if not isinstance(value, str) or not value:
        return None
    found = _MS_DATE.match(value)
    try:
        if found:
            return int(found.group(1)) / 1000
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _objects(value: Any) -> list[dict[str, Any]]:
    """ConvertTo-Json's array (one object comes out bare, none as null)."""
    if isinstance(value, dict):
        value = [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    if isinstance(value, str | int):
        value = [value]
    return [str(v) for v in value if isinstance(v, str | int)] if isinstance(value, list) else []
