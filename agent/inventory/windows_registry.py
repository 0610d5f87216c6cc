"""AWS:WindowsRegistry: the registry values AWS-GatherSoftwareInventory's ``windowsRegistry``
parameter names (SSM's specs: ``Path``, ``Recursive``, ``ValueNames``), one item per value:
KeyPath (``HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon``), ValueName (``(Default)`` for a key's
unnamed value), ValueType (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, REG_QWORD,
REG_BINARY, None, Unknown) and Value, as amazon-ssm-agent's registry gatherer: a binary
value reads "BinaryValue", a multi-string its strings joined by spaces, a DWORD as .NET's
Int32 prints it.

One PowerShell run reads every spec (handed to it as base64 JSON: data, never code) and
writes its findings with ConvertTo-Json.  At most VALUE_LIMIT values over all specs (SSM's
250) and KEY_LIMIT keys walked; past either, what was found is kept and a warning says so
(SSM drops the whole type).  A spec that is wrong, or whose key does not exist, is a
warning and skipped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agent.inventory.base import CollectContext, Item
from agent.inventory.powershell import PREAMBLE, as_list, powershell_json, text

KEYS: Final = ("Path", "Recursive", "ValueNames")
MAX_SPECS: Final = 50
MAX_VALUE_NAMES: Final = 100
MAX_PATH_CHARS: Final = 1024
VALUE_LIMIT: Final = 250  # SSM's MaxValueCountLimit, over all specs
KEY_LIMIT: Final = 5_000  # keys walked over all specs (Corral's)
DEFAULT_NAME: Final = "(Default)"
_HIVES: Final = {
    "HKEY_LOCAL_MACHINE": "HKEY_LOCAL_MACHINE",
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKEY_CURRENT_USER": "HKEY_CURRENT_USER",
    "HKCU": "HKEY_CURRENT_USER",
    "HKEY_CLASSES_ROOT": "HKEY_CLASSES_ROOT",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKEY_USERS": "HKEY_USERS",
    "HKU": "HKEY_USERS",
    "HKEY_CURRENT_CONFIG": "HKEY_CURRENT_CONFIG",
    "HKCC": "HKEY_CURRENT_CONFIG",
}
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RegistrySpec:
    path: str  # HKEY_...\Sub\Key (backslashes, full hive name)
    recursive: bool = False
    value_names: tuple[str, ...] = ()


def parse_specs(raw: Sequence[Mapping[str, Any]]) -> tuple[RegistrySpec, ...]:
    """The ``windowsRegistry`` parameter as specs; ValueError naming the spec and key."""
    if not isinstance(raw, list | tuple):
        raise ValueError("windowsRegistry must be a list of objects")
    if len(raw) > MAX_SPECS:
        raise ValueError(f"windowsRegistry: at most {MAX_SPECS} specs, not {len(raw)}")
    return tuple(parse_spec(f"windowsRegistry[{i}]", entry) for i, entry in enumerate(raw))


def parse_spec(where: str, entry: Any) -> RegistrySpec:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(str(k) for k in entry if k not in KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0][:40]!r} (known: {', '.join(KEYS)})")
    path = entry.get("Path")
    if not isinstance(path, str) or not path.strip():
        raise ValueError(
            f"{where}: Path is required (such as HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon)"
        )
    if len(path) > MAX_PATH_CHARS or _CONTROL.search(path):
        raise ValueError(f"{where}: Path is not a usable registry path")
    recursive = entry.get("Recursive", False)
    if not isinstance(recursive, bool):
        raise ValueError(f"{where}: Recursive must be true or false")
    names = entry.get("ValueNames", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: ValueNames must be a list of strings")
    if len(names) > MAX_VALUE_NAMES:
        raise ValueError(f"{where}: ValueNames: at most {MAX_VALUE_NAMES} names")
    return RegistrySpec(_key_path(where, path), recursive, tuple(dict.fromkeys(names)))


def _key_path(where: str, path: str) -> str:
    """``path`` as HKEY_...\\Key: slashes as backslashes, a short or drive hive name
    (HKLM, HKLM:) spelled out."""
    parts = [p for p in path.strip().replace("/", "\\").split("\\") if p]
    hive = _HIVES.get(parts[0].rstrip(":").upper()) if parts else None
    if hive is None:
        raise ValueError(
            f"{where}: Path must start with a hive (HKEY_LOCAL_MACHINE, HKEY_USERS, ...), "
            f"not {path[:60]!r}"
        )
    return "\\".join([hive, *parts[1:]])


_SCRIPT: Final = r"""
$json = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String('@SPECS@'))
$specs = $json | ConvertFrom-Json
$valueLimit = @VALUES@; $keyLimit = @KEYS@
$out = New-Object System.Collections.ArrayList
$state = @{ Keys = 0; Truncated = '' }
$types = @{
  'Binary' = 'REG_BINARY'; 'DWord' = 'REG_DWORD'; 'ExpandString' = 'REG_EXPAND_SZ'
  'MultiString' = 'REG_MULTI_SZ'; 'QWord' = 'REG_QWORD'; 'String' = 'REG_SZ'
  'None' = 'None'; 'Unknown' = 'Unknown'
}
function Add-Value($key, $name) {
  $value = $key.GetValue($name)
  if ($value -eq $null) { return }
  $kind = $key.GetValueKind($name).ToString()
  if ($kind -eq 'Binary') { $value = 'BinaryValue' }
  elseif ($kind -eq 'MultiString') { $value = $value -join ' ' }
  else { $value = [string]$value }
  $type = $types[$kind]; if (-not $type) { $type = $kind }
  [void]$out.Add([pscustomobject]@{
    KeyPath = $key.Name; ValueName = $name; ValueType = $type; Value = $value
  })
  if ($out.Count -gt $valueLimit) { $state.Truncated = 'values' }
}
function Read-Key($key, $recursive) {
  if ($state.Truncated) { return }
  $state.Keys++
  if ($state.Keys -gt $keyLimit) { $state.Truncated = 'keys'; return }
  foreach ($name in $key.GetValueNames()) { if ($state.Truncated) { return }; Add-Value $key $name }
  if (-not $recursive) { return }
  foreach ($sub in $key.GetSubKeyNames()) {
    if ($state.Truncated) { return }
    $child = $null
    try { $child = $key.OpenSubKey($sub) } catch { }
    if ($child -ne $null) { try { Read-Key $child $true } finally { $child.Close() } }
  }
}
$missing = New-Object System.Collections.ArrayList
foreach ($spec in $specs) {
  if ($state.Truncated) { break }
  $path = 'Registry::' + $spec.Path
  if (-not (Test-Path -LiteralPath $path)) { [void]$missing.Add($spec.Path); continue }
  $key = Get-Item -LiteralPath $path
  if ($spec.ValueNames.Count -gt 0) {
    foreach ($name in $spec.ValueNames) { if ($state.Truncated) { break }; Add-Value $key $name }
  } else { Read-Key $key ([bool]$spec.Recursive) }
}
ConvertTo-Json -Depth 3 -InputObject ([pscustomobject]@{
  Values = @($out); Truncated = $state.Truncated; Missing = @($missing)
})
"""


def script(specs: Sequence[RegistrySpec]) -> str:
    data = [
        {"Path": s.path, "Recursive": s.recursive, "ValueNames": list(s.value_names)} for s in specs
    ]
    encoded = base64.b64encode(json.dumps(data).encode("utf-8")).decode("ascii")
    return PREAMBLE + (
        _SCRIPT.replace("@SPECS@", encoded)
        .replace("@VALUES@", str(VALUE_LIMIT))
        .replace("@KEYS@", str(KEY_LIMIT))
    )


def collect(ctx: CollectContext) -> list[Item]:
    specs: list[RegistrySpec] = []
    for i, entry in enumerate(ctx.registry[:MAX_SPECS]):
        try:
            specs.append(parse_spec(f"windowsRegistry[{i}]", entry))
        except ValueError as exc:
            ctx.warn(f"AWS:WindowsRegistry: {exc}: skipped")
    if not specs:
        return []
    found = powershell_json(ctx, script(specs), "registry")
    if not isinstance(found, dict):
        found = {}
    for path in as_list(found.get("Missing")):
        ctx.warn(f"AWS:WindowsRegistry: {text(path)} does not exist: skipped")
    truncated = text(found.get("Truncated"))
    items: list[Item] = []
    seen: set[tuple[str, str]] = set()
    for entry in as_list(found.get("Values")):
        if not isinstance(entry, dict) or not text(entry.get("KeyPath")):
            continue
        name = text(entry.get("ValueName")) or DEFAULT_NAME
        key = (text(entry.get("KeyPath")), name)
        if key in seen:
            continue  # two specs reaching the same value
        if len(items) >= VALUE_LIMIT:
            truncated = "values"
            break
        seen.add(key)
        item: Item = {
            "KeyPath": key[0],
            "ValueName": name,
            "ValueType": text(entry.get("ValueType")),
            "Value": text(entry.get("Value")),
        }
        items.append({k: v for k, v in item.items() if v})
    if truncated == "values":
        ctx.warn(f"AWS:WindowsRegistry: stopped at the limit of {VALUE_LIMIT} values")
    elif truncated == "keys":
        ctx.warn(f"AWS:WindowsRegistry: stopped after walking {KEY_LIMIT} keys")
    return items
