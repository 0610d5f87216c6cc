"""SSM's rate and error control, on the pure state machine (no I/O, no clock)."""

from __future__ import annotations

from agent import wire
from control_plane.services.command_state import CommandState
from control_plane.services.rate import concurrency_limit, error_threshold


def make(targets: int, concurrency: str = "50", errors: str = "0") -> CommandState:
    state = CommandState(
        command_id="c", target_count=targets,
        concurrency=concurrency_limit(concurrency, targets),
        error_threshold=error_threshold(errors, targets),
    )
    nodes = [f"n{i:03d}" for i in range(targets)]
    state.pending.extend(nodes)
    for n in nodes:
        state.statuses[n] = (wire.ST_PENDING, wire.ST_PENDING)
    return state


def send(state: CommandState) -> list[str]:
    nodes = state.next_to_send()
    for n in nodes:
        state.mark_sent(n, delayed=False)
    return nodes


def test_ramp_up_one_then_two_more_per_acknowledgement() -> None:
    state = make(20, concurrency="50")
    first = send(state)
    assert len(first) == 1
    assert send(state) == []  # nothing more until the first node acknowledges
    state.agent_update(first[0], wire.ST_IN_PROGRESS, "")
    second = send(state)
    assert len(second) == 2
    for n in second:
        state.agent_update(n, wire.ST_IN_PROGRESS, "")
    assert len(send(state)) == 4  # 1 + 2*3 = 7 started in all


def test_concurrency_caps_in_flight_and_finishing_frees_a_slot() -> None:
    state = make(10, concurrency="2")
    a = send(state)
    state.agent_update(a[0], wire.ST_IN_PROGRESS, "")
    b = send(state)
    assert len(b) == 1  # two in flight: the cap
    state.agent_update(b[0], wire.ST_IN_PROGRESS, "")
    assert send(state) == []
    state.agent_update(a[0], wire.ST_SUCCESS, "")
    assert len(send(state)) == 1


def test_max_errors_zero_stops_after_the_first_error_and_terminates_the_rest() -> None:
    state = make(5, concurrency="1")
    n = send(state)[0]
    state.agent_update(n, wire.ST_FAILED, "Failed")
    assert state.stopped and send(state) == []
    changes = state.stop_pending()
    assert len(changes) == 4
    terminated = (wire.ST_CANCELLED, wire.DETAIL_TERMINATED)
    assert all((c.status, c.details) == terminated for c in changes)
    assert state.done and state.overall() == (wire.ST_FAILED, wire.ST_FAILED)


def test_ten_percent_of_fifty_allows_five_errors_the_sixth_stops() -> None:
    assert error_threshold("10%", 50) == 5
    state = make(50, concurrency="50", errors="10%")
    for i in range(5):
        state.errors = i + 1
        assert not state.stopped
    state.errors = 6
    assert state.stopped


def test_delivery_timeouts_do_not_count_as_errors() -> None:
    state = make(3, concurrency="3")
    send(state)
    changes = state.delivery_timed_out()
    assert {c.details for c in changes} == {wire.DETAIL_DELIVERY_TIMED_OUT}
    assert state.errors == 0 and state.delivery_timeouts == 3 and state.done
    assert state.overall() == (wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT)


def test_overall_success_incomplete_and_late_reports_ignored() -> None:
    state = make(2, concurrency="2", errors="1")
    a = send(state)[0]
    state.agent_update(a, wire.ST_IN_PROGRESS, "")
    b = send(state)[0]
    state.agent_update(a, wire.ST_SUCCESS, "")
    state.agent_update(b, wire.ST_FAILED, "Failed")
    assert state.overall() == (wire.ST_FAILED, "Incomplete")
    assert state.agent_update(b, wire.ST_SUCCESS, "") is None  # terminal stays terminal
    ok = make(1)
    n = send(ok)[0]
    ok.agent_update(n, wire.ST_SUCCESS, "")
    assert ok.overall() == (wire.ST_SUCCESS, wire.ST_SUCCESS)


def test_percentages_and_pending_status() -> None:
    assert concurrency_limit("10%", 3) == 1 and concurrency_limit("10%", 50) == 5
    assert concurrency_limit("7", 100) == 7
    state = make(3)
    assert state.overall() == (wire.ST_PENDING, wire.ST_PENDING)
    send(state)
    assert state.overall() == (wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)


def test_cancel_stops_pending_nodes() -> None:
    state = make(4, concurrency="1")
    send(state)
    state.cancelled = True
    changes = state.stop_pending()
    assert len(changes) == 3 and all(c.details == wire.ST_CANCELLED for c in changes)
