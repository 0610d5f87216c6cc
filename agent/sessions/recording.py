"""A session recording: what the server's relay stores of a shell session, and how it is read
back (``corral sessions replay``, the asciicast v2 export).

The stored form is a sequence of events, each a 13-byte big-endian header and its bytes::

    time f64 (seconds since the session started) | kind u8 | length u32 | data

Kinds are asciicast's: ``o`` output, ``i`` input, ``r`` resize (data ``COLSxROWS``).  The
bytes are kept exactly as they went through (a recording replays to the same bytes); the
asciicast export decodes them as UTF-8 (a character split across two events is joined).
"""

from __future__ import annotations

import codecs
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

EVENT: Final = struct.Struct(">dBI")
OUTPUT: Final = ord("o")
INPUT: Final = ord("i")
RESIZE: Final = ord("r")
KINDS: Final = frozenset({OUTPUT, INPUT, RESIZE})


class RecordingError(ValueError):
    """A recording that does not parse; the message says where."""


@dataclass(frozen=True)
class Event:
    time: float
    kind: int
    data: bytes


def encode(event: Event) -> bytes:
    return EVENT.pack(event.time, event.kind, len(event.data)) + event.data


def events(data: bytes) -> Iterator[Event]:
    """The events of a whole recording (or of any run of whole events)."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < EVENT.size:
            raise RecordingError(f"a truncated event header at byte {offset}")
        when, kind, length = EVENT.unpack_from(data, offset)
        offset += EVENT.size
        if kind not in KINDS:
            raise RecordingError(f"unknown event kind {kind} at byte {offset - EVENT.size}")
        if len(data) - offset < length:
            raise RecordingError(f"a truncated event at byte {offset - EVENT.size}")
        yield Event(when, kind, data[offset : offset + length])
        offset += length


def output_bytes(data: bytes) -> bytes:
    """Everything the session printed, in order."""
    return b"".join(e.data for e in events(data) if e.kind == OUTPUT)


def asciicast(
    recorded: Iterable[Event], *, width: int, height: int, timestamp: int, title: str
) -> Iterator[str]:
    """The lines of an asciicast v2 file: its header, then one JSON array per event."""
    header: dict[str, Any] = {
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": timestamp,
        "title": title,
        "env": {"TERM": "xterm-256color"},
    }
    yield json.dumps(header)
    decoders = {k: codecs.getincrementaldecoder("utf-8")("replace") for k in (OUTPUT, INPUT)}
    for event in recorded:
        if event.kind == RESIZE:
            text = event.data.decode("ascii", "replace")
        else:
            text = decoders[event.kind].decode(event.data)
            if not text:
                continue
        yield json.dumps([round(event.time, 6), chr(event.kind), text])
