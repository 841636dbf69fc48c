"""Per-partition commit watermarks: commit only what is done, contiguously.

A partition's tracker sees every consumed offset in order. An offset becomes *done* when
its result (or DLQ record) is published — for a superseded message, when the message
that superseded it is done. `committable()` is the offset after the longest done prefix,
i.e. what Kafka should store as the group's position. Offsets need not be contiguous
integers (transaction markers, compaction), so the tracker orders what it saw rather
than counting.

A tracker is dropped when its partition is revoked; work that finishes later marks a
dead tracker, which ignores it, so a stale completion can never advance the commit of a
partition this process no longer owns (or owns again under a new tracker).
"""

from __future__ import annotations

from collections import deque


class PartitionTracker:
    __slots__ = (
        "_done",
        "_order",
        "_sizes",
        "alive",
        "committed",
        "hold_until",
        "partition",
        "pending_bytes",
        "topic",
        "watermark",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self._order: deque[int] = deque()  # consumed, not yet in the done prefix
        self._done: set[int] = set()
        self._sizes: dict[int, int] = {}  # offset → bytes, of messages not done yet
        self.pending_bytes = 0
        self.watermark: int | None = None  # next offset to commit
        self.committed: int | None = None  # last offset sent to Kafka
        self.alive = True
        # After an assignment: the partition's end offset then. Until the consumer gets
        # there it is re-reading messages a crashed owner may already have sent, so their
        # items wait to merge with their successors instead of overwriting them.
        self.hold_until: int | None = None

    def caught_up(self, offset: int) -> None:
        if self.hold_until is not None and offset + 1 >= self.hold_until:
            self.hold_until = None

    def idle_at(self, position: int) -> None:
        """The consumer is at `position` and nothing of this partition is pending: the
        offsets before it that yielded no record (transaction markers, aborted records)
        are done too, so the commit can reach the partition's end."""
        if self._order or not self.alive or position <= (self.watermark or 0):
            return  # pending work, revoked, or nothing new (an empty partition commits nothing)
        self.watermark = position

    def __repr__(self) -> str:
        return f"PartitionTracker({self.topic}[{self.partition}] watermark={self.watermark})"

    def add(self, offset: int, size: int = 0) -> None:
        """A consumed message; `size`: its bytes, held in memory until it is done."""
        if self._order and offset <= self._order[-1]:
            raise ValueError(f"offset {offset} is not after {self._order[-1]}")
        self._order.append(offset)
        if size:
            self._sizes[offset] = size
            self.pending_bytes += size

    def done(self, offset: int) -> None:
        if not self.alive:
            return
        self.pending_bytes -= self._sizes.pop(offset, 0)
        self._done.add(offset)
        order, done = self._order, self._done
        while order and order[0] in done:
            finished = order.popleft()
            done.discard(finished)
            self.watermark = finished + 1

    @property
    def pending(self) -> int:
        return len(self._order)

    def committable(self) -> int | None:
        """The offset to commit if it moved since the last commit, else None."""
        if self.watermark is None or self.watermark == self.committed:
            return None
        return self.watermark
