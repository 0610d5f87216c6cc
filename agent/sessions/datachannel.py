"""Session Manager's data channel: the frames a session's two ends (the operator's CLI and the
agent) exchange through the server's relay, numbered so that a dropped websocket loses and
repeats nothing, and windowed so that neither end, nor the relay, holds more than a window of
unacknowledged bytes.

Modelled on SSM's agent (agent/session/datachannel: numbered stream messages, acknowledgements,
resending after a reconnect, a terminal size message, a channel-closed message), simpler where
Corral can be: the websocket is ordered, so acknowledgements are cumulative (the highest
sequence number received in order) and nothing is resent while a connection lives; after a
reconnect each end says, in its HELLO, the last sequence number it received, and the other
resends what came after it.  Flow control is a window of bytes: an end stops reading its
source (the PTY, the local socket) while ``window`` bytes it sent are unacknowledged.

A frame is a 24-byte big-endian header, then its payload::

    type u8 | flags u8 | stream u16 | seq u64 | ack u64 | length u32 | payload

``seq`` numbers the frames that carry something (every type but HELLO and ACK; 0 for those);
``ack`` is the highest sequence number the sender has received in order (every frame carries
it); ``stream`` tells port-forwarding connections apart (0 for a shell).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

HELLO: Final = 1  # payload: JSON {session_id, last_received, window}
DATA: Final = 2  # bytes of the stream (input one way, output the other)
RESIZE: Final = 3  # JSON {cols, rows}
ACK: Final = 4  # nothing but the header's ack
OPEN: Final = 5  # port forwarding: a new connection on ``stream``
CLOSE: Final = 6  # port forwarding: ``stream``'s connection ended (JSON {reason})
EXIT: Final = 7  # the session's program ended: JSON {status}
CLOSED: Final = 8  # the session ended: JSON {reason}
TERMINATE: Final = 9  # from the relay, not an end: the session is over, JSON {reason}
TYPES: Final = frozenset({HELLO, DATA, RESIZE, ACK, OPEN, CLOSE, EXIT, CLOSED, TERMINATE})
UNNUMBERED: Final = frozenset({HELLO, ACK, TERMINATE})
# Flags: a HELLO answering the peer's (it is not answered again); a CLOSE that only ends what
# this end sends on the stream (its reader met EOF: a TCP half-close), not the whole stream.
FLAG_REPLY: Final = 1
FLAG_HALF: Final = 1

HEADER: Final = struct.Struct(">BBHQQI")
MAX_PAYLOAD: Final = 32 * 1024
MAX_FRAME: Final = HEADER.size + MAX_PAYLOAD
DEFAULT_WINDOW: Final = 1024 * 1024


class ProtocolError(ValueError):
    """A frame the protocol does not allow; the message says what, on one line."""


@dataclass(frozen=True)
class Frame:
    type: int
    payload: bytes = b""
    stream: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ProtocolError(f"payload of {len(self.payload)} bytes: at most {MAX_PAYLOAD}")
        header = HEADER.pack(
            self.type, self.flags, self.stream, self.seq, self.ack, len(self.payload)
        )
        return header + self.payload


def decode(data: bytes) -> Frame:
    """A frame from one websocket message, or ProtocolError."""
    if len(data) < HEADER.size:
        raise ProtocolError(f"a frame of {len(data)} bytes: shorter than its header")
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"a frame of {len(data)} bytes: at most {MAX_FRAME}")
    kind, flags, stream, seq, ack, length = HEADER.unpack_from(data)
    if kind not in TYPES:
        raise ProtocolError(f"unknown frame type {kind}")
    if length != len(data) - HEADER.size:
        raise ProtocolError(f"frame says {length} payload bytes, carries {len(data) - HEADER.size}")
    if (kind in UNNUMBERED) != (seq == 0):
        raise ProtocolError(f"frame type {kind} with sequence number {seq}")
    return Frame(kind, bytes(data[HEADER.size :]), stream, seq, ack, flags)


class Outgoing:
    """One end's sent, unacknowledged frames: numbered as they are sent, kept until the peer
    acknowledges them (to resend after a reconnect), at most ``window`` payload bytes."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._next = 1
        self._unacked: deque[Frame] = deque()
        self.unacked_bytes = 0

    @property
    def unacked_frames(self) -> int:
        return len(self._unacked)

    def room(self) -> int:
        """Payload bytes that may be sent now (0: stop reading the source)."""
        return max(0, self.window - self.unacked_bytes)

    def number(
        self, kind: int, payload: bytes = b"", stream: int = 0, ack: int = 0, *, flags: int = 0
    ) -> Frame:
        """The next numbered frame, kept for resending; ProtocolError past the window."""
        if kind in UNNUMBERED:
            raise ProtocolError(f"frame type {kind} is not numbered")
        if len(payload) > self.room() and self._unacked:
            raise ProtocolError(
                f"{len(payload)} bytes past the window ({self.unacked_bytes} of "
                f"{self.window} unacknowledged)"
            )
        frame = Frame(kind, payload, stream, self._next, ack, flags)
        self._next += 1
        self._unacked.append(frame)
        self.unacked_bytes += len(payload)
        return frame

    def acknowledged(self, ack: int) -> None:
        """The peer has every frame up to ``ack``: they are not kept any longer."""
        if ack >= self._next:
            raise ProtocolError(f"acknowledgement of {ack}, but {self._next - 1} were sent")
        while self._unacked and self._unacked[0].seq <= ack:
            self.unacked_bytes -= len(self._unacked.popleft().payload)

    def resend(self, last_received: int, ack: int) -> list[Frame]:
        """After a reconnect: what the peer lacks (it has everything up to ``last_received``),
        each carrying the current ``ack``."""
        self.acknowledged(last_received)
        return [Frame(f.type, f.payload, f.stream, f.seq, ack, f.flags) for f in self._unacked]


class Incoming:
    """One end's received frames: each numbered frame once, in order."""

    def __init__(self) -> None:
        self.last = 0  # the highest sequence number received in order
        self.skipped = 0  # frames dropped for arriving ahead of a gap

    def accept(self, frame: Frame) -> bool:
        """True for a frame to act on; False for one already received (resent after a
        reconnect) or one past a gap.  A gap only opens across a reconnect (a frame written
        on the new websocket before the peer's HELLO was answered); the frames past it are
        still unacknowledged at the peer, which resends them all after the HELLO."""
        if frame.type in UNNUMBERED:
            return True
        if frame.seq != self.last + 1:
            if frame.seq > self.last:
                self.skipped += 1
            return False
        self.last = frame.seq
        return True
