"""Document actions: one module per action, registered in ``ACTIONS`` (action name -> factory).

Each plugin is a :class:`~agent.plugins.base.Plugin`: a name, ``execute`` and
``request_stop``.  ``PLATFORMS`` says where an action runs; on any other platform its step is
Skipped.  An action missing from the table fails its step.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.plugins import (
    download_content,
    ensure_file,
    ensure_package,
    ensure_service,
    put_compliance_items,
    run_document,
    run_patch_baseline,
    run_powershell_script,
    run_shell_script,
    software_inventory,
    update_agent,
)
from agent.plugins.base import (
    Control,
    Plugin,
    PluginFactory,
    PluginResult,
    StepContext,
    StopReason,
)


@dataclass(frozen=True)
class Action:
    factory: PluginFactory
    platforms: frozenset[str]


ACTIONS: dict[str, Action] = {
    run_shell_script.NAME: Action(run_shell_script.RunShellScript, run_shell_script.PLATFORMS),
    run_powershell_script.NAME: Action(
        run_powershell_script.RunPowerShellScript, run_powershell_script.PLATFORMS
    ),
    run_document.NAME: Action(run_document.RunDocument, run_document.PLATFORMS),
    download_content.NAME: Action(download_content.DownloadContent, download_content.PLATFORMS),
    ensure_package.NAME: Action(ensure_package.EnsurePackage, ensure_package.PLATFORMS),
    ensure_service.NAME: Action(ensure_service.EnsureService, ensure_service.PLATFORMS),
    ensure_file.NAME: Action(ensure_file.EnsureFile, ensure_file.PLATFORMS),
    put_compliance_items.NAME: Action(
        put_compliance_items.PutComplianceItems, put_compliance_items.PLATFORMS
    ),
    run_patch_baseline.NAME: Action(
        run_patch_baseline.RunPatchBaseline, run_patch_baseline.PLATFORMS
    ),
    software_inventory.NAME: Action(
        software_inventory.SoftwareInventory, software_inventory.PLATFORMS
    ),
    update_agent.NAME: Action(update_agent.UpdateAgent, update_agent.PLATFORMS),
}

__all__ = [
    "ACTIONS",
    "Action",
    "Control",
    "Plugin",
    "PluginFactory",
    "PluginResult",
    "StepContext",
    "StopReason",
]
