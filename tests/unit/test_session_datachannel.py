"""The session data channel's frames and numbering (agent/sessions/datachannel.py): frames
round-trip and bad ones are refused with one line; the window bounds what is unacknowledged;
after any number of dropped connections, resending from each end's HELLO delivers every byte
once and in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sessions.datachannel import (
    ACK,
    DATA,
    HEADER,
    HELLO,
    MAX_PAYLOAD,
    RESIZE,
    Frame,
    Incoming,
    Outgoing,
    ProtocolError,
    decode,
)


def test_frames_round_trip() -> None:
    frame = Frame(RESIZE, b'{"cols":120,"rows":40}', stream=3, seq=7, ack=5)
    assert decode(frame.encode()) == frame
    assert len(Frame(ACK, ack=9).encode()) == HEADER.size


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x02\x00", "shorter than its header"),
        (Frame(DATA, b"x", seq=1).encode() + b"y", "frame says 1 payload bytes, carries 2"),
        (bytes([99]) + Frame(DATA, b"", seq=1).encode()[1:], "unknown frame type 99"),
        (Frame(HELLO, b"{}", seq=3).encode(), "frame type 1 with sequence number 3"),
        (Frame(DATA, b"x", seq=0).encode(), "frame type 2 with sequence number 0"),
        (b"\x02" + b"\x00" * (HEADER.size - 1) + b"x" * (MAX_PAYLOAD + 1), "at most"),
    ],
)
def test_bad_frames_are_refused_with_one_line(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(data)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_window_bounds_what_is_unacknowledged() -> None:
    out = Outgoing(window=10)
    out.number(DATA, b"x" * 6)
    assert out.room() == 4
    with pytest.raises(ProtocolError, match="past the window"):
        out.number(DATA, b"y" * 5)
    out.number(DATA, b"y" * 4)
    assert out.room() == 0  # the end stops reading its source here
    out.acknowledged(1)
    assert (out.room(), out.unacked_bytes) == (6, 4)
    with pytest.raises(ProtocolError, match="acknowledgement of 5, but 2 were sent"):
        out.acknowledged(5)


def test_a_resend_after_a_reconnect_is_received_once() -> None:
    out, inc = Outgoing(), Incoming()
    frames = [out.number(DATA, bytes([i])) for i in range(5)]
    assert all(inc.accept(f) for f in frames[:3])  # 4 and 5 were lost with the connection
    again = out.resend(inc.last, ack=0)
    assert [f.seq for f in again] == [4, 5]
    assert [inc.accept(f) for f in [frames[2], *again]] == [False, True, True]
    assert not inc.accept(Frame(DATA, b"", seq=9))  # past a gap: dropped, resent later
    assert (inc.last, inc.skipped) == (5, 1)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=60),
    drops=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    acks_every=st.integers(min_value=1, max_value=8),
)
def test_any_drops_deliver_every_byte_once_in_order(
    chunks: list[bytes], drops: list[int], acks_every: int
) -> None:
    """A sender, a receiver, and a link that loses whatever is in flight when it drops."""
    out, inc = Outgoing(window=256), Incoming()
    received = bytearray()
    pending = list(chunks)
    in_flight: list[Frame] = []
    step = 0
    while pending or in_flight or out.unacked_bytes:
        step += 1
        if step in drops:  # the websocket dies: in-flight frames are gone; HELLOs resend
            in_flight = out.resend(inc.last, ack=0)
            continue
        if pending and out.room() >= len(pending[0]):
            in_flight.append(out.number(DATA, pending.pop(0)))
        elif in_flight:
            frame = in_flight.pop(0)
            if inc.accept(frame):
                received += frame.payload
            if frame.seq % acks_every == 0 or not in_flight:
                out.acknowledged(inc.last)
        elif out.unacked_bytes:
            out.acknowledged(inc.last)
        assert step < 10_000
    assert bytes(received) == b"".join(chunks)
