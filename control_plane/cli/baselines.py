"""``corral baselines``: patch baselines, each operating system's default, and patch groups
(docs/patching.md).

A baseline is AWS's CreatePatchBaseline JSON (or YAML): ``--file`` takes an SSM user's files
as they are (``aws ssm get-patch-baseline`` output too: its read-only keys are dropped), and
the flags override what the file says.  Every baseline is checked here, by the server's own
rules, before it is sent (a usage error, exit 2, naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import click

from agent.patching.baseline import COMPLIANCE_LEVELS, OPERATING_SYSTEMS, REJECTED_ACTIONS
from control_plane.cli.context import Runtime, max_items_option, output_option, pass_runtime
from control_plane.cli.errors import BadResponse
from control_plane.cli.output import Column, emit_json, emit_list, emit_message, emit_object
from control_plane.cli.output import field as column
from control_plane.cli.patch_args import (
    READ_ONLY,
    UpperChoice,
    check_baseline,
    flag_fields,
    group_callback,
    read_baseline_file,
)

if TYPE_CHECKING:
    from control_plane.cli.client import ApiClient

SHOW_FIELDS: Final = (
    "BaselineId", "Name", "OperatingSystem", "Description", "DefaultBaseline", "Predefined",
    "PatchGroups", "GlobalFilters", "ApprovedPatches", "ApprovedPatchesComplianceLevel",
    "ApprovedPatchesEnableNonSecurity", "RejectedPatches", "RejectedPatchesAction",
    "AvailableSecurityUpdatesComplianceStatus", "Sources", "CreatedDate", "ModifiedDate",
)  # fmt: skip
LIST_COLUMNS: list[Column] = [
    column("BaselineId"),
    ("name", lambda b: b.get("BaselineName")),
    column("OperatingSystem"),
    ("default", lambda b: b.get("DefaultBaseline")),
    ("predefined", lambda b: b.get("Predefined")),
    ("description", lambda b: b.get("BaselineDescription")),
]
GROUP_COLUMNS: list[Column] = [
    column("PatchGroup"), column("OperatingSystem"), column("BaselineId"),
]  # fmt: skip


def filters_text(group: Any) -> str:
    """``{PatchFilters: [{Key, Values}]}`` → ``CLASSIFICATION=Security; SEVERITY=Critical,High``."""
    found = group.get("PatchFilters") if isinstance(group, Mapping) else None
    parts = [
        f"{f.get('Key')}={','.join(str(v) for v in f.get('Values') or [])}"
        for f in found or []
        if isinstance(f, Mapping)
    ]
    return "; ".join(parts) or "(all)"


def approval_text(rule: Mapping[str, Any]) -> str:
    if rule.get("ApproveUntilDate"):
        return f"released until {rule['ApproveUntilDate']}"
    days = rule.get("ApproveAfterDays")
    if days:
        return f"{days} days after release"
    return "at once"


RULE_COLUMNS: list[Column] = [
    ("rule", lambda r: r.get("#")),
    ("filters", lambda r: filters_text(r.get("PatchFilterGroup"))),
    ("approved", approval_text),
    ("compliance_level", lambda r: r.get("ComplianceLevel")),
    ("non_security", lambda r: r.get("EnableNonSecurity")),
]


def _path(baseline: str, *rest: str) -> str:
    return "/".join(["/v1/baselines", quote(baseline, safe=""), *rest])


def _checked(api: ApiClient, data: Any, path: str, *keys: str) -> dict[str, Any]:
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise BadResponse(f"{api.url} answered {path} without {', '.join(keys)}")
    return data


operating_system_option = click.option(
    "--operating-system", type=UpperChoice(OPERATING_SYSTEMS),
    help="The baseline's operating system (AWS's names; ARCH and ALPINE are Corral's).",
)  # fmt: skip
file_option = click.option(
    "--file", "file_", metavar="FILE",
    help="AWS's CreatePatchBaseline JSON, or YAML (.yaml/.yml); - for stdin.  "
    "`aws ssm get-patch-baseline` output works as it is.",
)  # fmt: skip
COMMON_OPTIONS: Final = (
    click.option("--description", metavar="TEXT", help="What the baseline is for."),
    click.option(
        "--approved-patches",
        multiple=True,
        metavar="NAME[,NAME...]",
        help="Patches approved whatever the rules say (repeatable; '' clears the list).",
    ),
    click.option(
        "--rejected-patches",
        multiple=True,
        metavar="NAME[,NAME...]",
        help="Patches never approved (repeatable; '' clears the list).",
    ),
    click.option(
        "--rejected-patches-action",
        type=UpperChoice(REJECTED_ACTIONS),
        help="ALLOW_AS_DEPENDENCY (default) or BLOCK: never install, even as a dependency.",
    ),
    click.option(
        "--approved-patches-compliance-level",
        type=UpperChoice(COMPLIANCE_LEVELS),
        help="The compliance level of a missing approved patch.",
    ),
    click.option(
        "--approved-patches-enable-non-security/--no-approved-patches-enable-non-security",
        default=None,
        help="Install ApprovedPatches from non-security repositories too (Linux).",
    ),
)


def common_options(func: Any) -> Any:
    for option in reversed(COMMON_OPTIONS):
        func = option(func)
    return func


@click.group()
def baselines() -> None:
    """Patch baselines: which patches AWS-RunPatchBaseline approves, per operating system."""


@baselines.command()
@click.option("--name", metavar="NAME", help="The baseline's name (or Name in --file).")
@operating_system_option
@file_option
@common_options
@output_option
@pass_runtime
def create(rt: Runtime, /, file_: str | None, output: str, **fields: Any) -> None:
    """Create a patch baseline.

    `--name web --operating-system UBUNTU --approved-patches openssl`, or `--file
    baseline.json` (AWS's CreatePatchBaseline JSON or YAML); flags override the file.
    Without an operating system the baseline is for WINDOWS, as in AWS."""
    from_flags = flag_fields(fields)
    body = {**(read_baseline_file(file_) if file_ else {}), **from_flags}
    if "Name" not in body:
        raise click.UsageError("give the baseline a name: --name NAME (or Name in --file)")
    check_baseline(body, from_flags, file_given=file_ is not None)
    with rt.client() as api:
        made = _checked(api, api.post("/v1/baselines", body), "POST /v1/baselines", "BaselineId")
    emit_message(
        f"created patch baseline {made['BaselineId']} ({made.get('Name')}) for "
        f"{body.get('OperatingSystem', 'WINDOWS')}",
        made,
        output,
    )


@baselines.command()
@click.argument("baseline")
@click.option("--name", metavar="NAME", help="A new name.")
@file_option
@common_options
@output_option
@pass_runtime
def update(rt: Runtime, /, baseline: str, file_: str | None, output: str, **fields: Any) -> None:
    """Change a baseline: the fields given (in --file or by flags) replace its own.

    BASELINE: its id (pb-...) or its name.  The operating system cannot change."""
    from_flags = flag_fields(fields)
    changes = {**(read_baseline_file(file_) if file_ else {}), **from_flags}
    if not changes:
        raise click.UsageError("nothing to change: give --file or a flag (--description ...)")
    with rt.client() as api:
        current = _checked(api, api.get(_path(baseline)), "GET baseline", "BaselineId")
        kept = {k: v for k, v in current.items() if k not in READ_ONLY}
        check_baseline({**kept, **changes}, from_flags, file_given=file_ is not None)
        changed = api.patch(_path(str(current["BaselineId"])), changes)
    if output == "json":
        emit_json(changed)
        return
    click.echo(f"updated patch baseline {changed.get('BaselineId')} ({changed.get('Name')})")


@baselines.command()
@click.argument("baseline")
@output_option
@pass_runtime
def show(rt: Runtime, baseline: str, output: str) -> None:
    """A baseline: its fields, then its approval rules.  BASELINE: its id or its name."""
    with rt.client() as api:
        found = _checked(api, api.get(_path(baseline)), "GET baseline", "BaselineId")
    if output == "json":
        emit_json(found)
        return
    view = {k: v for k, v in found.items() if k != "ApprovalRules"}
    view["GlobalFilters"] = filters_text(found.get("GlobalFilters"))
    view["Sources"] = [s.get("Name") for s in found.get("Sources") or [] if isinstance(s, dict)]
    emit_object(view, output, SHOW_FIELDS)
    rules = (found.get("ApprovalRules") or {}).get("PatchRules") or []
    click.echo("")
    if not rules:
        click.echo("no approval rules: only ApprovedPatches are approved")
        return
    click.echo("approval rules (a patch is approved by the first that matches):")
    emit_list([{"#": i + 1, **r} for i, r in enumerate(rules)], RULE_COLUMNS, output)


@baselines.command("list")
@operating_system_option
@max_items_option
@output_option
@pass_runtime
def list_(rt: Runtime, operating_system: str | None, max_items: int | None, output: str) -> None:
    """The predefined baselines and yours, with each operating system's default."""
    params = {"operating_system": operating_system} if operating_system else {}
    with rt.client() as api:
        rows = api.get_list("/v1/baselines", "baselines", params=params, max_items=max_items)
    emit_list(rows, LIST_COLUMNS, output)


@baselines.command()
@click.argument("baseline")
@output_option
@pass_runtime
def delete(rt: Runtime, baseline: str, output: str) -> None:
    """Delete a baseline (not while it is a default or serves a patch group).

    BASELINE: its id or its name."""
    with rt.client() as api:
        found = _checked(api, api.get(_path(baseline)), "GET baseline", "BaselineId")
        done = api.delete(_path(str(found["BaselineId"])))
    emit_message(f"deleted patch baseline {(done or {}).get('BaselineId', baseline)}", done, output)


@baselines.command("set-default")
@click.argument("baseline")
@output_option
@pass_runtime
def set_default(rt: Runtime, baseline: str, output: str) -> None:
    """Make a baseline its operating system's default (nodes in no patch group use it)."""
    with rt.client() as api:
        done = _checked(
            api, api.post(_path(baseline, "default")), "POST default", "OperatingSystem"
        )
    emit_message(
        f"{done.get('BaselineId')} is now the default patch baseline for {done['OperatingSystem']}",
        done,
        output,
    )


group_argument = click.argument("group", callback=group_callback)


@baselines.command("register-patch-group")
@click.argument("baseline")
@group_argument
@output_option
@pass_runtime
def register_patch_group(rt: Runtime, baseline: str, group: str, output: str) -> None:
    """Nodes tagged `Patch Group` (or `PatchGroup`) = GROUP use BASELINE for its OS.

    A group has one baseline per operating system."""
    with rt.client() as api:
        done = api.post(_path(baseline, "patch-groups"), {"patch_group": group})
    emit_message(
        f"patch group {group!r} now uses {(done or {}).get('BaselineId', baseline)}", done, output
    )


@baselines.command("deregister-patch-group")
@click.argument("baseline")
@group_argument
@output_option
@pass_runtime
def deregister_patch_group(rt: Runtime, baseline: str, group: str, output: str) -> None:
    """GROUP stops using BASELINE: its nodes fall back to the OS's default."""
    with rt.client() as api:
        done = api.request("DELETE", _path(baseline, "patch-groups"), params={"patch_group": group})
    emit_message(
        f"patch group {group!r} no longer uses {(done or {}).get('BaselineId', baseline)}",
        done,
        output,
    )


@baselines.command()
@output_option
@pass_runtime
def groups(rt: Runtime, output: str) -> None:
    """Each patch group's baseline per operating system."""
    with rt.client() as api:
        data = _checked(api, api.get("/v1/patch/groups"), "GET /v1/patch/groups", "patch_groups")
    emit_list(data["patch_groups"], GROUP_COLUMNS, output)


@baselines.command()
@output_option
@pass_runtime
def defaults(rt: Runtime, output: str) -> None:
    """Each operating system's default baseline."""
    with rt.client() as api:
        data = _checked(api, api.get("/v1/patch/defaults"), "GET /v1/patch/defaults", "defaults")
    if output == "json":
        emit_json(data["defaults"])
        return
    rows = [{"OperatingSystem": k, "BaselineId": v} for k, v in data["defaults"].items()]
    emit_list(rows, [column("OperatingSystem"), column("BaselineId")], output)


EFFECTIVE_COLUMNS: list[Column] = [
    ("name", lambda e: e["Patch"].get("Name") or e["Patch"].get("Id")),
    ("arch", lambda e: e["Patch"].get("Arch")),
    ("installed", lambda e: e["Patch"].get("InstalledVersion")),
    ("available", lambda e: e["Patch"].get("Version")),
    ("classification", lambda e: e["Patch"].get("Classification")),
    ("severity", lambda e: e["Patch"].get("Severity")),
    ("status", lambda e: e["PatchStatus"].get("DeploymentStatus")),
    ("compliance_level", lambda e: e["PatchStatus"].get("ComplianceLevel")),
    ("approval_date", lambda e: e["PatchStatus"].get("ApprovalDate")),
    ("rule", lambda e: e["PatchStatus"].get("Rule")),
]


@baselines.command("describe-effective-patches")
@click.argument("baseline")
@click.option("--node", required=True, metavar="NODE", help="The node: its id or its name.")
@max_items_option
@output_option
@pass_runtime
def describe_effective_patches(
    rt: Runtime, baseline: str, node: str, max_items: int | None, output: str
) -> None:
    """What BASELINE would do with each update the node's last scan found, now.

    Approved, pending approval (released too recently), rejected or not approved, and by
    which rule; nothing is installed."""
    from control_plane.cli.inventory import node_id_of

    with rt.client() as api:
        node_id = node_id_of(api, node)
        found = effective_pages(api, node_id, baseline, max_items)
    if output == "json":
        emit_json(found)
        return
    click.echo(
        f"{found.get('BaselineId')} ({found.get('OperatingSystem')}) on {node_id} "
        f"({found.get('Product') or 'product unknown'}):"
    )
    emit_list(found["EffectivePatches"], EFFECTIVE_COLUMNS, output)


def effective_pages(
    api: ApiClient, node_id: str, baseline: str, max_items: int | None
) -> dict[str, Any]:
    """Every page of effective patches (up to ``max_items``), under the first page's header."""
    from control_plane.cli.client import PAGE_LIMIT

    path = f"/v1/patch/nodes/{quote(node_id, safe='')}/effective-patches"
    query: dict[str, Any] = {"baseline": baseline}
    head: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    while True:
        want = PAGE_LIMIT if max_items is None else min(PAGE_LIMIT, max_items - len(rows))
        data = api.get(path, params={**query, "limit": want})
        page = data.get("EffectivePatches") if isinstance(data, dict) else None
        if not isinstance(page, list) or not all(
            isinstance(e, dict) and isinstance(e.get("Patch"), dict)
            and isinstance(e.get("PatchStatus"), dict)
            for e in page
        ):  # fmt: skip
            raise BadResponse(f"{api.url} answered GET {path} without the EffectivePatches list")
        if head is None:
            head = {k: v for k, v in data.items() if k not in ("EffectivePatches", "next_token")}
        rows.extend(page)
        token = data.get("next_token")
        if not isinstance(token, str) or not token or (max_items and len(rows) >= max_items):
            return {**head, "EffectivePatches": rows[:max_items] if max_items else rows}
        if token == query.get("next_token"):
            raise BadResponse(f"{api.url} gave the same next_token twice for GET {path}")
        query["next_token"] = token
