"""`corral inventory ...` against a mocked API: the requests sent (paths, query, bodies,
paging), the tables and JSON printed, and the bad input refused before anything is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from control_plane.cli import inventory as inv
from control_plane.cli import inventory_args
from control_plane.cli.context import Runtime
from control_plane.cli.main import cli
from control_plane.cli.profiles import save_profile
from tests.unit.test_cli_parameters import usage_error

URL = "https://corral.test:8443"
NODE = "mi-0123456789abcdef0"
OTHER = "mi-0000000000000000a"
Reply = Any | Callable[[httpx.Request], Any]


@pytest.fixture(autouse=True)
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "config.toml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    save_profile("dev", url=URL, token="crl_t", ca_file="/ca.pem", path=path)


class Api:
    """Answers ``(METHOD, path)`` with its reply (or ``reply(request)``); remembers requests.
    A route with a list of replies answers them in turn (pages)."""

    def __init__(self, routes: dict[tuple[str, str], Reply], status: int = 200) -> None:
        self.routes = routes
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = (request.method, request.url.raw_path.decode().split("?")[0])
        if route not in self.routes:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "nope"}})
        reply = self.routes[route]
        if isinstance(reply, list) and reply and isinstance(reply[0], Page):
            reply = reply.pop(0).body
        if callable(reply):
            reply = reply(request)
        return httpx.Response(self.status, json=reply)

    def query(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(urlsplit(str(self.requests[index].url)).query)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].read())

    def sent(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.raw_path.decode().split("?")[0]) for r in self.requests]


class Page:
    def __init__(self, body: Any) -> None:
        self.body = body


def run(api: Api, *args: str, stdin: str | None = None) -> Result:
    runtime = Runtime(transport=httpx.MockTransport(api))
    return CliRunner().invoke(cli, ["inventory", *args], obj=runtime, input=stdin)


def ok(api: Api, *args: str, stdin: str | None = None) -> Result:
    result = run(api, *args, stdin=stdin)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def rows(result: Result) -> list[list[str]]:
    """A table's lines split on blanks, the rule under the header left out."""
    lines = result.stdout.splitlines()
    return [lines[0].split(), *(line.split() for line in lines[2:])]


OPENSSL = {
    "Name": "openssl", "Version": "3.0.2-0ubuntu1.10", "Architecture": "amd64",
    "PackageManager": "dpkg", "Publisher": "Ubuntu Developers", "Summary": "Secure Sockets "
    "Layer toolkit - cryptographic utility", "URL": "https://www.openssl.org/",
}  # fmt: skip
CURL = {"Name": "curl", "Version": "7.81.0-1", "Architecture": "amd64", "PackageManager": "dpkg"}
NODE_INVENTORY = {
    "node_id": NODE,
    "capture_time": "2026-12-01T09:00:00Z",
    "received_at": "2026-12-01T09:00:02Z",
    "types": [
        {"type_name": "AWS:Application", "item_count": 812, "content_hash": "sha256:ab",
         "capture_time": "2026-12-01T09:00:00Z", "updated_at": "2026-11-30T12:00:00Z"},
        {"type_name": "Corral:ListeningPort", "item_count": 3, "content_hash": "sha256:cd",
         "capture_time": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:01Z"},
    ],
    "errors": [{"source": "AWS:Service", "reason": "systemd is not running"}],
}  # fmt: skip


# show ---------------------------------------------------------------------------------------
def test_show_lists_the_node_types_with_counts_and_the_gathering_errors_on_stderr() -> None:
    api = Api({("GET", f"/v1/inventory/nodes/{NODE}"): NODE_INVENTORY})
    result = ok(api, "show", NODE)
    assert rows(result) == [
        ["type_name", "items", "capture_time", "updated_at"],
        ["AWS:Application", "812", "2026-12-01T09:00:00Z", "2026-11-30T12:00:00Z"],
        ["Corral:ListeningPort", "3", "2026-12-01T09:00:00Z", "2026-12-01T09:00:01Z"],
    ]
    assert result.stderr == "warning: AWS:Service: systemd is not running\n"
    assert json.loads(ok(api, "show", NODE, "-o", "json").stdout) == NODE_INVENTORY


def test_show_of_a_node_without_inventory_says_how_to_gather_it() -> None:
    empty = {**NODE_INVENTORY, "types": [], "errors": [], "capture_time": None}
    result = ok(Api({("GET", f"/v1/inventory/nodes/{NODE}"): empty}), "show", NODE)
    assert "no inventory from mi-0123456789abcdef0 yet" in result.stderr
    assert "corral inventory enable" in result.stderr


def test_a_node_may_be_named_and_the_name_must_be_one_node() -> None:
    def nodes(request: httpx.Request) -> Any:
        name = parse_qs(urlsplit(str(request.url)).query)["targets"][0]
        found = {"name:web-3": [{"node_id": NODE}], "name:db": [{"node_id": NODE}] * 2}
        return {"nodes": found.get(name, []), "next_token": None}

    api = Api(
        {
            ("GET", "/v1/nodes"): nodes,
            ("GET", f"/v1/inventory/nodes/{NODE}/changes"): {"changes": [], "next_token": None},
        }
    )
    ok(api, "changes", "web-3")
    assert api.sent() == [("GET", "/v1/nodes"), ("GET", f"/v1/inventory/nodes/{NODE}/changes")]
    assert api.query(0)["limit"] == ["2"]
    for name, message in [
        ("db", "error: several nodes are named 'db': give the id of one\n"),
        ("nope", "error: no node is named 'nope' (give its name or its id, mi-...)\n"),
    ]:
        result = run(api, "show", name)
        assert (result.exit_code, result.stderr) == (1, message)
    run(api, "show", "web-*")  # a name, not a glob
    assert api.query()["targets"] == ["name:web-[*]"]


def test_show_type_pages_through_the_items_in_schema_order_without_long_text() -> None:
    path = f"/v1/inventory/nodes/{NODE}/items"
    api = Api(
        {
            ("GET", path): [
                Page({"items": [OPENSSL], "next_token": "t1"}),
                Page({"items": [CURL], "next_token": None}),
            ]
        }
    )
    result = ok(api, "show", NODE, "--type", "AWS:Application")
    assert [api.query(i).get("next_token") for i in (0, 1)] == [None, ["t1"]]
    assert api.query(0)["type"] == ["AWS:Application"]
    header, first, second = rows(result)
    # Schema order; Summary and URL (long text) left out of the table
    assert header == ["Name", "Publisher", "Version", "Architecture", "PackageManager"]
    assert first[:2] == ["openssl", "Ubuntu"] and "toolkit" not in result.stdout
    assert second == ["curl", "-", "7.81.0-1", "amd64", "dpkg"]
    chosen = ok(api_pages(path, [OPENSSL]), "show", NODE, "--type", "AWS:Application",
                "--attributes", "Name,URL")  # fmt: skip
    assert rows(chosen) == [["Name", "URL"], ["openssl", "https://www.openssl.org/"]]
    everything = ok(api_pages(path, [OPENSSL]), "show", NODE, "--type", "AWS:Application",
                    "-o", "json")  # fmt: skip
    assert json.loads(everything.stdout) == [OPENSSL]


def api_pages(path: str, items: list[dict[str, str]]) -> Api:
    return Api({("GET", path): {"items": items, "next_token": None}})


def test_show_of_a_custom_type_shows_its_attributes_as_they_come() -> None:
    rack = {"RackName": "r12", "Slot": "4", "Room": "B"}
    api = api_pages(f"/v1/inventory/nodes/{NODE}/items", [rack, {"RackName": "r13", "Cage": "9"}])
    result = ok(api, "show", NODE, "--type", "Custom:RackInfo", "--max-items", "5")
    assert rows(result) == [
        ["RackName", "Slot", "Room", "Cage"],
        ["r12", "4", "B", "-"],
        ["r13", "-", "-", "9"],
    ]
    assert api.query()["limit"] == ["5"]


# list and summary ---------------------------------------------------------------------------
def test_list_passes_each_filter_as_written_and_shows_the_node_of_each_item() -> None:
    found = [
        {"node_id": NODE, "type_name": "AWS:Application", "item": OPENSSL},
        {"node_id": OTHER, "type_name": "AWS:Application", "item": {**OPENSSL, "Version": "3.0.2"}},
    ]
    api = Api({("GET", "/v1/inventory/items"): {"items": found, "next_token": None}})
    result = ok(
        api, "list", "--type", "AWS:Application", "--filter", "Name=openssl,libssl3",
        "--filter", "Version<3.0.8", "--attributes", "Name,Version",
    )  # fmt: skip
    query = api.query()
    assert query["type"] == ["AWS:Application"]
    assert query["filter"] == ["Name=openssl,libssl3", "Version<3.0.8"]
    assert rows(result) == [
        ["node_id", "Name", "Version"],
        [NODE, "openssl", "3.0.2-0ubuntu1.10"],
        [OTHER, "openssl", "3.0.2"],
    ]
    assert json.loads(ok(api, "list", "--type", "AWS:Application", "-o", "json").stdout) == found


def test_summary_counts_per_group_across_pages_and_warns_when_the_server_cut_them() -> None:
    groups = [
        {"values": {"Name": "openssl", "Version": "3.0.2-0ubuntu1.10"}, "nodes": 41, "items": 41},
        {"values": {"Name": "openssl", "Version": "3.0.13-0ubuntu3"}, "nodes": 3, "items": 3},
    ]
    page = {"type_name": "AWS:Application", "group_by": ["Name", "Version"]}
    api = Api(
        {
            ("GET", "/v1/inventory/summary"): [
                Page({**page, "groups": groups[:1], "next_token": "g1", "truncated": False}),
                Page({**page, "groups": groups[1:], "next_token": None, "truncated": True}),
            ]
        }
    )
    result = ok(
        api, "summary", "--type", "AWS:Application", "--group-by", "Name, Version",
        "--filter", "Name=openssl",
    )  # fmt: skip
    assert api.query(0)["group_by"] == ["Name,Version"]
    assert api.query(0)["filter"] == ["Name=openssl"]
    assert api.query(1)["next_token"] == ["g1"]
    assert rows(result) == [
        ["Name", "Version", "nodes", "items"],
        ["openssl", "3.0.2-0ubuntu1.10", "41", "41"],
        ["openssl", "3.0.13-0ubuntu3", "3", "3"],
    ]
    assert "too many groups" in result.stderr and "--filter" in result.stderr
    again = Api({("GET", "/v1/inventory/summary"): {**page, "groups": groups, "next_token": None}})
    out = ok(again, "summary", "--type", "AWS:Application", "--group-by", "Name,Version", "-o",
             "json")  # fmt: skip
    assert json.loads(out.stdout) == groups and out.stderr == ""


# changes ------------------------------------------------------------------------------------
NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("7d", "2026-11-27T12:00:00Z"),
        ("12h", "2026-12-04T00:00:00Z"),
        ("30m", "2026-12-04T11:30:00Z"),
        ("2w", "2026-11-20T12:00:00Z"),
        ("2026-12-01", "2026-12-01T00:00:00Z"),
        ("2026-12-01T09:30:00Z", "2026-12-01T09:30:00Z"),
        ("2026-12-01T10:30:00+01:00", "2026-12-01T09:30:00Z"),
    ],
)
def test_since_is_a_duration_before_now_a_date_or_a_time(text: str, since: str) -> None:
    assert inventory_args.parse_since(text, NOW) == since


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7", "expected a duration"),
        ("7 days", "expected a duration"),
        ("tuesday", "expected a duration"),
        ("2026-02-30", "not a date"),
        ("2026-12-01T09:30:00", "give a time zone"),
    ],
)
def test_a_bad_since_is_refused(text: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        inventory_args.parse_since(text, NOW)


CHANGES = [
    {"time": "2026-12-02T09:00:00Z", "type_name": "AWS:Application", "change": "changed",
     "key": {"PackageManager": "dpkg", "Name": "openssl", "Architecture": "amd64"},
     "old": {**CURL, "Name": "openssl", "Version": "3.0.2-0ubuntu1.10"},
     "new": {**CURL, "Name": "openssl", "Version": "3.0.2-0ubuntu1.12"}},
    {"time": "2026-12-02T09:00:00Z", "type_name": "AWS:Application", "change": "added",
     "key": {"PackageManager": "dpkg", "Name": "curl", "Architecture": "amd64"},
     "old": None, "new": CURL},
    {"time": "2026-12-01T09:00:00Z", "type_name": "Corral:ListeningPort", "change": "removed",
     "key": {"Protocol": "tcp", "Address": "0.0.0.0", "Port": "5432"},
     "old": {"Protocol": "tcp", "Address": "0.0.0.0", "Port": "5432"}, "new": None},
    {"time": "2026-11-30T09:00:00Z", "type_name": "Custom:RackInfo", "change": "deleted",
     "key": {}, "old": {"items": 2}, "new": None},
    {"time": "2026-11-29T09:00:00Z", "type_name": "AWS:Application", "change": "captured",
     "key": {}, "old": None, "new": {"items": 812}},
]  # fmt: skip


def test_changes_sends_since_and_says_what_each_change_did() -> None:
    path = f"/v1/inventory/nodes/{NODE}/changes"
    api = Api({("GET", path): {"changes": CHANGES, "next_token": None}})
    result = ok(api, "changes", NODE, "--since", "7d", "--type", "AWS:Application")
    query = api.query()
    assert query["type"] == ["AWS:Application"]
    sent = datetime.fromisoformat(query["since"][0])
    assert query["since"][0].endswith("Z") and sent.tzinfo is not None
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["time", "type_name", "change", "key", "detail"]
    assert lines[2].endswith("Version: 3.0.2-0ubuntu1.10 -> 3.0.2-0ubuntu1.12")
    assert "Name=openssl" in lines[2]
    assert lines[3].endswith("Version=7.81.0-1")
    assert lines[4].split()[2:] == ["removed", "Address=0.0.0.0,", "Port=5432,", "Protocol=tcp",
                                    "-"]  # fmt: skip
    assert lines[5].split()[2:] == ["deleted", "-", "2", "items"]
    assert lines[6].split()[2:] == ["captured", "-", "first", "capture:", "812", "items"]
    everything = ok(api, "changes", NODE, "-o", "json")
    assert "since" not in api.query()
    assert json.loads(everything.stdout) == CHANGES


# schema -------------------------------------------------------------------------------------
PORT_SCHEMA = {
    "type_name": "Corral:ListeningPort", "version": "1.0",
    "attributes": [{"name": "Protocol", "data_type": "STRING"},
                   {"name": "Port", "data_type": "NUMBER"}],
    "key": ["Protocol", "Address", "Port"], "custom": False,
    "platforms": ["Linux", "MacOS", "Windows"], "gathered_by": "agent",
}  # fmt: skip
RACK_SCHEMA = {
    "type_name": "Custom:RackInfo", "version": "1.0",
    "attributes": [{"name": "RackName", "data_type": "STRING"}], "key": [], "custom": True,
    "platforms": ["Linux", "MacOS", "Windows"], "gathered_by": "agent",
}  # fmt: skip


def test_schema_lists_the_types_and_one_type_its_attributes() -> None:
    api = Api({("GET", "/v1/inventory/schema"): {"types": [PORT_SCHEMA, RACK_SCHEMA]}})
    table = rows(ok(api, "schema"))
    assert table[0] == [
        "type_name", "version", "key", "attributes", "platforms", "gathered_by", "custom",
    ]  # fmt: skip
    assert table[1][:4] == ["Corral:ListeningPort", "1.0", "Protocol,", "Address,"]
    assert table[2] == ["Custom:RackInfo", "1.0", "-", "1", "Linux,", "MacOS,", "Windows",
                        "agent", "yes"]  # fmt: skip
    one = Api({("GET", "/v1/inventory/schema"): {"types": [PORT_SCHEMA]}})
    assert rows(ok(one, "schema", "--type", "Corral:ListeningPort")) == [
        ["name", "data_type", "key"],
        ["Protocol", "STRING", "yes"],
        ["Port", "NUMBER", "yes"],
    ]
    assert one.query()["type"] == ["Corral:ListeningPort"]
    assert json.loads(ok(one, "schema", "-o", "json").stdout) == [PORT_SCHEMA]


def test_a_schema_answer_without_types_is_a_bad_response() -> None:
    result = run(Api({("GET", "/v1/inventory/schema"): {"kinds": []}}), "schema")
    assert result.exit_code == 1 and "without the 'types' list" in result.stderr


# delete -------------------------------------------------------------------------------------
DELETE_PATH = "/v1/inventory/types/Custom%3ARackInfo"


def test_delete_with_yes_deletes_and_says_how_much() -> None:
    api = Api({("DELETE", DELETE_PATH): {"type_name": "Custom:RackInfo", "nodes": 4, "items": 9}})
    result = ok(api, "delete", "--type", "Custom:RackInfo", "--yes")
    assert result.stdout == "deleted Custom:RackInfo: 9 items on 4 nodes\n"
    assert api.sent() == [("DELETE", DELETE_PATH)]
    done = json.loads(ok(api, "delete", "--type", "Custom:RackInfo", "--yes", "-o", "json").stdout)
    assert done == {"type_name": "Custom:RackInfo", "nodes": 4, "items": 9}


def test_delete_asks_at_a_terminal_and_needs_yes_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Api({("DELETE", DELETE_PATH): {"type_name": "Custom:RackInfo", "nodes": 1, "items": 1}})
    assert "needs --yes" in usage_error(run(api, "delete", "--type", "Custom:RackInfo"))
    monkeypatch.setattr(inv, "_can_ask", lambda: True)
    refused = run(api, "delete", "--type", "Custom:RackInfo", stdin="n\n")
    assert refused.exit_code == 1 and refused.stderr.endswith("error: aborted\n")
    assert api.requests == []
    confirmed = ok(api, "delete", "--type", "Custom:RackInfo", stdin="y\n")
    assert "Delete Custom:RackInfo from every node?" in confirmed.stderr
    assert api.sent() == [("DELETE", DELETE_PATH)]


# enable -------------------------------------------------------------------------------------
EXISTING = {
    "association_id": "a-1", "name": "corral-inventory", "version": 3,
    "document": "AWS-GatherSoftwareInventory", "document_version": None, "targets": ["all"],
    "parameters": {"users": "Disabled"}, "schedule": "rate(30 minutes)", "max_errors": "100%",
}  # fmt: skip
OTHER_ASSOCIATION = {**EXISTING, "association_id": "a-0", "name": "motd"}


def test_enable_creates_the_association_with_the_defaults() -> None:
    def create(request: httpx.Request) -> Any:
        return {**json.loads(request.read()), "association_id": "a-9", "version": 1}

    api = Api(
        {
            ("GET", "/v1/associations"): {"associations": [OTHER_ASSOCIATION]},
            ("POST", "/v1/associations"): create,
        }
    )
    result = ok(api, "enable")
    assert api.body() == {
        "name": "corral-inventory",
        "document": "AWS-GatherSoftwareInventory",
        "targets": ["all"],
        "schedule": "rate(30 minutes)",
        "parameters": {},
        "max_errors": "100%",
    }
    assert result.stdout.splitlines()[0] == (
        "inventory created: association corral-inventory (id a-9, version 1): "
        "AWS-GatherSoftwareInventory rate(30 minutes) on all"
    )
    ok(
        api, "enable", "--targets", "Key=tag:role,Values=web,db", "--targets", "name:db-*",
        "--schedule", "rate(1 hour)", "--param", "files=[{\"Path\": \"/etc\"}]",
        "--param", "windowsUpdates=Disabled",
    )  # fmt: skip
    body = api.body()
    assert body["targets"] == ["tag:role=web,db", "name:db-*"]
    assert body["schedule"] == "rate(1 hour)"
    assert body["parameters"] == {"files": '[{"Path": "/etc"}]', "windowsUpdates": "Disabled"}


def test_enable_changes_only_what_is_given_of_an_existing_one() -> None:
    def update(request: httpx.Request) -> Any:
        return {**EXISTING, **json.loads(request.read()), "version": 4}

    api = Api(
        {
            ("GET", "/v1/associations"): {"associations": [OTHER_ASSOCIATION, EXISTING]},
            ("PATCH", "/v1/associations/a-1"): update,
        }
    )
    unchanged = ok(api, "enable", "--schedule", "rate(30 minutes)", "--targets", "all")
    assert api.sent() == [("GET", "/v1/associations")]
    assert unchanged.stdout.startswith("inventory unchanged: association corral-inventory")
    ok(api, "enable", "--param", "applications=Disabled", "--targets", "Key=InstanceIds,Values="
       f"{NODE},{OTHER}")  # fmt: skip
    assert api.sent()[-1] == ("PATCH", "/v1/associations/a-1")
    assert api.body() == {
        "targets": [NODE, OTHER],
        "parameters": {"users": "Disabled", "applications": "Disabled"},  # merged
        "expect_version": 3,
    }
    result = json.loads(ok(api, "enable", "--schedule", "rate(2 hours)", "-o", "json").stdout)
    assert api.body() == {"schedule": "rate(2 hours)", "expect_version": 3}
    assert result["version"] == 4


def test_enable_points_an_association_of_another_document_back_at_inventory() -> None:
    moved = {**EXISTING, "document": "AWS-RunShellScript", "document_version": "2"}
    api = Api(
        {
            ("GET", "/v1/associations"): {"associations": [moved]},
            ("PATCH", "/v1/associations/a-1"): {**EXISTING, "version": 4},
        }
    )
    ok(api, "enable")
    assert api.body() == {
        "document": "AWS-GatherSoftwareInventory",
        "clear": ["document_version"],
        "expect_version": 3,
    }


@pytest.mark.parametrize(
    ("target", "spec"),
    [
        ("Key=tag:env,Values=prod", ["tag:env=prod"]),
        ("Key=tag-key,Values=env,team", ["tag-key:env", "tag-key:team"]),
        ("Key=resource-groups:Name,Values=web", ["group:web"]),
        ("platform:Linux", ["platform:Linux"]),
    ],
)
def test_aws_targets_become_corral_specs(target: str, spec: list[str]) -> None:
    assert inventory_args.aws_target(target) == spec


# bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", NODE, "--type", "aws:application"), "did you mean AWS:Application?"),
        (("show", NODE, "--type", "Application"), "did you mean AWS:Application?"),
        (("show", NODE, "--type", "Packages"), "known: AWS:InstanceInformation"),
        (("show", NODE, "--type", "Custom:a b"), "a custom type is Custom:NAME"),
        (("show", NODE, "--type", "AWS:Service", "--attributes", "Name,,Status"), "commas"),
        (("list", "--filter", "Name=openssl"), "Missing option '--type'"),
        (("list", "--type", "AWS:Application", "--filter", "openssl"), "expected KEY=VALUE"),
        (("list", "--type", "AWS:Application", "--filter", "Name="), "expected KEY=VALUE"),
        (("list", "--type", "AWS:Application", "--filter", "=x"), "expected KEY=VALUE"),
        (
            ("list", "--type", "AWS:Application", *["--filter", "Name=a"] * 11),
            "at most 10 filters",
        ),
        (("summary", "--type", "AWS:Application"), "Missing option '--group-by'"),
        (("summary", "--type", "AWS:Application", "--group-by", "Name,"), "commas"),
        (("summary", "--type", "AWS:Application", "--group-by", "Name,Name"), "twice"),
        (("summary", "--type", "AWS:Application", "--group-by", "A,B,C,D,E,F"), "at most 5"),
        (("changes", NODE, "--since", "last tuesday"), "expected a duration"),
        (("delete", "--type", "AWS:Application", "--yes"), "only Custom:NAME"),
        (("delete", "--yes"), "Missing option '--type'"),
        (("enable", "--targets", "Key=tag:role"), "Key=KEY,Values=V1"),
        (("enable", "--targets", "Key=Platform,Values=Linux"), "target key 'Platform'"),
        (("enable", "--param", "applications"), "must be NAME=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(args: tuple[str, ...], message: str) -> None:
    api = Api({})
    assert message in usage_error(run(api, *args))
    assert api.requests == []


def test_a_refusal_by_the_server_is_one_line() -> None:
    error = {
        "error": {
            "code": "invalid_request",
            "message": "filter 'Colour=red': AWS:Application has no attribute 'Colour' "
            "(its attributes: Name, ...)",
        }
    }
    api = Api({("GET", "/v1/inventory/items"): error}, status=400)
    result = run(api, "list", "--type", "AWS:Application", "--filter", "Colour=red")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: filter 'Colour=red': AWS:Application has no attribute 'Colour' "
        "(its attributes: Name, ...) (invalid_request)\n"
    )
