"""The inventory types: SSM's names and attributes (GetInventorySchema), and Corral's own.

Both sides use this table: the agent's collectors produce items with exactly these
attributes (values are strings, as SSM's ``Content``), the server validates uploads, stores
them and answers ``corral inventory schema`` from it.  ``key`` names the attributes that
identify an item within its type on one node (what a change is "the same item" by);
``version`` names the attribute compared version-aware in filters (package versions).

Custom types (``Custom:NAME``) have no fixed attributes: their items' own keys, at most
CUSTOM_MAX_ATTRIBUTES of them, strings, AWS's limits below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class InventoryType:
    name: str
    version: str  # SSM's schema version of the type
    attributes: tuple[str, ...]
    key: tuple[str, ...]  # identifies an item on one node
    numbers: frozenset[str] = frozenset()  # NUMBER attributes (compared as numbers)
    version_attribute: str | None = None  # compared with the package manager's rules
    platforms: frozenset[str] = frozenset({"Linux", "MacOS", "Windows"})
    # Filled by the server, not gathered by the agent (compliance).
    server_side: bool = False
    # Written by AWS-RunPatchBaseline's operation on the node, not by a gathering.
    patch_manager: bool = False
    # Corral's own attributes beside SSM's (documented as such).
    extra: tuple[str, ...] = ()
    # The attribute the server indexes (equality and begins-with filters on it, summaries
    # grouped by it, use the index); None: none is.
    indexed: str | None = "Name"

    @property
    def all_attributes(self) -> tuple[str, ...]:
        return self.attributes + self.extra


LINUX_MAC_WIN: Final = frozenset({"Linux", "MacOS", "Windows"})
WINDOWS: Final = frozenset({"Windows"})

INSTANCE_INFORMATION: Final = "AWS:InstanceInformation"
APPLICATION: Final = "AWS:Application"
AWS_COMPONENT: Final = "AWS:AWSComponent"
FILE: Final = "AWS:File"
NETWORK: Final = "AWS:Network"
WINDOWS_UPDATE: Final = "AWS:WindowsUpdate"
INSTANCE_DETAILED_INFORMATION: Final = "AWS:InstanceDetailedInformation"
SERVICE: Final = "AWS:Service"
WINDOWS_REGISTRY: Final = "AWS:WindowsRegistry"
WINDOWS_ROLE: Final = "AWS:WindowsRole"
COMPLIANCE_ITEM: Final = "AWS:ComplianceItem"
PATCH_SUMMARY: Final = "AWS:PatchSummary"
PATCH: Final = "Corral:Patch"  # one item per patch (DescribeInstancePatches)
LISTENING_PORT: Final = "Corral:ListeningPort"
USER: Final = "Corral:User"

_TYPES: tuple[InventoryType, ...] = (
    InventoryType(
        INSTANCE_INFORMATION,
        "1.0",
        (
            "AgentType",
            "AgentVersion",
            "ComputerName",
            "InstanceId",
            "IpAddress",
            "PlatformName",
            "PlatformType",
            "PlatformVersion",
            "ResourceType",
            "AgentStatus",
            "InstanceStatus",
        ),
        ("InstanceId",),
        indexed="InstanceId",
    ),
    InventoryType(
        APPLICATION,
        "1.1",
        (
            "Name",
            "ApplicationType",
            "Publisher",
            "Version",
            "InstalledTime",
            "Architecture",
            "URL",
            "Summary",
            "PackageId",
            "Release",
            "Epoch",
        ),
        ("PackageManager", "Name", "Architecture"),
        version_attribute="Version",
        # dpkg | rpm | apk | pacman | brew | MSI (Windows' installed programs): which
        # database the item came from, and whose version rules compare its Version.
        extra=("PackageManager",),
    ),
    InventoryType(
        AWS_COMPONENT,
        "1.0",
        (
            "Name",
            "ApplicationType",
            "Publisher",
            "Version",
            "InstalledTime",
            "Architecture",
            "URL",
        ),
        ("Name", "Architecture"),
        version_attribute="Version",
    ),
    InventoryType(
        FILE,
        "1.0",
        (
            "Name",
            "Size",
            "Description",
            "FileVersion",
            "InstalledDate",
            "ModificationTime",
            "LastAccessTime",
            "ProductName",
            "InstalledDir",
            "ProductLanguage",
            "CompanyName",
            "ProductVersion",
        ),
        ("InstalledDir", "Name"),
        numbers=frozenset({"Size"}),
        extra=("Sha256",),  # only when the file spec asks for it (Corral's)
    ),
    InventoryType(
        NETWORK,
        "1.0",
        (
            "Name",
            "SubnetMask",
            "Gateway",
            "DHCPServer",
            "DNSServer",
            "MacAddress",
            "IPV4",
            "IPV6",
        ),
        ("Name",),
    ),
    InventoryType(
        WINDOWS_UPDATE,
        "1.0",
        ("HotFixId", "Description", "InstalledTime", "InstalledBy"),
        ("HotFixId",),
        platforms=WINDOWS,
        indexed="HotFixId",
    ),
    InventoryType(
        INSTANCE_DETAILED_INFORMATION,
        "1.0",
        (
            "CPUModel",
            "CPUCores",
            "CPUs",
            "CPUSpeedMHz",
            "CPUSockets",
            "CPUHyperThreadEnabled",
            "OSServicePack",
        ),
        ("CPUModel",),
        indexed="CPUModel",
        numbers=frozenset({"CPUCores", "CPUs", "CPUSpeedMHz", "CPUSockets"}),
    ),
    InventoryType(
        SERVICE,
        "1.0",
        (
            "Name",
            "DisplayName",
            "ServiceType",
            "Status",
            "DependentServices",
            "ServicesDependedOn",
            "StartType",
        ),
        ("Name",),
    ),
    InventoryType(
        WINDOWS_REGISTRY,
        "1.0",
        ("KeyPath", "ValueName", "ValueType", "Value"),
        ("KeyPath", "ValueName"),
        platforms=WINDOWS,
        indexed="KeyPath",
    ),
    InventoryType(
        WINDOWS_ROLE,
        "1.0",
        (
            "Name",
            "DisplayName",
            "Path",
            "FeatureType",
            "DependsOn",
            "Description",
            "Installed",
            "InstalledState",
            "SubFeatures",
            "ServerComponentDescriptor",
            "Parent",
        ),
        ("Name",),
        platforms=WINDOWS,
    ),
    InventoryType(
        COMPLIANCE_ITEM,
        "1.0",
        (
            "ComplianceType",
            "ExecutionId",
            "ExecutionType",
            "ExecutionTime",
            "Id",
            "Title",
            "Status",
            "Severity",
            "DocumentName",
            "DocumentVersion",
            "Classification",
            "PatchBaselineId",
            "PatchSeverity",
            "PatchState",
            "PatchGroup",
            "InstalledTime",
        ),
        ("ComplianceType", "Id"),
        server_side=True,
        indexed="Id",
    ),
    InventoryType(
        PATCH_SUMMARY,
        "1.0",
        (
            "PatchGroup",
            "BaselineId",
            "SnapshotId",
            "OwnerInformation",
            "InstalledCount",
            "InstalledOtherCount",
            "NotApplicableCount",
            "MissingCount",
            "FailedCount",
            "OperationType",
            "OperationStartTime",
            "OperationEndTime",
        ),
        ("BaselineId",),
        indexed="BaselineId",
        numbers=frozenset(
            {
                "InstalledCount",
                "InstalledOtherCount",
                "NotApplicableCount",
                "MissingCount",
                "FailedCount",
                "InstalledPendingRebootCount",
                "InstalledRejectedCount",
                "AvailableSecurityUpdateCount",
                "CriticalNonCompliantCount",
                "SecurityNonCompliantCount",
                "OtherNonCompliantCount",
            }
        ),
        # DescribeInstancePatchStates' fields beside the inventory type's own.
        extra=(
            "InstalledPendingRebootCount",
            "InstalledRejectedCount",
            "AvailableSecurityUpdateCount",
            "CriticalNonCompliantCount",
            "SecurityNonCompliantCount",
            "OtherNonCompliantCount",
            "RebootOption",
            "LastNoRebootInstallOperationTime",
            "InstallOverrideList",
            "ComplianceStatus",
            "ComplianceSeverity",
            "OperatingSystem",
            "Product",
            "PackageManager",
            "CommandId",
            "Message",
        ),
        patch_manager=True,
    ),
    InventoryType(
        PATCH,
        "1.0",
        (
            "Title",
            "KBId",
            "Classification",
            "Severity",
            "State",
            "InstalledTime",
            "CVEIds",
        ),
        ("KBId",),
        indexed="KBId",
        version_attribute="AvailableVersion",
        # DescribeInstancePatches' fields, then what Corral adds to explain each state.
        extra=(
            "Name",
            "Arch",
            "InstalledVersion",
            "AvailableVersion",
            "ReleaseDate",
            "Repository",
            "Section",
            "Priority",
            "Security",
            "AdvisoryIds",
            "Rule",
            "ComplianceLevel",
            "ApprovalDate",
            "Reason",
        ),
        patch_manager=True,
    ),
    InventoryType(
        LISTENING_PORT,
        "1.0",
        ("Protocol", "Address", "Port", "ProcessName", "ProcessId", "User"),
        ("Protocol", "Address", "Port"),
        indexed="Port",
        numbers=frozenset({"Port", "ProcessId"}),
    ),
    InventoryType(
        USER,
        "1.0",
        ("Name", "Uid", "Gid", "Groups", "HomeDirectory", "Shell", "FullName", "LastLogin"),
        ("Name",),
        numbers=frozenset({"Uid", "Gid"}),
    ),
)

TYPES: Final[dict[str, InventoryType]] = {t.name: t for t in _TYPES}

# Custom inventory (AWS's limits, as PutInventory and the agent's custom folder apply them).
CUSTOM_PREFIX: Final = "Custom:"
CUSTOM_TYPE_RE: Final = re.compile(r"^Custom:[a-zA-Z0-9_\-.]{1,93}$")
CUSTOM_MAX_TYPES: Final = 20  # custom types per node
CUSTOM_MAX_ATTRIBUTES: Final = 50  # attributes per custom type
CUSTOM_MAX_BYTES: Final = 200 * 1024  # one custom type's content, as JSON
CUSTOM_MAX_ITEMS: Final = 10_000  # items of one custom type
ATTRIBUTE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_\-.: ]{1,64}$")
VALUE_MAX_CHARS: Final = 4096  # one attribute's value (longer ones are cut where made)
RESERVED_PREFIXES: Final = ("AWS:", "Corral:")

# Every type's items on one node: at most this many (a bigger collection is cut, and the
# cut reported in the step's output).
MAX_ITEMS_PER_TYPE: Final = 100_000
# The JSON (ASCII-escaped) of one inventory_part's items stays under this.
PART_MAX_BYTES: Final = 192 * 1024
# One type's content in parts: at most this many (so at most ~12 MiB of it).
MAX_PARTS: Final = 64


def indexed_attribute(type_name: str) -> str:
    """The attribute held in the server's indexed column (a custom type's: Name)."""
    known = TYPES.get(type_name)
    if known is None:
        return "Name"
    return known.indexed or ""


def is_custom(type_name: str) -> bool:
    return type_name.startswith(CUSTOM_PREFIX)


def known_type(type_name: str) -> InventoryType | None:
    """The built-in type called ``type_name``; None for a custom one or an unknown name."""
    return TYPES.get(type_name)
