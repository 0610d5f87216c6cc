"""AWS:WindowsUpdate, AWS:WindowsRegistry and AWS:WindowsRole, from PowerShell output
recorded in its real format (tests/fixtures/inventory/windows/): what cannot run here."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.inventory import registry, schema, windows_registry
from agent.inventory.base import CollectContext, CollectError
from agent.inventory.powershell import date
from agent.tools import Completed, ToolTimeout

FIXTURES = Path(__file__).parent.parent / "fixtures/inventory/windows"


class Replay:
    """A ``ctx.run`` answering PowerShell with one recorded output."""

    def __init__(self, answer: Completed | Exception) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append(argv)
        assert argv[0] == "powershell.exe"
        assert timeout > 0
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _done(stdout: str, code: int = 0, stderr: str = "") -> Completed:
    return Completed(("powershell.exe",), code, stdout, stderr)


def _ctx(answer: Completed | Exception, **kw: object) -> tuple[CollectContext, Replay]:
    run = Replay(answer)
    return CollectContext(platform="Windows", run=run, **kw), run  # type: ignore[arg-type]


def _collect(type_name: str, ctx: CollectContext) -> list[dict[str, str]]:
    collect = registry.collector(type_name, "Windows")
    assert collect is not None
    return collect(ctx)


def _attributes_are_ssm(type_name: str, items: list[dict[str, str]]) -> None:
    allowed = set(schema.TYPES[type_name].all_attributes)
    for item in items:
        assert set(item) <= allowed, item


# AWS:WindowsUpdate ------------------------------------------------------------------


def test_hotfixes_from_get_hotfix() -> None:
    ctx, run = _ctx(_done((FIXTURES / "get_hotfix.json").read_text()))
    items = _collect(schema.WINDOWS_UPDATE, ctx)
    assert items == [
        {"HotFixId": "KB5030841", "Description": "Update", "InstalledTime": "2023-06-14T00:00:00Z"},
        {
            "HotFixId": "KB5031364",
            "Description": "Security Update",
            "InstalledTime": "2023-10-18T00:00:00Z",
            "InstalledBy": "NT AUTHORITY\\SYSTEM",
        },
        {
            "HotFixId": "KB5032198",
            "Description": "Security Update",
            "InstalledTime": "2023-11-15T00:00:00Z",
            "InstalledBy": "NT AUTHORITY\\SYSTEM",
        },
        # InstalledOn null (WMI had no date): the attribute is left out.
        {
            "HotFixId": "KB5034127",
            "Description": "Update",
            "InstalledBy": "EC2AMAZ-4R1K2TQ\\Administrator",
        },
    ]
    _attributes_are_ssm(schema.WINDOWS_UPDATE, items)
    assert "Get-HotFix" in run.calls[0][-1]
    assert "ConvertTo-Json" in run.calls[0][-1]


def test_one_hotfix_comes_as_a_bare_object() -> None:
    one = json.loads((FIXTURES / "get_hotfix.json").read_text())[1]
    ctx, _ = _ctx(_done(json.dumps(one, indent=4)))
    items = _collect(schema.WINDOWS_UPDATE, ctx)
    assert [i["HotFixId"] for i in items] == ["KB5031364"]


def test_no_hotfixes_is_no_items() -> None:
    ctx, _ = _ctx(_done("[]\r\n"))
    assert _collect(schema.WINDOWS_UPDATE, ctx) == []
    ctx, _ = _ctx(_done(""))
    assert _collect(schema.WINDOWS_UPDATE, ctx) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/Date(1700006400000)/", "2023-11-15T00:00:00Z"),
        ("/Date(1700006400000+0100)/", "2023-11-15T00:00:00Z"),  # the offset is display only
        ({"value": "/Date(1697587200000)/", "DateTime": "..."}, "2023-10-18T00:00:00Z"),
        ("2023-11-15T01:00:00+01:00", "2023-11-15T00:00:00Z"),  # PowerShell 7
        (None, ""),
        ("not a date", ""),
        (12, ""),
    ],
)
def test_powershell_dates(value: object, expected: str) -> None:
    assert date(value) == expected


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (FileNotFoundError("powershell.exe"), "powershell (Get-HotFix)"),
        (ToolTimeout("powershell.exe did not finish within 120 s"), "did not finish"),
        (_done("", 1, "Get-HotFix : Access is denied."), "Access is denied"),
        (_done("WARNING: something\r\n[{"), "not JSON"),
    ],
)
def test_powershell_failures_fail_the_type(answer: Completed | Exception, reason: str) -> None:
    ctx, _ = _ctx(answer)
    with pytest.raises(CollectError, match=re.escape(reason)):
        _collect(schema.WINDOWS_UPDATE, ctx)


def test_a_malformed_entry_is_warned_and_skipped() -> None:
    ctx, _ = _ctx(_done('[5, {"HotFixID": "KB1", "Description": "Update"}]'))
    assert _collect(schema.WINDOWS_UPDATE, ctx) == [{"HotFixId": "KB1", "Description": "Update"}]
    assert any("not an object" in w for w in ctx.warnings)


def test_windows_types_are_not_gathered_elsewhere() -> None:
    for type_name in (schema.WINDOWS_UPDATE, schema.WINDOWS_REGISTRY, schema.WINDOWS_ROLE):
        assert registry.collector(type_name, "Linux") is None
        assert registry.collector(type_name, "MacOS") is None


# AWS:WindowsRole --------------------------------------------------------------------


def test_roles_from_get_windows_feature() -> None:
    ctx, run = _ctx(_done((FIXTURES / "get_windows_feature.json").read_text()))
    items = _collect(schema.WINDOWS_ROLE, ctx)
    _attributes_are_ssm(schema.WINDOWS_ROLE, items)
    by_name = {i["Name"]: i for i in items}
    assert list(by_name) == [
        "AD-Certificate",
        "Web-Server",
        "Web-WebServer",
        "NET-Framework-45-ASPNET",
        "Telnet-Client",
    ]
    assert by_name["Web-WebServer"] == {
        "Name": "Web-WebServer",
        "DisplayName": "Web Server",
        "Description": by_name["Web-WebServer"]["Description"],
        "Installed": "True",
        "InstalledState": "Installed",
        "FeatureType": "Role Service",
        "Path": "Web Server (IIS)\\Web Server",
        "SubFeatures": "Web-Common-Http Web-Health Web-Performance Web-Security Web-App-Dev",
        "ServerComponentDescriptor": "ServerComponent_Web_WebServer",
        "Parent": "Web-Server",
    }
    assert by_name["Web-WebServer"]["Description"].startswith("Web Server provides support")
    aspnet = by_name["NET-Framework-45-ASPNET"]
    assert aspnet["DependsOn"] == "NET-Framework-45-Core"
    assert aspnet["Installed"] == "False"
    assert "SubFeatures" not in aspnet  # an empty list: left out
    assert by_name["Telnet-Client"]["InstalledState"] == "Removed"
    assert "Parent" not in by_name["Web-Server"]
    # The enums are turned into names by the script (5.1 would write numbers).
    assert "[string]$_.InstallState" in run.calls[0][-1]


def test_no_get_windows_feature_says_why() -> None:
    ctx, _ = _ctx(_done("", 3))
    with pytest.raises(CollectError, match="Get-WindowsFeature is not on this node"):
        _collect(schema.WINDOWS_ROLE, ctx)


def test_role_without_a_name_is_warned() -> None:
    ctx, _ = _ctx(_done('[{"DisplayName": "x"}, {"Name": "Web-Server", "Installed": true}]'))
    assert _collect(schema.WINDOWS_ROLE, ctx) == [{"Name": "Web-Server", "Installed": "True"}]
    assert ctx.warnings


# AWS:WindowsRegistry ----------------------------------------------------------------


def _specs_in(script: str) -> list[dict[str, object]]:
    found = re.search(r"FromBase64String\('([A-Za-z0-9+/=]+)'\)", script)
    assert found is not None
    decoded: list[dict[str, object]] = json.loads(base64.b64decode(found.group(1)))
    return decoded


def test_registry_values() -> None:
    specs = (
        {"Path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon", "Recursive": True},
        {"Path": "HKLM:/SOFTWARE/Contoso"},
        {"Path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon\\MachineImage", "ValueNames": ["AMIName"]},
    )
    ctx, run = _ctx(_done((FIXTURES / "registry_values.json").read_text()), registry=specs)
    items = _collect(schema.WINDOWS_REGISTRY, ctx)
    _attributes_are_ssm(schema.WINDOWS_REGISTRY, items)
    assert items[0] == {
        "KeyPath": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon\\MachineImage",
        "ValueName": "AMIName",
        "ValueType": "REG_SZ",
        "Value": "Windows_Server-2022-English-Full-Base",
    }
    values = {(i["KeyPath"].rsplit("\\", 1)[1], i["ValueName"]): i for i in items}
    assert values[("PVDriver", "(Default)")]["Value"] == "AWS PV Drivers"
    assert values[("PVDriver", "Signature")]["Value"] == "BinaryValue"
    assert values[("PVDriver", "Components")]["ValueType"] == "REG_MULTI_SZ"
    assert values[("SSM", "InstallPath")]["ValueType"] == "REG_EXPAND_SZ"
    assert len(items) == 8
    assert ctx.warnings == [
        "AWS:WindowsRegistry: HKEY_LOCAL_MACHINE\\SOFTWARE\\Contoso does not exist: skipped"
    ]
    # One PowerShell run; the specs travel as data, normalised.
    assert len(run.calls) == 1
    assert _specs_in(run.calls[0][-1]) == [
        {"Path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon", "Recursive": True, "ValueNames": []},
        {"Path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Contoso", "Recursive": False, "ValueNames": []},
        {
            "Path": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Amazon\\MachineImage",
            "Recursive": False,
            "ValueNames": ["AMIName"],
        },
    ]


def test_a_quote_in_a_registry_path_stays_data() -> None:
    path = "HKEY_CURRENT_USER\\Software\\it's'; Remove-Item C:\\ -Recurse; '"
    ctx, run = _ctx(
        _done('{"Values": [], "Truncated": "", "Missing": []}'), registry=[{"Path": path}]
    )
    assert _collect(schema.WINDOWS_REGISTRY, ctx) == []
    script = run.calls[0][-1]
    assert "Remove-Item" not in script
    assert _specs_in(script)[0]["Path"] == path


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"Path": "SOFTWARE\\Amazon"}, "must start with a hive"),
        ({"Path": ""}, "Path is required"),
        ({"Recursive": True}, "Path is required"),
        ({"Path": "HKLM\\X", "Recursive": "yes"}, "Recursive must be true or false"),
        ({"Path": "HKLM\\X", "ValueNames": "AMIName"}, "ValueNames must be a list"),
        ({"Path": "HKLM\\X", "Valuenames": ["a"]}, "unknown key 'Valuenames'"),
        ({"Path": "HKLM\\X\nY"}, "not a usable registry path"),
        ("HKLM\\X", "must be an object"),
    ],
)
def test_bad_registry_specs(spec: object, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        windows_registry.parse_specs([spec])  # type: ignore[list-item]
    # In a gathering: a warning, and the good specs go on.
    ctx, run = _ctx(
        _done('{"Values": [], "Truncated": "", "Missing": []}'),
        registry=(spec, {"Path": "HKLM\\SOFTWARE"}),
    )
    assert _collect(schema.WINDOWS_REGISTRY, ctx) == []
    assert any(reason in w for w in ctx.warnings)
    assert [s["Path"] for s in _specs_in(run.calls[0][-1])] == ["HKEY_LOCAL_MACHINE\\SOFTWARE"]


def test_only_bad_specs_runs_nothing() -> None:
    ctx, run = _ctx(_done("[]"), registry=({"Path": "nowhere"},))
    assert _collect(schema.WINDOWS_REGISTRY, ctx) == []
    assert run.calls == []


def test_registry_value_limit() -> None:
    values = [
        {
            "KeyPath": "HKEY_LOCAL_MACHINE\\SOFTWARE\\Big",
            "ValueName": f"v{i}",
            "ValueType": "REG_SZ",
            "Value": str(i),
        }
        for i in range(windows_registry.VALUE_LIMIT + 1)
    ]
    answer = json.dumps({"Values": values, "Truncated": "values", "Missing": []})
    ctx, run = _ctx(_done(answer), registry=({"Path": "HKLM\\SOFTWARE\\Big", "Recursive": True},))
    items = _collect(schema.WINDOWS_REGISTRY, ctx)
    assert len(items) == windows_registry.VALUE_LIMIT == 250
    assert ctx.warnings == ["AWS:WindowsRegistry: stopped at the limit of 250 values"]
    assert "$valueLimit = 250" in run.calls[0][-1]


def test_registry_key_limit_is_reported() -> None:
    answer = json.dumps({"Values": [], "Truncated": "keys", "Missing": []})
    ctx, _ = _ctx(_done(answer), registry=({"Path": "HKLM", "Recursive": True},))
    assert _collect(schema.WINDOWS_REGISTRY, ctx) == []
    assert ctx.warnings == [
        f"AWS:WindowsRegistry: stopped after walking {windows_registry.KEY_LIMIT} keys"
    ]
