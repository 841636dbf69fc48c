"""Commit watermarks: only a contiguous done prefix is ever committable."""

from __future__ import annotations

import pytest

from shared.offsets import PartitionTracker


def test_commits_only_the_contiguous_done_prefix() -> None:
    t = PartitionTracker("t", 0)
    for offset in (10, 11, 12, 13):
        t.add(offset)
    assert t.committable() is None
    t.done(12)
    assert t.committable() is None  # 10 and 11 are not done
    t.done(10)
    assert t.committable() == 11
    t.done(11)
    assert t.committable() == 13  # 10..12 done, 13 pending
    t.committed = 13
    assert t.committable() is None
    t.done(13)
    assert t.committable() == 14
    assert t.pending == 0


def test_gaps_in_offsets_are_not_waited_for() -> None:
    t = PartitionTracker("t", 0)
    for offset in (5, 9, 20):  # transaction markers and compaction leave gaps
        t.add(offset)
    t.done(5)
    t.done(9)
    assert t.committable() == 10
    t.done(20)
    assert t.committable() == 21


def test_dead_tracker_ignores_late_completions() -> None:
    t = PartitionTracker("t", 0)
    t.add(1)
    t.alive = False
    t.done(1)
    assert t.committable() is None


def test_offsets_must_increase() -> None:
    t = PartitionTracker("t", 0)
    t.add(3)
    with pytest.raises(ValueError, match="not after"):
        t.add(3)


def test_a_tail_of_transaction_markers_is_committed_once_nothing_is_pending() -> None:
    t = PartitionTracker("t", 0)
    for offset in (5, 6, 7):  # 8 is a commit marker, 9..10 aborted data, 11 its marker
        t.add(offset)
    t.idle_at(12)
    assert t.committable() is None  # 5..7 are pending: nothing past them may be committed
    for offset in (5, 6, 7):
        t.done(offset)
    assert t.committable() == 8
    t.idle_at(12)
    assert t.committable() == 12
    t.alive = False
    t.idle_at(20)  # a revoked partition moves no more
    assert t.committable() == 12


def test_an_empty_partition_commits_nothing() -> None:
    t = PartitionTracker("t", 3)
    t.idle_at(0)
    assert t.committable() is None
