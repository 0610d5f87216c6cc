"""The chaos harness's command stream (bench/chaos.py): commands of every size and outcome,
drawn from a seed, whose every printed byte is known in advance."""

from __future__ import annotations

import random
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMAND_KINDS: dict[str, int] = {
    "empty": 1,
    "small": 3,
    "big": 2,
    "fail": 2,
    "sleep": 2,
    "multi": 2,
}
FINAL = {"Success", "Failed", "Cancelled", "TimedOut", "Undeliverable"}
MULTI_DOC = "Chaos-MultiStep"
MULTI_STEPS = ("one", "two", "three")
MARK = "\u2713"  # three bytes of UTF-8, six of JSON \u escape


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The command stream --------------------------------------------------------------------------
@dataclass
class StepSpec:
    line: str  # stdout: this line (a newline added) repeated, cut at stdout_bytes
    stdout_bytes: int
    err_line: str
    stderr_bytes: int
    sleep: float = 0.0
    exit_code: int = 0

    def expected(self, stream: str) -> bytes:
        line, size = (
            (self.line, self.stdout_bytes)
            if stream == "stdout"
            else (self.err_line, self.stderr_bytes)
        )
        unit = (line + "\n").encode()
        text = (unit * (size // len(unit) + 1))[:size]
        if stream == "stderr" and self.exit_code:  # the agent's own line, as SSM Agent's
            text += f"failed to run commands: exit status {self.exit_code}\n".encode()
        return text


@dataclass
class Spec:
    tag: str
    kind: str
    targets: list[int]
    steps: list[StepSpec]
    at: float
    command_id: str | None = None
    sent_at: float | None = None  # time.time() here
    uncertain: bool = False  # the POST failed in a way that may have stored it

    @property
    def expected_status(self) -> str:
        return "Failed" if any(s.exit_code for s in self.steps) else "Success"

    @property
    def expected_code(self) -> int:
        return next((s.exit_code for s in reversed(self.steps) if s.exit_code), 0)

    def script(self, index: int, runs: Path, agents: Path) -> list[str]:
        step = self.steps[index]
        mine = shlex.quote(str(runs / self.tag))
        lines = [
            f"n=${{0#{shlex.quote(str(agents))}/}}; n=${{n%%/*}}",
            f'mkdir -p {mine} && mkdir {mine}/"$n".s{index}.$$',
        ]
        if step.sleep:
            lines.append(f"sleep {step.sleep:g}")
        if step.stdout_bytes:
            lines.append(f"yes {shlex.quote(step.line)} | head -c {step.stdout_bytes}")
        if step.stderr_bytes:
            lines.append(f"yes {shlex.quote(step.err_line)} | head -c {step.stderr_bytes} >&2")
        if step.exit_code:
            lines.append(f"exit {step.exit_code}")
        return lines

    def request(self, runs: Path, agents: Path, node_ids: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "targets": [node_ids[i] for i in self.targets],
            "comment": self.tag,
            "timeout_seconds": 600,
            "max_errors": "100%",
        }
        if self.kind == "multi":
            body["document"] = MULTI_DOC
            body["parameters"] = {
                name: self.script(i, runs, agents) for i, name in enumerate(MULTI_STEPS)
            }
        else:
            body["parameters"] = {"commands": self.script(0, runs, agents)}
        return body


def _sized(line: str, wanted: int) -> int:
    """A size near ``wanted`` that cuts no line (so no multi-byte character) in half."""
    unit = len((line + "\n").encode())
    return max(unit, wanted // unit * unit) if wanted else 0


def make_step(rng: random.Random, tag: str, index: int, kind: str) -> StepSpec:
    line = f"{tag} s{index} out {MARK} chaos"
    err_line = f"{tag} s{index} err {MARK}"
    if kind == "empty":
        return StepSpec(line, 0, err_line, 0)
    if kind == "big":
        out = rng.choice([23_990, 24_010, 30_000, 64_000, 100_000, 200_000])
        err = rng.choice([0, 7_990, 8_010, 20_000])
        return StepSpec(line, _sized(line, out), err_line, _sized(err_line, err))
    step = StepSpec(
        line,
        _sized(line, rng.randint(1, 40) * 40),
        err_line,
        _sized(err_line, rng.choice([0, 0, 100, 2_000])),
    )
    if kind == "sleep":
        step.sleep = round(rng.uniform(1, 8), 1)
    if kind == "fail":
        step.exit_code = rng.randint(1, 99)
    return step


def make_stream(
    rng: random.Random, count: int, nodes: int, duration: float, kinds: list[str]
) -> list[Spec]:
    specs = []
    names = [k for k in COMMAND_KINDS if k in kinds]
    weights = [COMMAND_KINDS[k] for k in names]
    for i in range(count):
        kind = rng.choices(names, weights)[0]
        tag = f"c{i:04d}{rng.randrange(16**6):06x}"
        if kind == "multi":
            steps = [
                make_step(rng, tag, j, rng.choice(["small", "big", "empty", "sleep"]))
                for j in range(len(MULTI_STEPS))
            ]
        else:
            steps = [make_step(rng, tag, 0, kind)]
        width = 1 if nodes == 1 or rng.random() < 0.8 else rng.randint(2, min(3, nodes))
        targets = sorted(rng.sample(range(nodes), width))
        specs.append(Spec(tag, kind, targets, steps, at=rng.uniform(0, duration)))
    return sorted(specs, key=lambda s: s.at)


MULTI_DOCUMENT = {
    "schemaVersion": "2.2",
    "description": "chaos harness: three shell steps",
    "parameters": {name: {"type": "StringList"} for name in MULTI_STEPS},
    "mainSteps": [
        {
            "action": "aws:runShellScript",
            "name": name,
            "inputs": {"runCommand": "{{ " + name + " }}"},
        }
        for name in MULTI_STEPS
    ],
}
