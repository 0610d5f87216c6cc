"""`corral associations` against the real control plane, in process (the bridge of
test_cli_parameters.py): every command, its JSON output, a stale --expect-version, and usage
errors that send nothing."""

from __future__ import annotations

import asyncio
import json

from tests.unit.test_cli_parameters import Live, live, usage_error

__all__ = ["live"]


def node_id(live: Live) -> str:
    loop = live.bridge._loop

    async def make() -> str:
        return (await live.api.new_node(tags={"role": "web"})).node_id

    return asyncio.run_coroutine_threadsafe(make(), loop).result(60)


def tick(live: Live) -> None:
    job = live.api.cp.association_job
    asyncio.run_coroutine_threadsafe(job.tick(live.api.clock()), live.bridge._loop).result(60)


def test_the_whole_life_of_an_association(live: Live) -> None:
    node = node_id(live)
    made = live.json(
        "associations", "create", "--name", "motd", "--document", "AWS-RunShellScript",
        "--targets", "tag:role=web", "--param", "commands=echo hi", "--schedule",
        "cron(0 2 ? * SUN *)", "--tz", "Europe/Berlin", "--compliance-severity", "HIGH",
    )  # fmt: skip
    association_id = made["association_id"]
    assert made["version"] == 1 and made["timezone"] == "Europe/Berlin"
    assert made["parameters"] == {"commands": "echo hi"} or made["parameters"]["commands"]
    table = live.ok("associations", "list").stdout
    assert "motd" in table and "cron(0 2 ? * SUN *)" in table
    tick(live)
    runs = live.json("associations", "executions", association_id)
    assert [r["trigger"] for r in runs] == ["create"]
    targets = live.json(
        "associations", "execution-targets", association_id, runs[0]["execution_id"]
    )
    assert [t["node_id"] for t in targets] == [node]
    updated = live.json(
        "associations", "update", association_id, "--max-errors", "1", "--expect-version", "1"
    )
    assert updated["version"] == 2
    stale = live.run(
        "associations", "update", association_id, "--max-errors", "3", "--expect-version", "1"
    )
    assert stale.exit_code == 1 and "version 2" in stale.stderr
    assert stale.stderr.count("\n") == 1
    assert live.json("associations", "show", association_id)["max_errors"] == "1"
    versions = live.json("associations", "versions", association_id)
    assert [v["version"] for v in versions] == [2, 1]
    ran = live.json("associations", "run-now", association_id)
    assert ran["trigger"] == "run-now"
    gone = live.json("associations", "delete", association_id)
    assert gone["deleted"] is True
    assert live.json("associations", "list") == []


def test_warning_for_targets_that_match_nothing_yet(live: Live) -> None:
    result = live.ok(
        "associations", "create", "--name", "later", "--document", "AWS-RunShellScript",
        "--targets", "tag:role=future", "--param", "commands=true",
    )  # fmt: skip
    assert "warning: the targets tag:role=future match no node yet" in result.stderr


def test_bad_input_is_one_line_and_stores_nothing(live: Live) -> None:
    bad = live.run(
        "associations", "create", "--name", "x1y", "--document", "AWS-RunShellScript",
        "--targets", "all", "--param", "commands=true", "--schedule", "rate(5 minutes)",
    )  # fmt: skip
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ")
    assert bad.stderr.count("\n") == 1 and "30 minutes" in bad.stderr
    usage_error(live.run("associations", "create", "--name", "x", "--document", "D:"))
    usage_error(live.run("associations", "update", "some-id"))
    assert json.loads(live.ok("associations", "list", "-o", "json").stdout) == []
