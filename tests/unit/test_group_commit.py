"""services/group_commit.py on its own: items waiting together are written together, each
caller gets its own answer, a failed write fails only its batch, and the queue is bounded."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from deni.services.group_commit import GroupCommitter
from deni.services.ports import StorageBusy

WAIT_S = 10.0


class Recorder:
    """A write that doubles even numbers, refuses odd ones, and can be told to fail whole."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_next: Exception | None = None

    def write(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        return [i * 2 if i % 2 == 0 else ValueError(f"odd: {i}") for i in items]


def committer(recorder: Recorder, *, queued_max: int = 100) -> GroupCommitter[int, int]:
    return GroupCommitter(recorder.write, name="test-writer", queued_max=queued_max, batch_max=4)


def test_items_waiting_together_share_a_write_and_each_gets_its_own_answer() -> None:
    recorder = Recorder()
    writer = committer(recorder)
    futures = [writer.submit(i) for i in range(6)]  # queued before the writer starts
    writer.start()
    try:
        assert [f.result(timeout=WAIT_S) for f in futures[::2]] == [0, 4, 8]
        for odd in futures[1::2]:
            with pytest.raises(ValueError, match="odd"):
                odd.result(timeout=WAIT_S)
    finally:
        writer.stop()
    assert recorder.batches == [[0, 1, 2, 3], [4, 5]]  # batch_max bounds each write


def test_a_failed_write_fails_its_whole_batch_and_the_writer_goes_on() -> None:
    recorder = Recorder()
    recorder.fail_next = StorageBusy("busy")
    writer = committer(recorder)
    failed = [writer.submit(i) for i in (2, 4)]
    writer.start()
    try:
        for future in failed:
            with pytest.raises(StorageBusy):
                future.result(timeout=WAIT_S)
        assert writer.submit(6).result(timeout=WAIT_S) == 12
    finally:
        writer.stop()


def test_a_full_queue_refuses_at_once() -> None:
    writer = committer(Recorder(), queued_max=2)  # never started: the queue only fills
    writer.submit(2)
    writer.submit(4)
    with pytest.raises(StorageBusy):
        writer.submit(6)


def test_a_caller_that_gave_up_is_left_out_of_the_write() -> None:
    recorder = Recorder()
    writer = committer(recorder)
    kept, dropped = writer.submit(2), writer.submit(4)
    assert dropped.cancel()
    writer.start()
    try:
        assert kept.result(timeout=WAIT_S) == 4
    finally:
        writer.stop()
    assert recorder.batches == [[2]]


def test_stop_writes_what_is_queued_before_it_returns() -> None:
    recorder = Recorder()
    gate = threading.Event()

    def slow(items: Sequence[int]) -> list[int | Exception]:
        gate.wait(WAIT_S)  # hold the writer so that more queue up behind it
        return recorder.write(items)

    writer = GroupCommitter(slow, name="slow", queued_max=100, batch_max=4)
    writer.start()
    futures: list[Future[int]] = [writer.submit(i * 2) for i in range(10)]
    gate.set()
    writer.stop()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * 4 for i in range(10)]
    assert sum(len(batch) for batch in recorder.batches) == 10


def test_nothing_is_taken_after_stop() -> None:
    writer = committer(Recorder())
    writer.start()
    writer.stop()
    with pytest.raises(StorageBusy, match="stopped"):
        writer.submit(2)
