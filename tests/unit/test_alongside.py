"""The worker thread that writes Redis alongside the caller: order, bound, errors."""

from __future__ import annotations

import threading

import pytest

from feedctl.pipelines.alongside import alongside


def test_items_are_handled_in_order_and_all_before_the_block_ends() -> None:
    seen: list[int] = []
    with alongside(seen.append, depth=2) as worker:
        for item in range(100):
            worker.put(item)
    assert seen == list(range(100))


def test_at_most_depth_items_wait() -> None:
    release = threading.Event()
    started = threading.Event()
    queued_while_blocked: list[int] = []

    def slow(item: int) -> None:
        started.set()
        release.wait(5)

    with alongside(slow, depth=2) as worker:
        worker.put(0)
        started.wait(5)  # the worker holds item 0; two more fit in the queue
        worker.put(1)
        worker.put(2)
        blocked = threading.Thread(target=worker.put, args=(3,))
        blocked.start()
        blocked.join(0.2)
        queued_while_blocked.append(int(blocked.is_alive()))
        release.set()
        blocked.join(5)
    assert queued_while_blocked == [1]


def test_a_worker_error_reaches_the_caller_at_its_next_put_and_the_rest_is_drained() -> None:
    handled: list[int] = []

    def fail_on_two(item: int) -> None:
        if item == 2:
            raise ValueError("boom")
        handled.append(item)

    with pytest.raises(ValueError, match="boom"), alongside(fail_on_two, depth=1) as worker:
        for item in range(50):
            worker.put(item)
    assert handled == [0, 1]


def test_a_worker_error_is_raised_when_the_block_ends() -> None:
    def fail(item: int) -> None:
        raise KeyError(item)

    with pytest.raises(KeyError), alongside(fail) as worker:
        worker.put(1)


def test_the_callers_own_error_wins() -> None:
    def fail(item: int) -> None:
        raise KeyError(item)

    with pytest.raises(RuntimeError), alongside(fail) as worker:
        worker.put(1)
        raise RuntimeError("caller")
