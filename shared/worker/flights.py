"""Batches in flight per bucket (account and operation), and the item keys they carry.

A bucket's next batch leaves out every key still in flight, so two events for one SKU
never reach the API — nor publish their results — out of order, while batches of other
keys go alongside, up to `BATCH_MAX_IN_FLIGHT` of them: a burst under a fresh window is
sent at once instead of one round trip after another. (The scheduler lets only full
batches go alongside.)"""

from __future__ import annotations

from collections.abc import Iterable, Set

from shared.coalescer import Bucket, BucketKey


class Flights:
    def __init__(self, most: int) -> None:
        self._most = most
        self._keys: dict[BucketKey, set[str]] = {}  # keys in flight (disjoint across batches)
        self._batches: dict[BucketKey, int] = {}

    def busy(self, bucket: BucketKey) -> bool:
        return bucket in self._batches

    def full(self, bucket: BucketKey) -> bool:
        return self._batches.get(bucket, 0) >= self._most

    def keys(self, bucket: BucketKey) -> Set[str]:
        return self._keys.get(bucket, frozenset())

    def ready(self, bucket: Bucket) -> int:
        """How many of the bucket's items could go in its next batch."""
        flying = self._keys.get(bucket.key)
        if not flying:
            return len(bucket)
        return len(bucket) - sum(1 for key in flying if key in bucket.items)

    def start(self, bucket: BucketKey, keys: Iterable[str]) -> None:
        self._keys.setdefault(bucket, set()).update(keys)
        self._batches[bucket] = self._batches.get(bucket, 0) + 1

    def end(self, bucket: BucketKey, keys: Iterable[str]) -> None:
        left = self._batches[bucket] - 1
        if left:
            self._batches[bucket] = left
            self._keys[bucket].difference_update(keys)
        else:
            del self._batches[bucket]
            self._keys.pop(bucket, None)
