"""planner_ports.wait_for_move in isolation: a fake node and a fake goal handle stand in for the
action client, so the stop race (a stop seen before the move's handle was stored) is exercised
deterministically, without DDS timing."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pytest

from fluorosam_ros.control.acquisition import AcquisitionError
from fluorosam_ros.nodes.planner_ports import wait_for_move


class FakeNode:
    def __init__(self, stopped: bool = False, move_s: float = 5.0, state_s: float = 0.0) -> None:
        self.stopped = stopped
        self.timeouts = {"move_s": move_s, "state_s": state_s}
        self.last_state_at = time.monotonic()

    def cancel_requested(self) -> bool:
        return self.stopped


class FakeHandle:
    """Finishes its result future with "canceled" when asked to cancel, as the C-arm does."""

    def __init__(self, result: Future) -> None:
        self.result, self.cancels = result, 0

    def cancel_goal_async(self) -> None:
        self.cancels += 1
        threading.Timer(0.02, self.result.set_result, args=("canceled",)).start()


def test_a_stop_seen_before_the_handle_was_stored_still_cancels_the_move():
    node, result = FakeNode(stopped=True), Future()
    handle = FakeHandle(result)
    assert wait_for_move(node, handle, result) == "canceled"
    assert handle.cancels == 1


def test_a_stop_during_the_move_cancels_it_once():
    node, result = FakeNode(), Future()
    handle = FakeHandle(result)
    threading.Timer(0.1, lambda: setattr(node, "stopped", True)).start()
    started = time.monotonic()
    assert wait_for_move(node, handle, result) == "canceled"
    assert handle.cancels == 1
    assert time.monotonic() - started < 2.0


def test_without_a_stop_the_move_is_left_alone():
    node, result = FakeNode(), Future()
    handle = FakeHandle(result)
    threading.Timer(0.2, result.set_result, args=("succeeded",)).start()
    assert wait_for_move(node, handle, result) == "succeeded"
    assert handle.cancels == 0


def test_a_silent_carm_ends_the_wait_with_carm_unavailable():
    node, result = FakeNode(state_s=0.2), Future()
    node.last_state_at = time.monotonic() - 1.0
    with pytest.raises(AcquisitionError) as raised:
        wait_for_move(node, FakeHandle(result), result)
    assert raised.value.reason == "carm_unavailable"


def test_no_answer_within_the_move_timeout_is_a_timeout():
    node, result = FakeNode(move_s=0.2), Future()
    with pytest.raises(AcquisitionError) as raised:
        wait_for_move(node, FakeHandle(result), result)
    assert raised.value.reason == "timeout"
