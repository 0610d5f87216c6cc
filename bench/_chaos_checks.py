"""The chaos harness's verdict (bench/chaos.py): per invocation lost, doubled, hanging; per
agent dead rows; and the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _chaos_fleet import Excuse
from _chaos_run import KINDS, Chaos
from _chaos_stream import COMMAND_KINDS, FINAL, MULTI_STEPS, Spec, log
from _common import (
    code_under_test,
    print_table,
)


# Checks -------------------------------------------------------------------------------------
@dataclass
class Verdict:
    hanging: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    dead: dict[str, int] = field(default_factory=dict)
    outbox: dict[str, int] = field(default_factory=dict)  # left undelivered (a hint)
    excused: list[str] = field(default_factory=list)
    never_sent: int = 0
    invocations: int = 0
    intact: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "doubled": len(self.doubled),
            "hanging": len(self.hanging),
            "dead": sum(rows for rows in self.dead.values() if rows > 0),
        }


def reconcile(api: httpx.Client, specs: list[Spec]) -> None:
    """Commands whose POST failed half-way: stored (found by the tag in their comment) or not."""
    unsure = {s.tag: s for s in specs if s.uncertain and s.command_id is None}
    if not unsure:
        return
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = api.get("/v1/commands", params=params)
        page.raise_for_status()
        data = page.json()
        for command in data["commands"]:
            spec = unsure.get(command.get("comment", ""))
            if spec is not None:
                spec.command_id = command["command_id"]
        if not data.get("next_token"):
            return
        params["next_token"] = data["next_token"]


def wait_final(api: httpx.Client, specs: list[Spec], timeout: float) -> dict[str, dict[str, Any]]:
    """Every sent command's view, once all are final or at the deadline."""
    views: dict[str, dict[str, Any]] = {}
    left = {s.command_id for s in specs if s.command_id}
    end = time.monotonic() + timeout
    while left:
        for command_id in sorted(left):
            with contextlib.suppress(httpx.HTTPError):
                answer = api.get(f"/v1/commands/{command_id}")
                if answer.status_code == 200:
                    views[command_id] = view = answer.json()
                    if _final(view):
                        left.discard(command_id)
        if not left or time.monotonic() > end:
            break
        log(f"  {len(left)} commands not final yet")
        time.sleep(2)
    return views


def _final(view: dict[str, Any]) -> bool:
    return view["status"] in FINAL and all(i["status"] in FINAL for i in view["invocations"])


def _output(api: httpx.Client, spec: Spec, node_id: str, step: int, stream: str) -> bytes:
    params = {"stream": stream}
    if spec.kind == "multi":
        params["step"] = MULTI_STEPS[step]
    answer = api.get(f"/v1/commands/{spec.command_id}/invocations/{node_id}/output", params=params)
    answer.raise_for_status()
    return answer.content


def check(
    chaos: Chaos, api: httpx.Client, specs: list[Spec], views: dict[str, dict[str, Any]]
) -> Verdict:
    verdict = Verdict()
    runs = Counter(
        (p.parent.name, p.name.rsplit(".", 1)[0]) for p in chaos.runs_dir.glob("*/*")
    )  # (tag, "agent-00.s0") -> runs
    by_id = {n.node_id: n for n in chaos.nodes}
    to_compare: list[tuple[Spec, str, str]] = []
    for spec in specs:
        if spec.command_id is None:
            verdict.never_sent += 1
            continue
        view = views.get(spec.command_id)
        if view is None:
            verdict.hanging.append(f"{spec.tag} {spec.command_id}: never seen")
            continue
        if view["status"] not in FINAL and all(i["status"] in FINAL for i in view["invocations"]):
            verdict.hanging.append(f"{spec.tag} {spec.command_id}: command {view['status']}")
        for inv in view["invocations"]:
            verdict.invocations += 1
            node = by_id[inv["node_id"]]
            label = f"{spec.tag} {spec.kind} {spec.command_id} on {node.name}"
            ran = [runs[(spec.tag, f"{node.name}.s{i}")] for i in range(len(spec.steps))]
            if any(r > 1 for r in ran):
                verdict.doubled.append(f"{label}: steps ran {ran} times")
            if inv["status"] not in FINAL:
                journaled = (node.state_dir / "commands" / spec.command_id).is_dir()
                verdict.hanging.append(
                    f"{label}: {inv['status']} {inv['status_details']!r}; "
                    f"{'in' if journaled else 'not in'} the node's journal"
                )
                continue
            got = (inv["status"], inv["response_code"] or 0)
            want = (spec.expected_status, spec.expected_code)
            if got == want:
                if not all(ran):
                    verdict.lost.append(f"{label}: {got}, but steps ran {ran} times")
                else:
                    to_compare.append((spec, node.node_id, label))
                continue
            excuse = chaos.excused.get((spec.command_id, node.node_id))
            if excuse is None and spec.sent_at is not None:
                # It ran (or waited to run) at some time after it was sent: at most a few
                # minutes, outages included.
                for begin, end in node.full:
                    if spec.sent_at - 5 <= end and begin <= spec.sent_at + 180:
                        excuse = Excuse("the disk was full around then")
            if excuse is not None:
                verdict.excused.append(f"{label}: {got} ({inv['status_details']}): {excuse.why}")
            else:
                verdict.lost.append(
                    f"{label}: {got[0]} {got[1]} ({inv['status_details']!r}), want {want}"
                )
    # Outputs: the blob of a step beyond its record arrives after the final status; wait.
    end = time.monotonic() + chaos.args.output_wait
    while to_compare:
        wrong: list[tuple[Spec, str, str]] = []
        for spec, node_id, label in to_compare:
            if _differs(api, spec, node_id) is not None:
                wrong.append((spec, node_id, label))
        verdict.intact += len(to_compare) - len(wrong)
        to_compare = wrong
        if not wrong or time.monotonic() > end:
            break
        log(f"  {len(wrong)} outputs not complete yet")
        time.sleep(2)
    for spec, node_id, label in to_compare:
        verdict.lost.append(f"{label}: output {_differs(api, spec, node_id)}")
    for node in chaos.nodes:
        verdict.dead[node.name] = outbox_rows(node.state_dir, "dead")
        verdict.outbox[node.name] = outbox_rows(node.state_dir, "outbox")
    return verdict


def _differs(api: httpx.Client, spec: Spec, node_id: str) -> str | None:
    for index, step in enumerate(spec.steps):
        for stream in ("stdout", "stderr"):
            want = step.expected(stream)
            try:
                got = _output(api, spec, node_id, index, stream)
            except httpx.HTTPError as exc:
                return f"step {index} {stream}: {exc}"
            if got != want:
                return f"step {index} {stream}: {len(got)} bytes, want {len(want)}"
    return None


def outbox_rows(state_dir: Path, table: str) -> int:
    """Rows in the agent's outbox database's ``dead`` or ``outbox`` table (-1: unreadable)."""
    path = state_dir / "outbox.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


# Report -------------------------------------------------------------------------------------
def report(chaos: Chaos, specs: list[Spec], verdict: Verdict, args: argparse.Namespace) -> int:
    print_table(
        f"Faults injected (seed {args.seed})",
        ["kind", "count"],
        [[k, chaos.faults[k]] for k in KINDS if k in args.kinds]
        + [["total", sum(chaos.faults.values())]],
    )
    kinds = Counter(s.kind for s in specs if s.command_id)
    print_table(
        "Commands sent",
        ["kind", "count"],
        [[k, kinds[k]] for k in COMMAND_KINDS] + [["not stored (send failed)", verdict.never_sent]],
    )
    counts = verdict.counts()
    print_table(
        f"Results: {verdict.invocations} invocations on {len(chaos.nodes)} nodes",
        ["lost", "doubled", "hanging", "dead", "intact", "excused", "unexpected exits"],
        [
            [
                counts["lost"],
                counts["doubled"],
                counts["hanging"],
                counts["dead"],
                verdict.intact,
                len(verdict.excused),
                len(chaos.exits),
            ]
        ],
    )
    for title, lines in (
        ("LOST", verdict.lost),
        ("DOUBLED", verdict.doubled),
        ("HANGING", verdict.hanging),
        ("excused", verdict.excused),
        ("unexpected exits", chaos.exits),
    ):
        for line in lines[:40]:
            print(f"{title}: {line}")
        if len(lines) > 40:
            print(f"{title}: ... {len(lines) - 40} more")
    for name, rows in verdict.dead.items():
        if rows:
            print(f"DEAD: {name} has {rows} rows in its dead table")
    print(f"outbox rows left per agent: {verdict.outbox}")
    print(f"proxy: {dict(chaos.proxy.stats)}")
    print(f"code measured: {code_under_test()}")
    print(f"seed {args.seed}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "seed": args.seed,
                    **counts,
                    "intact": verdict.intact,
                    "excused": verdict.excused,
                    "invocations": verdict.invocations,
                    "faults": dict(chaos.faults),
                    "unexpected_exits": chaos.exits,
                    "lost_detail": verdict.lost,
                    "doubled_detail": verdict.doubled,
                    "hanging_detail": verdict.hanging,
                    "dead_detail": verdict.dead,
                },
                indent=2,
            )
        )
    return 1 if any(counts.values()) else 0
