"""The system collectors: on this machine for real (instance information, CPU, network,
services, listening ports, users), in throw-away roots for the files they read, and macOS's
and Windows' against output recorded from their tools, replayed through ``ctx.run``."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.inventory import registry, schema
from agent.inventory.base import CollectContext, CollectError, Item
from agent.tools import Completed, run_tool

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inventory"


def linux(root: Path = Path("/"), **kw: object) -> CollectContext:
    return CollectContext(platform="Linux", run=run_tool, root=root, node_id="mi-0123456789abcdef0",
                          agent_version="0.9", **kw)  # type: ignore[arg-type]  # fmt: skip


def collect(type_name: str, ctx: CollectContext) -> list[Item]:
    found = registry.collector(type_name, ctx.platform)
    assert found is not None
    items = found(ctx)
    allowed = set(schema.TYPES[type_name].all_attributes)
    for item in items:
        assert set(item) <= allowed, item
        assert all(isinstance(v, str) and v for v in item.values()), item
    return items


def replay(outputs: Mapping[str, str], platform: str) -> CollectContext:
    """A context whose tools answer with recorded output, by their first words."""

    def run(argv: list[str], _env: Mapping[str, str], _timeout: float) -> Completed:
        line = " ".join(argv)
        for prefix, out in outputs.items():
            if line.startswith(prefix) or prefix in line:
                return Completed(tuple(argv), 0, out, "")
        return Completed(tuple(argv), 1, "", f"{argv[0]}: not recorded")

    return CollectContext(platform=platform, run=run)


# This machine ------------------------------------------------------------------------------
def test_instance_information_is_this_node() -> None:
    (item,) = collect(schema.INSTANCE_INFORMATION, linux())
    assert item["InstanceId"] == "mi-0123456789abcdef0" and item["AgentVersion"] == "0.9"
    assert item["ComputerName"] == socket.gethostname() and item["PlatformType"] == "Linux"


def test_cpu_matches_the_kernels_count() -> None:
    (item,) = collect(schema.INSTANCE_DETAILED_INFORMATION, linux())
    assert int(item["CPUs"]) == os.cpu_count()
    assert int(item["CPUCores"]) <= int(item["CPUs"]) and item["CPUModel"]


def test_network_lists_the_interfaces_with_their_addresses() -> None:
    import psutil

    items = {i["Name"]: i for i in collect(schema.NETWORK, linux())}
    assert "lo" not in items
    for name, addrs in psutil.net_if_addrs().items():
        v4 = [a.address for a in addrs if a.family == socket.AF_INET]
        if name in items and v4:
            assert items[name]["IPV4"].split(",") == v4


def test_network_gateway_and_dns_in_a_root(tmp_path: Path) -> None:
    (tmp_path / "proc" / "net").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    iface = next(n for n in __import__("psutil").net_if_addrs() if n != "lo")
    gateway = struct.unpack("<L", socket.inet_aton("10.1.2.254"))[0]
    (tmp_path / "proc" / "net" / "route").write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
        f"{iface}\t00000000\t{gateway:08X}\t0003\t0\t0\t0\t00000000\n"
        f"{iface}\t0002010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
    )
    (tmp_path / "etc" / "resolv.conf").write_text(
        "# a comment\nsearch lan\nnameserver 10.1.2.53\nnameserver 2001:db8::53  # second\n"
    )
    items = {i["Name"]: i for i in collect(schema.NETWORK, linux(tmp_path))}
    assert items[iface]["Gateway"] == "10.1.2.254"
    assert items[iface]["DNSServer"] == "10.1.2.53,2001:db8::53"


def test_services_come_from_systemd_unit_files() -> None:
    listed = subprocess.run(
        ["systemctl", "list-unit-files", "--type=service", "--output=json", "--no-pager"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        pytest.skip("systemctl cannot list unit files here")
    ctx = linux()
    items = {i["Name"]: i for i in collect(schema.SERVICE, ctx)}
    expected = {
        u["unit_file"].removesuffix(".service"): u["state"]
        for u in json.loads(listed.stdout)
        if not u["unit_file"].endswith("@.service") and u["state"] != "alias"
    }
    assert set(items) == set(expected)
    for name, state in expected.items():
        wanted = {"enabled": "Automatic", "disabled": "Disabled", "masked": "Disabled"}
        assert items[name]["StartType"] == wanted.get(state, "Manual" if state in (
            "static", "indirect", "generated", "transient") else state)  # fmt: skip


def test_no_systemd_is_one_line(tmp_path: Path) -> None:
    def missing(argv: list[str], _env: Mapping[str, str], _t: float) -> Completed:
        raise FileNotFoundError(argv[0])

    ctx = CollectContext(platform="Linux", run=missing)
    with pytest.raises(CollectError, match="no systemd"):
        collect(schema.SERVICE, ctx)


def test_a_listening_socket_of_ours_is_listed_with_its_process() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = str(server.getsockname()[1])
        items = collect(schema.LISTENING_PORT, linux())
    (ours,) = [i for i in items if i["Port"] == port and i["Protocol"] == "tcp"]
    assert ours["Address"] == "127.0.0.1" and ours["ProcessId"] == str(os.getpid())
    import psutil

    assert ours["ProcessName"] == psutil.Process().name()


def test_users_from_passwd_group_and_lastlog(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "ada:x:1000:1000:Ada Lovelace,,,:/home/ada:/bin/zsh\n"
        "broken line\n"
    )
    (etc / "group").write_text("root:x:0:\nada:x:1000:\nsudo:x:27:ada\nadm:x:4:ada,root\n")
    log = tmp_path / "var" / "log"
    log.mkdir(parents=True)
    record = struct.pack("=i32s256s", 1_764_316_800, b"pts/0", b"192.0.2.9")
    with (log / "lastlog").open("wb") as fh:
        fh.seek(1000 * len(record))
        fh.write(record)
    ctx = linux(tmp_path)
    users = {u["Name"]: u for u in collect(schema.USER, ctx)}
    assert users["ada"] == {
        "Name": "ada", "Uid": "1000", "Gid": "1000", "Groups": "ada,adm,sudo",
        "HomeDirectory": "/home/ada", "Shell": "/bin/zsh", "FullName": "Ada Lovelace",
        "LastLogin": "2025-11-28T08:00:00Z",
    }  # fmt: skip
    assert "LastLogin" not in users["root"] and users["root"]["Groups"] == "adm,root"
    assert any("line 3" in w for w in ctx.warnings)


def test_users_on_this_machine_match_passwd() -> None:
    names = [line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines() if line]
    assert [u["Name"] for u in collect(schema.USER, linux())] == names


# Recorded output ---------------------------------------------------------------------------
def test_macos_services_users_cpu_and_network_from_recorded_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    darwin = FIXTURES / "darwin"
    ctx = replay(
        {
            "launchctl list": (darwin / "launchctl_list.txt").read_text(),
            "dscl": (darwin / "dscl_readall_users.plist").read_text(),
            "sysctl -n machdep.cpu.brand_string": "Apple M2 Pro\n",
            "sysctl -n hw.logicalcpu": "12\n",
            "sysctl -n hw.physicalcpu": "12\n",
            "sysctl -n hw.packages": "1\n",
            "route -n get default": (darwin / "route_get_default.txt").read_text(),
            "scutil --dns": (darwin / "scutil_dns.txt").read_text(),
        },
        "MacOS",
    )
    services = {s["Name"]: s["Status"] for s in collect(schema.SERVICE, ctx)}
    assert services == {
        "com.apple.SafariHistoryServiceAgent": "Stopped", "com.apple.Finder": "Running",
        "com.apple.bird": "Stopped", "com.openssh.ssh-agent": "Running",
    }  # fmt: skip
    users = collect(schema.USER, ctx)
    assert [u["Name"] for u in users] == ["nobody", "ada"]
    assert users[1] == {"Name": "ada", "Uid": "501", "Gid": "20", "HomeDirectory": "/Users/ada",
                        "Shell": "/bin/zsh", "FullName": "Ada Lovelace"}  # fmt: skip
    (cpu,) = collect(schema.INSTANCE_DETAILED_INFORMATION, ctx)
    assert cpu == {"CPUModel": "Apple M2 Pro", "CPUs": "12", "CPUCores": "12",
                   "CPUSockets": "1", "CPUHyperThreadEnabled": "false"}  # fmt: skip
    from agent.inventory.network import _darwin

    assert _darwin.gateways((darwin / "route_get_default.txt").read_text()) == {
        "en0": "192.168.1.1"
    }
    assert _darwin.dns((darwin / "scutil_dns.txt").read_text()) == ["192.168.1.1", "2001:db8::53"]


def test_windows_services_users_and_cpu_from_recorded_output() -> None:
    windows = FIXTURES / "windows"
    ctx = replay(
        {
            "Get-Service": (windows / "get_service.json").read_text(),
            "Get-LocalUser": (windows / "get_localuser.json").read_text(),
            "Win32_Processor": (windows / "win32_processor.json").read_text(),
        },
        "Windows",
    )
    services = {s["Name"]: s for s in collect(schema.SERVICE, ctx)}
    assert services["Dnscache"]["ServicesDependedOn"] == "nsi Tdx"
    assert services["RemoteRegistry"]["StartType"] == "Disabled"
    users = {u["Name"]: u for u in collect(schema.USER, ctx)}
    assert users["Administrator"] == {"Name": "Administrator", "Uid": "500",
                                      "Groups": "Administrators",
                                      "LastLogin": "2025-11-28T08:00:00Z"}  # fmt: skip
    assert "LastLogin" not in users["ada"] and users["ada"]["Uid"] == "1001"
    (cpu,) = collect(schema.INSTANCE_DETAILED_INFORMATION, ctx)
    assert (cpu["CPUs"], cpu["CPUCores"], cpu["CPUHyperThreadEnabled"]) == ("4", "2", "true")
    assert cpu["CPUSpeedMHz"] == "2500" and "OSServicePack" not in cpu


def test_a_failing_tool_is_one_line() -> None:
    ctx = replay({}, "MacOS")
    for type_name in (schema.SERVICE, schema.USER, schema.INSTANCE_DETAILED_INFORMATION):
        with pytest.raises(CollectError) as caught:
            collect(type_name, ctx)
        assert "\n" not in str(caught.value) and "not recorded" in str(caught.value)
