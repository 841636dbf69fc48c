"""The partitions a worker owns: a commit tracker each, and what their assignment said.

A tracker is made at a partition's first record. `hold_until` is the partition's end
offset at assignment: until the consumer reaches it, the worker is re-reading messages
a crashed owner may already have sent, and the scheduler holds their items so older
updates merge with their newer successors instead of overwriting them.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition

from shared.offsets import PartitionTracker


class Partitions:
    def __init__(self) -> None:
        self.trackers: dict[TopicPartition, PartitionTracker] = {}
        self.assigned_ends: dict[TopicPartition, int] = {}  # end offsets at assignment
        self.revoking: set[PartitionTracker] = set()
        self.fetching_paused = False  # backpressure: no partition is being read

    def tracker(self, tp: TopicPartition) -> PartitionTracker:
        tracker = self.trackers.get(tp)
        if tracker is None:
            tracker = self.trackers[tp] = PartitionTracker(tp.topic, tp.partition)
            tracker.hold_until = self.assigned_ends.pop(tp, None)
        return tracker

    def owned(self, tps: Iterable[TopicPartition]) -> set[PartitionTracker]:
        return {self.trackers[tp] for tp in tps if tp in self.trackers}

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self.trackers.pop(tp, None)

    @property
    def unsettled(self) -> int:
        """Messages consumed from owned partitions whose results are not published yet."""
        return sum(t.pending for t in self.trackers.values())

    @property
    def unsettled_bytes(self) -> int:
        """Bytes of the messages not settled yet: what the buffers hold in memory."""
        return sum(t.pending_bytes for t in self.trackers.values())

    def full(self, max_items: int, max_bytes: int) -> bool:
        """At the memory bound: too many messages unsettled, or too many bytes."""
        return self.unsettled >= max_items or self.unsettled_bytes >= max_bytes

    def below_half(self, max_items: int, max_bytes: int) -> bool:
        return self.unsettled <= max_items // 2 and self.unsettled_bytes <= max_bytes // 2

    @property
    def catching_up(self) -> bool:
        return any(t.hold_until is not None for t in self.trackers.values())
