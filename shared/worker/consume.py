"""The poll loop: `getmany` → decode → coalesce, with backpressure.

It never waits for the API or the limiter, so `max.poll.interval` is never at risk.
Each record is decoded and validated by the service; an invalid one is settled at once
(dead letter and `failed` result) and consumption goes on. Fetching pauses while more
than `max_pending_items` messages, or more than `max_pending_bytes` of them, are
unsettled, and resumes below half of both: memory is bounded in bytes too, so a worker
holding large inline invoices pauses long before its pod's memory limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared.coalescer import Source
from shared.results import OutRecord
from shared.service import InvalidMessage
from shared.worker.context import Context
from shared.worker.settle import Settler

log = logging.getLogger("m2e_sync.worker")

POLL_TIMEOUT_MS = 200


class Poller:
    def __init__(self, ctx: Context, settler: Settler) -> None:
        self._ctx = ctx
        self._settler = settler
        self.last_poll = ctx.clock()
        self.paused = False
        self.stopping = False

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping:
            self._backpressure(consumer)
            try:
                batch = await consumer.getmany(
                    timeout_ms=POLL_TIMEOUT_MS,
                    max_records=self._ctx.settings.kafka_max_poll_records,
                )
            except KafkaError as exc:
                log.warning("poll failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.last_poll = self._ctx.clock()
            if batch:
                await self.ingest(batch)
            await self._follow_positions(consumer)

    async def _follow_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Offsets that never yield a record — transaction markers, aborted records, as any
        transactional upstream producer leaves them — are passed by the consumer's position
        alone: it says when a partition caught up with its end at assignment (so its held
        items go), and, once nothing of the partition is pending, what may be committed."""
        partitions = self._ctx.partitions
        for tp in consumer.assignment():
            tracker = partitions.tracker(tp)
            if tracker.hold_until is None and tracker.pending:
                continue  # the common case: records, their own offsets, will do
            position = await consumer.position(tp)
            held = tracker.hold_until is not None
            tracker.caught_up(position - 1)
            tracker.idle_at(position)
            if held and tracker.hold_until is None:
                self._ctx.signals.wake.set()

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        partitions, s = self._ctx.partitions, self._ctx.settings
        bounds = (s.max_pending_items, s.max_pending_bytes)
        if partitions.full(*bounds):
            consumer.pause(*consumer.assignment())  # also covers newly assigned partitions
            if not self.paused:
                self.paused = partitions.fetching_paused = True
                self._ctx.metrics.paused.labels(self._ctx.label).set(1)
                log.info(
                    "fetching paused: %d unsettled messages, %d bytes",
                    partitions.unsettled,
                    partitions.unsettled_bytes,
                )
        elif self.paused and partitions.below_half(*bounds):
            consumer.resume(*consumer.assignment())
            self.paused = partitions.fetching_paused = False
            self._ctx.metrics.paused.labels(self._ctx.label).set(0)
            log.info("fetching resumed: %d unsettled messages", partitions.unsettled)

    async def ingest(self, batch: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Decode and buffer one poll's records; settle the invalid ones at once."""
        invalid: list[OutRecord] = []
        settled: list[Source] = []
        decode = self._ctx.service.decode
        add = self._ctx.coalescer.add
        for tp, records in batch.items():
            tracker = self._ctx.partitions.tracker(tp)
            for rec in records:
                tracker.add(rec.offset, len(rec.value or b"") + len(rec.key or b""))
                try:
                    d = decode(rec.key, rec.value, rec.headers)
                except InvalidMessage as exc:
                    invalid += self._settler.invalid(
                        rec, exc.error_class, exc.reason, exc.account_token, exc.key
                    )
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                except Exception as exc:  # a decoder bug must not stop consumption
                    log.exception("decoder failed on %s[%d]@%d", tp.topic, tp.partition, rec.offset)
                    invalid += self._settler.invalid(rec, type(exc).__name__, str(exc), None, None)
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                # The original bytes stay with the item: whatever fails it at send time
                # (a poison item, a refused invoice URL) dead-letters the message itself.
                source = Source(
                    tracker, rec.offset, rec.key, d.event_id, rec.value, tuple(rec.headers or ())
                )
                add(d.account_token, d.operation, d.key, d.payload, source)
            if records:
                tracker.caught_up(records[-1].offset)
            self._ctx.metrics.consumed.labels(self._ctx.label, tp.topic).inc(len(records))
        if invalid:
            await self._settler.settle(invalid, settled)
        self._ctx.signals.wake.set()
