"""Commits and rebalances: only settled offsets are committed, and only while owned.

Every `commit_interval_ms` each owned partition's watermark that moved is committed
(shared.offsets: an offset is committed once every message up to it has its result
published). On revocation, buckets holding the revoked partitions' items are flushed at
once (the scheduler sees them as urgent); what is not settled within
`revoke_flush_deadline_s` is dropped — buffered items, and sends still in flight are
stopped (a request already on the wire is waited for, since the server applies it anyway),
so no old batch reaches M2E after the new owner's — and only the settled
prefix is committed, while the partitions are still ours. On assignment, each input
partition's end offset is noted, so its re-read items can be held until it caught up, and
each retry partition's waiting messages are counted (shared.worker.park).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.offsets import PartitionTracker
from shared.worker.context import Context
from shared.worker.park import Parker
from shared.worker.scheduler import Scheduler

log = logging.getLogger("m2e_sync.worker")

ConsumerRef = Callable[[], AIOKafkaConsumer | None]


class Committer:
    def __init__(self, ctx: Context, consumer: ConsumerRef) -> None:
        self._ctx = ctx
        self._consumer = consumer
        self._lock = asyncio.Lock()
        self.closed = False
        # From a revocation until the next assignment the member is (re)joining: a periodic
        # commit then carries the old generation, and aiokafka, failing it, resets the
        # generation the join just got — the member rejoins and restarts the rebalance for
        # everyone, over and over. The revocation commits what it gives up itself.
        self.rebalancing = False

    async def run(self, interval_s: float) -> None:
        while not self.closed:
            await asyncio.sleep(interval_s)
            if not self.rebalancing:
                await self.commit()

    async def commit(self, only: set[PartitionTracker] | None = None) -> None:
        """Commit the watermark of every owned partition (or of `only`) that moved."""
        consumer = self._consumer()
        if consumer is None:
            return
        async with self._lock:
            offsets: dict[TopicPartition, int] = {}
            chosen: list[tuple[PartitionTracker, int]] = []
            assigned = consumer.assignment()
            for tp, tracker in self._ctx.partitions.trackers.items():
                if only is not None and tracker not in only:
                    continue
                if tp not in assigned:
                    continue  # one commit naming a partition not ours would fail them all
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
        self,
        ctx: Context,
        committer: Committer,
        scheduler: Scheduler,
        parker: Parker,
        consumer: ConsumerRef,
    ) -> None:
        self._ctx = ctx
        self._committer = committer
        self._scheduler = scheduler
        self._parker = parker
        self._consumer = consumer

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._committer.rebalancing = False
        assigned = set(assigned)
        log.info("partitions assigned: %s", _names(assigned))
        consumer = self._consumer()
        if consumer is None or not assigned:
            return
        # The poll loop runs meanwhile: nothing of these is read until they are counted.
        self._parker.unready |= assigned
        consumer.pause(*assigned)
        try:
            await self._prepare(consumer, assigned)
        finally:
            self._parker.unready -= assigned  # the poll loop resumes them
        unpaired = self._parker.unpaired(consumer.assignment())
        if unpaired:
            log.warning(
                "input and retry partitions %s are not owned together (a replica of an older "
                "version in the group?): a parked account's order is kept only for pairs",
                sorted(unpaired),
            )

    async def _prepare(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        inputs = [tp for tp in assigned if not self._parker.is_retry(tp.topic)]
        try:
            ends = await consumer.end_offsets(inputs) if inputs else {}
        except KafkaError as exc:  # only coalescing after a restart is lost
            log.warning("end offsets unavailable, no catch-up hold: %s", exc)
            ends = {}
        self._ctx.partitions.assigned_ends.update({tp: end for tp, end in ends.items() if end > 0})
        numbers = {tp.partition for tp in inputs}
        if numbers:
            await _retrying("preparing the service", lambda: self._ctx.service.assigned(numbers))
        # Without the count a new message could overtake an older one waiting in the retry
        # topic: no record is read until it is done.
        await _retrying("counting the retry topic", lambda: self._parker.scan(consumer, assigned))

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._committer.rebalancing = True
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
            # Dead and out of the buffers at once, before anything else is awaited: the
            # scheduler must not start a send of them while we wait below.
            for tracker in trackers:
                tracker.alive = False
            dropped = self._ctx.coalescer.drop_partitions(trackers)
            partitions.revoking -= trackers
            await self._committer.commit(trackers)
            cancelled = await self._scheduler.abandon(trackers)
            if dropped or cancelled:
                log.warning(
                    "revoked partitions: %d buffered items dropped, %d sends cancelled; "
                    "their new owner sends them",
                    dropped,
                    cancelled,
                )
        numbers = {tp.partition for tp in revoked if not self._parker.is_retry(tp.topic)}
        if numbers:
            try:
                await self._ctx.service.revoked(numbers)
            except Exception:
                log.exception("%s failed to let partitions go", self._ctx.service.name)
        partitions.forget(revoked)
        self._parker.forget(revoked)
        log.info("partitions revoked: %s", _names(revoked))


async def _retrying(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """`step` until it does not raise a KafkaError, backing off up to 10 s."""
    delay = 0.5
    while True:
        try:
            await step()
            return
        except KafkaError as exc:
            log.warning("%s failed, retrying: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
