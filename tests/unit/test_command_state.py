"""SSM's rate and error control, on the pure state machine (no I/O, no clock)."""

from __future__ import annotations

from agent import wire
from control_plane.services.commands.rate import concurrency_limit, error_threshold
from control_plane.services.commands.state import (
    DETAIL_NO_REPORT,
    DETAIL_NODE_DEREGISTERED,
    OFFLINE,
    ONLINE,
    CommandState,
)


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


def send(state: CommandState, offline: frozenset[str] = frozenset()) -> list[str]:
    return state.next_to_send(lambda n: OFFLINE if n in offline else ONLINE).nodes


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


def test_an_offline_first_target_does_not_stall_the_ramp() -> None:
    state = make(6, concurrency="3")
    sent = state.next_to_send(lambda n: OFFLINE if n == "n000" else ONLINE)
    # n000 goes out Delayed (it holds a slot), and the ramp starts on the next node.
    assert sent.nodes == ["n000", "n001"]
    assert state.statuses["n000"] == (wire.ST_DELAYED, wire.ST_DELAYED)
    assert state.statuses["n001"] == (wire.ST_IN_PROGRESS, wire.ST_IN_PROGRESS)
    assert send(state) == []  # n001 has not acknowledged: the ramp waits for it
    state.agent_update("n001", wire.ST_IN_PROGRESS, "")
    assert send(state) == ["n002"]  # within MaxConcurrency 3: n000, n001, n002
    state.agent_update("n002", wire.ST_IN_PROGRESS, "")
    state.agent_update("n001", wire.ST_SUCCESS, "")
    assert send(state) == ["n003"]
    # The delivery deadline ends n000 with what never started, without counting an error.
    changes = state.delivery_timed_out()
    assert {c.node_id for c in changes} == {"n000", "n003", "n004", "n005"}
    assert state.errors == 0 and state.running == {"n002"}


def test_offline_targets_fill_concurrency_but_not_the_ramp() -> None:
    state = make(5, concurrency="3")
    offline = frozenset({"n000", "n001", "n002", "n003"})
    assert send(state, offline) == ["n000", "n001", "n002"]  # the cap, though none is live
    assert send(state, offline) == []


def test_an_unreachable_node_is_undeliverable_and_takes_no_ramp_slot() -> None:
    state = make(3, concurrency="3")
    sent = state.next_to_send(lambda n: DETAIL_NODE_DEREGISTERED if n == "n000" else ONLINE)
    assert sent.nodes == ["n001"]
    assert state.statuses["n000"] == (wire.ST_UNDELIVERABLE, DETAIL_NODE_DEREGISTERED)
    assert state.errors == 0


def test_max_errors_counts_finished_invocations_only() -> None:
    state = make(4, concurrency="4", errors="1")
    a = send(state)[0]
    state.agent_update(a, wire.ST_IN_PROGRESS, "")
    b, c = send(state)
    state.agent_update(b, wire.ST_IN_PROGRESS, "")
    state.agent_update(c, wire.ST_IN_PROGRESS, "")
    assert state.errors == 0  # running, whatever they will become
    state.agent_update(a, wire.ST_FAILED, "Failed")
    assert state.errors == 1 and not state.stopped
    state.no_report(b)  # the server's "no report from node" is an execution timeout
    assert state.errors == 2 and state.stopped
    assert send(state) == []
    state.agent_update(c, wire.ST_SUCCESS, "")
    state.stop_pending()
    assert state.done and state.overall() == (wire.ST_FAILED, wire.ST_FAILED)


def test_deregistered_node_ends_undeliverable_or_cancelled_with_the_reason() -> None:
    state = make(3, concurrency="3")
    a = send(state)[0]
    state.agent_update(a, wire.ST_IN_PROGRESS, "")
    b = send(state)[0]  # sent, never acknowledged
    gone = [state.node_gone(n) for n in (a, b, "n002")]
    assert [(c.status, c.details) for c in gone if c] == [
        (wire.ST_CANCELLED, DETAIL_NODE_DEREGISTERED),
        (wire.ST_UNDELIVERABLE, DETAIL_NODE_DEREGISTERED),
        (wire.ST_UNDELIVERABLE, DETAIL_NODE_DEREGISTERED),
    ]
    assert state.done and state.errors == 0 and not state.pending
    assert state.node_gone(a) is None  # already final
    assert state.overall() == (wire.ST_FAILED, "Incomplete")


def test_undeliverable_does_not_keep_a_command_from_success() -> None:
    state = make(3, concurrency="3")
    state.node_gone("n002")
    while sent := send(state):
        for n in sent:
            state.agent_update(n, wire.ST_SUCCESS, "")
    assert state.done and state.overall() == (wire.ST_SUCCESS, wire.ST_SUCCESS)
    nowhere = make(2)
    nowhere.node_gone("n000")
    nowhere.node_gone("n001")
    assert nowhere.overall() == (wire.ST_FAILED, wire.ST_UNDELIVERABLE)


def test_no_report_and_expiry_end_a_silent_started_invocation_as_timed_out() -> None:
    state = make(2, concurrency="2")
    a = send(state)[0]
    state.agent_update(a, wire.ST_IN_PROGRESS, "")
    assert state.no_report("n001") is None  # not started: delivery timeouts deal with it
    changes = state.expire()
    assert {(c.node_id, c.status, c.details) for c in changes} == {
        (a, wire.ST_TIMED_OUT, DETAIL_NO_REPORT),
        ("n001", wire.ST_TIMED_OUT, wire.DETAIL_DELIVERY_TIMED_OUT),
    }
    assert state.errors == 1 and state.delivery_timeouts == 1
    assert state.overall() == (wire.ST_TIMED_OUT, wire.DETAIL_EXECUTION_TIMED_OUT)
