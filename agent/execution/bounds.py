"""An invocation_update is never larger than one message may be (wire.MAX_MESSAGE_BYTES).

Each step's record holds at most 24,000 characters of stdout and 8,000 of stderr, but a
character can cost up to twelve bytes once JSON escapes it (a non-BMP one: two ``\\uXXXX``),
and a document can have a great many steps.  So the final report is cut where it is made:

- at most wire.MAX_REPORTED_STEPS step records (what the server keeps); the last one kept
  says at the head of its stderr how many more there were;
- the short texts of a step (name, action, status details) at a few hundred characters;
- then, if the whole is still too large, the output records: the longest are shortened first,
  to one common size, until the message fits.  A record shortened so is no longer the whole
  output: that stream is uploaded to the blob store like any longer output.
"""

from __future__ import annotations

import json
from typing import Any

from agent import wire

SHORT_TEXT_CHARS = 256
_STREAMS = ("stdout", "stderr")


def encoded_size(data: Any) -> int:
    """Bytes of ``data`` as JSON with every non-ASCII character escaped (the largest form)."""
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=True))


def cut_to_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose escaped JSON string body is at most ``limit``."""
    if encoded_size(text) - 2 <= limit:
        return text
    low, high = 0, min(len(text), limit)  # a character costs at least one byte
    while low < high:
        mid = (low + high + 1) // 2
        if encoded_size(text[:mid]) - 2 <= limit:
            low = mid
        else:
            high = mid - 1
    return text[:low]


def _short(value: Any) -> Any:
    return value[:SHORT_TEXT_CHARS] if isinstance(value, str) else value


def bound_update(
    body: dict[str, Any], limit: int = wire.MAX_MESSAGE_BYTES
) -> tuple[dict[str, Any], set[tuple[int, str]]]:
    """(``body`` cut to at most ``limit`` bytes as a message body, the (step, stream) records
    that were shortened).  ``body`` itself is not changed."""
    out = {key: _short(value) for key, value in body.items() if key != "steps"}
    raw = body.get("steps")
    steps: list[dict[str, Any]] = [
        {key: (value if key in _STREAMS else _short(value)) for key, value in step.items()}
        for step in (raw if isinstance(raw, list) else [])
        if isinstance(step, dict)
    ]
    if len(steps) > wire.MAX_REPORTED_STEPS:
        left = len(steps) - wire.MAX_REPORTED_STEPS + 1
        steps = steps[: wire.MAX_REPORTED_STEPS]
        last = steps[-1]
        last["stderr"] = f"({left} more steps are not reported)\n{last.get('stderr') or ''}"
    if "steps" in body:
        out["steps"] = steps
    texts = [(i, s) for i, step in enumerate(steps) for s in _STREAMS if step.get(s)]
    sizes = {key: encoded_size(steps[key[0]][key[1]]) - 2 for key in texts}
    fixed = encoded_size(out) - sum(sizes.values())
    # Room for the id, type, created_at of the message around the body.
    room = limit - fixed - 256
    if sum(sizes.values()) <= room:
        return out, set()
    cap = _common_cap(sorted(sizes.values()), max(room, 0))
    cut: set[tuple[int, str]] = set()
    for index, stream in texts:
        if sizes[(index, stream)] > cap:
            steps[index][stream] = cut_to_bytes(steps[index][stream], cap)
            cut.add((index, stream))
    return out, cut


def _common_cap(sizes: list[int], room: int) -> int:
    """The largest cap c with sum(min(size, c)) <= room (``sizes`` ascending)."""
    left = room
    for position, size in enumerate(sizes):
        share = left // (len(sizes) - position)
        if size > share:
            return share
        left -= size
    return max(sizes, default=0)
