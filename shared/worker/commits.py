"""Commits and rebalances: only settled offsets are committed, and only while owned.

Every `commit_interval_ms` each owned partition's watermark that moved is committed
(shared.offsets: an offset is committed once every message up to it has its result
published). On revocation, buckets holding the revoked partitions' items are flushed at
once (the scheduler sees them as urgent); what is not settled within
`revoke_flush_deadline_s` is dropped — buffered items, and sends still in flight are
cancelled, so no old batch reaches M2E after the new owner's — and only the settled
prefix is committed, while the partitions are still ours. On assignment, each partition's
end offset is noted, so its re-read items can be held until it caught up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.offsets import PartitionTracker
from shared.worker.context import Context
from shared.worker.scheduler import Scheduler

log = logging.getLogger("m2e_sync.worker")

ConsumerRef = Callable[[], AIOKafkaConsumer | None]


class Committer:
    def __init__(self, ctx: Context, consumer: ConsumerRef) -> None:
        self._ctx = ctx
        self._consumer = consumer
        self._lock = asyncio.Lock()
        self.closed = False

    async def run(self, interval_s: float) -> None:
        while not self.closed:
            await asyncio.sleep(interval_s)
            await self.commit()

    async def commit(self, only: set[PartitionTracker] | None = None) -> None:
        """Commit the watermark of every owned partition (or of `only`) that moved."""
        consumer = self._consumer()
        if consumer is None:
            return
        async with self._lock:
            offsets: dict[TopicPartition, int] = {}
            chosen: list[tuple[PartitionTracker, int]] = []
            for tp, tracker in self._ctx.partitions.trackers.items():
                if only is not None and tracker not in only:
                    continue
                offset = tracker.committable()
                if offset is not None:
                    offsets[tp] = offset
                    chosen.append((tracker, offset))
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                log.warning("commit failed (will retry): %s", exc)
                return
            for tracker, offset in chosen:
                tracker.committed = offset
            self._ctx.metrics.commits.labels(self._ctx.label).inc()


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self, ctx: Context, committer: Committer, scheduler: Scheduler, consumer: ConsumerRef
    ) -> None:
        self._ctx = ctx
        self._committer = committer
        self._scheduler = scheduler
        self._consumer = consumer

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = set(assigned)
        log.info("partitions assigned: %s", _names(assigned))
        consumer = self._consumer()
        if consumer is None or not assigned:
            return
        try:
            ends = await consumer.end_offsets(list(assigned))
        except KafkaError as exc:  # only coalescing after a restart is lost
            log.warning("end offsets unavailable, no catch-up hold: %s", exc)
            return
        self._ctx.partitions.assigned_ends.update({tp: end for tp, end in ends.items() if end > 0})

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = set(revoked)
        partitions = self._ctx.partitions
        trackers = partitions.owned(revoked)
        if trackers:
            partitions.revoking |= trackers
            self._ctx.signals.wake.set()
            deadline = self._ctx.clock() + self._ctx.settings.revoke_flush_deadline_s
            await self._ctx.signals.wait_until(
                lambda: not any(t.pending for t in trackers), deadline
            )
            await self._committer.commit(trackers)
            for tracker in trackers:
                tracker.alive = False
            cancelled = await self._scheduler.abandon(trackers)
            dropped = self._ctx.coalescer.drop_partitions(trackers)
            partitions.revoking -= trackers
            if dropped or cancelled:
                log.warning(
                    "revoked partitions: %d buffered items dropped, %d sends cancelled; "
                    "their new owner sends them",
                    dropped,
                    cancelled,
                )
        partitions.forget(revoked)
        log.info("partitions revoked: %s", _names(revoked))


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
