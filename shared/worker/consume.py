"""The poll loop: `getmany` → decode → coalesce, with backpressure.

It never waits for the API or the limiter, so `max.poll.interval` is never at risk.
Each record is decoded and validated by the service; an invalid one is settled at once
(dead letter and `failed` result) and consumption goes on. Fetching pauses while more
than `max_pending_items` messages, or more than `max_pending_bytes` of them, are
unsettled, and resumes below half of both: memory is bounded in bytes too, so a worker
holding large inline invoices pauses long before its pod's memory limit.

The retry topic (shared.worker.park) is read like the input, except that a record not
yet due pauses its partition until it is, and that no more of a retry partition is taken
than keeps a batch's worth of its messages unsettled: parked accounts, and a hot account's
backlog coming back, never fill the memory bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from shared.coalescer import Pending, Source
from shared.results import OutRecord
from shared.service import OK, InvalidMessage
from shared.worker.context import Context
from shared.worker.park import Parker, retry_info
from shared.worker.settle import Settler

log = logging.getLogger("m2e_sync.worker")

POLL_TIMEOUT_MS = 200


class Poller:
    def __init__(self, ctx: Context, settler: Settler, parker: Parker) -> None:
        self._ctx = ctx
        self._settler = settler
        self._parker = parker
        self._due_at: dict[TopicPartition, float] = {}  # retry partitions waiting for a record
        self.last_poll = ctx.clock()
        self.paused = False
        self.stopping = False

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping:
            self._backpressure(consumer)
            try:
                batch = await self._poll(consumer)
            except KafkaError as exc:
                log.warning("poll failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.last_poll = self._ctx.clock()
            for tp in self._parker.unready & batch.keys():  # fetched before it was paused
                consumer.seek(tp, batch.pop(tp)[0].offset)
            if batch:
                await self.ingest(self._due(consumer, batch))
            await self._follow_positions(consumer)

    async def _poll(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """One poll: the input partitions' records, then of each retry partition no more
        than keeps a batch's worth unsettled. A single `getmany` over both would hand over
        a whole fetch of a retry partition at once (up to `kafka_max_poll_records`), and a
        hot account's backlog read back would fill the memory bound and pause fetching for
        everyone. What a poll leaves stays in the consumer's buffer for the next one."""
        assigned = consumer.assignment()
        inputs = [tp for tp in assigned if not self._parker.is_retry(tp.topic)]
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
        if inputs:
            batch = await consumer.getmany(
                *inputs,
                timeout_ms=POLL_TIMEOUT_MS,
                max_records=self._ctx.settings.kafka_max_poll_records,
            )
        else:  # `getmany()` with no partitions would read the retry ones whole
            await asyncio.sleep(POLL_TIMEOUT_MS / 1000)
        bound, trackers, paused = (
            self._ctx.coalescer.max_items,
            self._ctx.partitions.trackers,
            consumer.paused(),
        )
        for tp in assigned:
            if not self._parker.is_retry(tp.topic) or tp in paused:
                continue
            tracker = trackers.get(tp)
            room = bound - (tracker.pending if tracker is not None else 0)
            if room > 0:
                batch.update(await consumer.getmany(tp, timeout_ms=0, max_records=room))
        return batch

    async def _follow_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Offsets that never yield a record — transaction markers, aborted records, as any
        transactional upstream producer leaves them — are passed by the consumer's position
        alone: it says when a partition caught up with its end at assignment (so its held
        items go), and, once nothing of the partition is pending, what may be committed."""
        partitions = self._ctx.partitions
        for tp in consumer.assignment():
            known = partitions.trackers.get(tp)
            if known is not None and known.hold_until is None and known.pending:
                continue  # the common case: records, their own offsets, will do
            try:
                position = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked meanwhile
            if tp not in consumer.assignment():
                continue  # revoked meanwhile: a tracker made now would outlive it
            tracker = partitions.tracker(tp)
            held = tracker.hold_until is not None
            tracker.caught_up(position - 1)
            tracker.idle_at(position)
            if held and tracker.hold_until is None:
                self._ctx.signals.wake.set()

    def _due(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        """Cut each retry partition's records at the first one not yet due: the partition
        goes back to it and pauses until then."""
        for tp, records in batch.items():
            if not self._parker.is_retry(tp.topic):
                continue
            for i, rec in enumerate(records):
                info = retry_info(rec.headers)
                wait = 0.0 if info is None else self._parker.admit(info)
                if wait > 0:
                    consumer.seek(tp, rec.offset)
                    self._due_at[tp] = self._ctx.clock() + wait
                    batch[tp] = records[:i]
                    break
        return batch

    def retry_now(self) -> None:
        """Look at every waiting retry partition again at the next poll (an account's token
        changed: its records are due now)."""
        self._due_at.clear()

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        partitions, s = self._ctx.partitions, self._ctx.settings
        bounds = (s.max_pending_items, s.max_pending_bytes)
        if partitions.full(*bounds) and not self.paused:
            self.paused = partitions.fetching_paused = True
            self._ctx.metrics.paused.labels(self._ctx.label).set(1)
            log.info(
                "fetching paused: %d unsettled messages, %d bytes",
                partitions.unsettled,
                partitions.unsettled_bytes,
            )
        elif self.paused and partitions.below_half(*bounds):
            self.paused = partitions.fetching_paused = False
            self._ctx.metrics.paused.labels(self._ctx.label).set(0)
            log.info("fetching resumed: %d unsettled messages", partitions.unsettled)
        assigned = consumer.assignment()
        want = set(assigned) if self.paused else self._waiting_retries(assigned)
        want |= self._parker.unready & assigned
        paused = consumer.paused()
        if want - paused:  # also covers newly assigned partitions
            consumer.pause(*(want - paused))
        if paused - want:
            consumer.resume(*(paused - want))

    def _waiting_retries(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        """Retry partitions that wait for their next record's time, or hold a batch's worth
        of unsettled messages."""
        now, bound = self._ctx.clock(), self._ctx.coalescer.max_items
        for tp in [tp for tp, at in self._due_at.items() if at <= now or tp not in assigned]:
            del self._due_at[tp]
        trackers = self._ctx.partitions.trackers
        return {
            tp
            for tp in assigned
            if self._parker.is_retry(tp.topic)
            and (tp in self._due_at or (tp in trackers and trackers[tp].pending >= bound))
        }

    async def ingest(self, batch: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Decode and buffer one poll's records; settle the invalid ones, and those read back
        after a newer one of their key, at once."""
        now: list[OutRecord] = []  # results (and dead letters) of messages settled at once
        settled: list[Source] = []
        decode = self._ctx.service.decode
        add = self._ctx.coalescer.add
        must_follow, in_order = self._parker.must_follow, self._parker.in_order
        for tp, records in batch.items():
            tracker = self._ctx.partitions.tracker(tp)
            retry = self._parker.is_retry(tp.topic)
            for rec in records:
                tracker.add(rec.offset, len(rec.value or b"") + len(rec.key or b""))
                info = retry_info(rec.headers) if retry else None
                if info is not None:
                    self._parker.read_back(tp.partition, info)
                try:
                    d = decode(rec.key, rec.value, rec.headers)
                except InvalidMessage as exc:
                    now += self._settler.invalid(
                        rec, exc.error_class, exc.reason, exc.account_token, exc.key
                    )
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                except Exception as exc:  # a decoder bug must not stop consumption
                    log.exception("decoder failed on %s[%d]@%d", tp.topic, tp.partition, rec.offset)
                    now += self._settler.invalid(rec, type(exc).__name__, str(exc), None, None)
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                # The original bytes stay with the item: whatever fails it at send time
                # (a poison item, a refused invoice URL) dead-letters the message itself.
                source = Source(
                    tracker,
                    rec.offset,
                    rec.key,
                    d.event_id,
                    rec.value,
                    tuple(rec.headers or ()),
                    None if info is None else info.origin,
                )
                payload = d.payload
                if info is not None:
                    merge = self._ctx.coalescer.merge_rule(d.operation)
                    kept = in_order(
                        tp.partition, d.account_token, d.key, info.origin, payload, merge
                    )
                    if kept is None:  # a newer update of its key came back before it
                        stale = Pending(d.key, d.payload, [], superseded=[source])
                        out, done = self._settler.results(
                            d.account_token, d.operation, [stale], [OK]
                        )
                        now += out
                        settled += done
                        continue
                    payload = kept
                park = not retry and must_follow(tp.partition, d.account_token)
                add(d.account_token, d.operation, d.key, payload, source, park=park)
            if records:
                tracker.caught_up(records[-1].offset)
            self._ctx.metrics.consumed.labels(self._ctx.label, tp.topic).inc(len(records))
        self._parker.forget_read()
        if now:
            await self._settler.settle(now, settled)
        self._ctx.signals.wake.set()
