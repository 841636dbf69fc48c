"""Coalescing buffers: many small events become few ≤500-item batches.

Events are buffered per bucket — (account_token, operation) — and, inside a bucket, per
key (the SKU): a later event for the same key is merged into the pending item by the
bucket's merge rule. When a batch is taken and sent is the scheduler's decision
(shared.worker.scheduler); the coalescer only keeps the buffers, in arrival order.

Time comes from an injected clock (an item's `since`), so linger is tested without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from shared.clock import Clock
from shared.offsets import PartitionTracker

MAX_BATCH_ITEMS = 500  # the API's maxItems; no setting can exceed it

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """Where one input message came from; `tracker` marks it done."""

    tracker: PartitionTracker
    offset: int
    key: bytes | None = None
    event_id: str | None = None
    # The original message: a dead letter written at send time carries it.
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    # Read back from the retry topic: the message's offset in the input topic.
    origin: int | None = None

    @property
    def input_offset(self) -> int:
        return self.offset if self.origin is None else self.origin

    @property
    def topic(self) -> str:
        return self.tracker.topic

    @property
    def partition(self) -> int:
        return self.tracker.partition


@dataclass(slots=True)
class Pending:
    """One item waiting to be sent: the merged payload and every message behind it."""

    key: str
    payload: Payload
    sources: list[Source]
    # Sources whose own content a later event replaced (results say `superseded`).
    superseded: list[Source] = field(default_factory=list)
    since: float = 0.0
    attempts: int = 0  # sends of this item so far
    # Its account has older messages waiting in the retry topic: it goes there too, behind them.
    must_park: bool = False
    # Answered "not yet" (ItemOutcome.retry_for_s): first answered then; waits until not_before.
    failing_since: float | None = None
    not_before: float = 0.0


class MergeRule(Protocol):
    def __call__(self, older: Payload, newer: Payload) -> tuple[Payload, bool]:
        """Merge two payloads for one key; True when `newer` replaces `older` whole."""
        ...


def last_write_wins(older: Payload, newer: Payload) -> tuple[Payload, bool]:
    return newer, True


def merge_fields(older: Payload, newer: Payload) -> tuple[Payload, bool]:
    """Partial updates: each field takes its latest value; nothing is lost."""
    return {**older, **newer}, False


# A payload's event time (epoch seconds, from the event's `occurred_at`), when it has one.
AT = "_at"


def by_event_time(rule: MergeRule) -> MergeRule:
    """`rule`, applied in event-time order: when the later arrival is the older event (a DLQ
    replay, another topic's lag), the earlier arrival's content wins."""

    def merge(older: Payload, newer: Payload) -> tuple[Payload, bool]:
        first, second = older.get(AT), newer.get(AT)
        if first is not None and second is not None and second < first:
            merged, _ = rule(newer, older)
            return merged, False
        return rule(older, newer)

    return merge


@dataclass(frozen=True, slots=True)
class BucketKey:
    account_token: str
    operation: str


class Bucket:
    __slots__ = ("items", "key", "merge", "waiting")

    def __init__(self, key: BucketKey, merge: MergeRule) -> None:
        self.key = key
        self.merge = merge
        self.items: dict[str, Pending] = {}  # insertion order = arrival order of keys
        # Items to be sent again later (Coalescer.hold); newer events of their keys join them.
        self.waiting: dict[str, Pending] = {}

    def __len__(self) -> int:
        return len(self.items)

    def oldest(self) -> float:
        """When its oldest item arrived (infinity: it has none)."""
        for pending in self.items.values():
            return pending.since
        return math.inf


class Coalescer:
    def __init__(
        self,
        merge_rules: dict[str, MergeRule],
        max_items: int,
        clock: Clock,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = min(max_items, MAX_BATCH_ITEMS)
        self._rules = merge_rules
        self._clock = clock
        self.buckets: dict[BucketKey, Bucket] = {}
        self.size = 0  # pending items across buckets
        self.held = 0  # of which set aside to be sent later (hold)

    def merge_rule(self, operation: str) -> MergeRule:
        return self._rules[operation]

    def add(
        self,
        account_token: str,
        operation: str,
        key: str,
        payload: Payload,
        source: Source,
        *,
        park: bool = False,
    ) -> None:
        bkey = BucketKey(account_token, operation)
        bucket = self.buckets.get(bkey)
        if bucket is None:
            bucket = self.buckets[bkey] = Bucket(bkey, self._rules[operation])
        pending = bucket.items.get(key) or bucket.waiting.get(key)
        if pending is None:
            bucket.items[key] = Pending(key, payload, [source], since=self._clock(), must_park=park)
            self.size += 1
            return
        pending.must_park |= park
        if source.origin is not None and any(s.origin is None for s in pending.sources):
            # Read back from the retry topic: older than any message of its key read from
            # the input since (those went to the retry topic behind it, or came after it).
            merged, replaced = bucket.merge(payload, pending.payload)
            pending.payload = merged
            if replaced:
                pending.superseded.append(source)
            else:
                pending.sources.insert(0, source)
            return
        merged, replaced = bucket.merge(pending.payload, payload)
        pending.payload = merged
        if replaced:
            pending.superseded.extend(pending.sources)
            pending.sources = [source]
        else:
            pending.sources.append(source)

    def requeue(self, bucket: Bucket, items: list[Pending]) -> None:
        """Put a batch that could not be sent back in front, merging newer arrivals in."""
        newer = bucket.items
        bucket.items = {}
        for pending in items:
            bucket.items[pending.key] = pending
            self.size += 1
        for key, pending in newer.items():
            old = bucket.items.get(key)
            if old is None:
                bucket.items[key] = pending
                continue
            self.size -= 1
            self._absorb(bucket, old, pending)

    @staticmethod
    def _absorb(bucket: Bucket, old: Pending, newer: Pending) -> None:
        merged, replaced = bucket.merge(old.payload, newer.payload)
        old.payload = merged
        if replaced:
            old.superseded.extend(old.sources)
            old.sources = list(newer.sources)
        else:
            old.sources.extend(newer.sources)
        old.superseded.extend(newer.superseded)
        old.must_park |= newer.must_park

    def hold(self, bucket: Bucket, items: list[Pending]) -> None:
        """Set sent items aside until each one's `not_before`; a newer event of the same key
        that arrived meanwhile joins it, so nothing of that key overtakes it."""
        for pending in items:
            newer = bucket.items.pop(pending.key, None)
            if newer is not None:
                self.size -= 1
                self._absorb(bucket, pending, newer)
            bucket.waiting[pending.key] = pending
            self.size += 1
            self.held += 1

    def release_due(self, bucket: Bucket, now: float) -> float:
        """Put waiting items whose time came back in front; returns when the next one is due."""
        due = [p for p in bucket.waiting.values() if p.not_before <= now]
        if due:
            for pending in due:
                del bucket.waiting[pending.key]
            self.size -= len(due)
            self.held -= len(due)
            self.requeue(bucket, due)
        return min((p.not_before for p in bucket.waiting.values()), default=math.inf)

    def take(self, bucket: Bucket, skip: Set[str] = frozenset()) -> list[Pending]:
        """Remove up to max_items items, oldest first, but none of the keys in `skip`
        (in flight): the next batch to send."""
        batch: list[Pending] = []
        for key in list(islice((k for k in bucket.items if k not in skip), self.max_items)):
            batch.append(bucket.items.pop(key))
        self.size -= len(batch)
        return batch

    def remove(self, bucket: Bucket, items: list[Pending]) -> None:
        for pending in items:
            del bucket.items[pending.key]
        self.size -= len(items)

    def discard(self, bucket: Bucket) -> None:
        """Forget a bucket with nothing in it (an idle account costs nothing per wake); its
        next event makes a new one."""
        if not (bucket.items or bucket.waiting) and self.buckets.get(bucket.key) is bucket:
            del self.buckets[bucket.key]

    def drop_partitions(self, trackers: set[PartitionTracker]) -> int:
        """Forget buffered items from revoked partitions (their new owner re-reads them)."""
        dropped = 0
        for bucket in self.buckets.values():
            for items in (bucket.items, bucket.waiting):
                for key in [k for k, p in items.items() if p.sources[0].tracker in trackers]:
                    del items[key]
                    dropped += 1
                    self.held -= items is bucket.waiting
        self.size -= dropped
        return dropped

    def __iter__(self) -> Iterator[Bucket]:
        return iter(self.buckets.values())
