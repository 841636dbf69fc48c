"""The consume loop: poll → decode → coalesce → flush → publish results → commit.

Three tasks share one event loop:

- **poll**: `getmany` on aiokafka (auto-commit off), decode and validate each message,
  buffer it in the coalescer, DLQ what is invalid; pause fetching while more than
  `max_pending_items` messages are unsettled, resume below half of it. It never waits
  for the API or the limiter, so `max.poll.interval` is never at risk.
- **schedule**: decides which buckets are due (shared.coalescer) and starts one flush
  task per due bucket; a throttled or failing account never holds up another's.
- **commit**: every `commit_interval_ms`, commits each owned partition's watermark
  (shared.offsets): an offset is committed only once every message up to it has its
  result published.

On revocation, buckets holding the revoked partitions' items are flushed at once; what
is not settled within `revoke_flush_deadline_s` is dropped (the new owner reads it again)
and only the settled prefix is committed, while the partitions are still ours. On stop
(SIGTERM) everything buffered is flushed, published and committed within
`shutdown_grace_s`. A batch that fails transiently, or whose account answers 401, is put
back unsettled and its bucket backs off: nothing is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.coalescer import Bucket, Coalescer, Pending, Source
from shared.config import WorkerSettings
from shared.limiter import Limiter
from shared.m2e.client import M2EClient, TransientFailure, Unauthorized
from shared.metrics import Metrics
from shared.offsets import PartitionTracker
from shared.results import (
    ErrorInfo,
    OutRecord,
    Publisher,
    ResultRecord,
    ResultTemplate,
    SourceRef,
    dlq_headers,
)
from shared.service import InvalidMessage, ItemOutcome, Service
from shared.topics import dlq_topic, results_topic

log = logging.getLogger("m2e_sync.runtime")

Clock = Callable[[], float]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._worker.on_assigned(set(assigned))


class Worker:
    def __init__(
        self,
        service: Service,
        settings: WorkerSettings,
        client: M2EClient,
        limiter: Limiter,
        publisher: Publisher,
        metrics: Metrics,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.service = service
        self.settings = settings
        self.client = client
        self.limiter = limiter
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.coalescer = Coalescer(
            dict(service.merge_rules),
            settings.batch_max_items,
            settings.batch_linger_ms / 1000,
            clock,
        )
        self.trackers: dict[TopicPartition, PartitionTracker] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.last_poll = clock()
        self.input_topic = settings.kafka_input_topic or service.input_topic
        self.results_topic = results_topic(self.input_topic)
        self.dlq_topic = dlq_topic(self.input_topic)
        self._wake = asyncio.Event()  # the scheduler has something to look at
        self._progress = asyncio.Event()  # a batch finished or messages were settled
        self._tasks: list[asyncio.Task[None]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._revoking: set[PartitionTracker] = set()
        self._assigned_ends: dict[TopicPartition, int] = {}  # end offsets at assignment
        self._ready_at: dict[str, float] = {}  # account → when the limiter expects a token
        self._failures: dict[Any, int] = {}  # bucket key → consecutive failed sends
        self._commit_lock = asyncio.Lock()
        self._paused = False
        self._stopping = False  # no more polling
        self._draining = False  # flush everything, linger or not
        self._closed = False  # the loops end
        self._label = service.name

    # ------------------------------------------------------------------ lifecycle
    def _make_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id(self.service.name),
            group_instance_id=s.kafka_group_instance_id,
            client_id=f"m2e-sync.{self.service.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group starts from the beginning
            isolation_level="read_committed",
            session_timeout_ms=s.kafka_session_timeout_ms,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=32 << 20,
            **s.kafka_security(),
        )

    async def start(self) -> None:
        start = getattr(self.service, "start", None)
        if start is not None:  # services with resources of their own (order-poller)
            await start()
        await self.publisher.start()
        self.consumer = self._make_consumer()
        self.consumer.subscribe([self.input_topic], listener=_Listener(self))
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="poll"),
            asyncio.create_task(self._schedule_loop(), name="schedule"),
            asyncio.create_task(self._commit_loop(), name="commit"),
        ]
        log.info(
            "worker started",
            extra={"service": self.service.name, "topic": self.input_topic},
        )

    async def stop(self) -> None:
        """Flush, publish and commit everything, then leave; bounded by the grace period."""
        if self.consumer is None:
            return
        self._stopping = True
        deadline = self.clock() + self.settings.shutdown_grace_s
        if self._tasks:  # let the poll loop finish its current getmany
            poll = self._tasks[0]
            try:
                await asyncio.wait_for(
                    asyncio.shield(poll), timeout=max(0.1, deadline - self.clock())
                )
            except TimeoutError:
                poll.cancel()
        self._draining = True
        self._wake.set()
        await self._wait_until(lambda: not (self.coalescer.size or self._flushes), deadline)
        unsettled = self.coalescer.size + self.unsettled
        await self.commit()
        self._closed = True
        self._wake.set()
        for task in self._tasks + list(self._flushes):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._flushes, return_exceptions=True)
        await self.consumer.stop()
        await self.publisher.stop()
        stop = getattr(self.service, "stop", None)
        if stop is not None:
            await stop()
        self.consumer = None
        log.info("worker stopped", extra={"service": self.service.name, "unsettled": unsettled})

    async def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done() and (left := deadline - self.clock()) > 0:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self._progress.wait()

    @property
    def unsettled(self) -> int:
        """Messages consumed from owned partitions whose results are not published yet."""
        return sum(t.pending for t in self.trackers.values())

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    @property
    def alive(self) -> bool:
        return self.clock() - self.last_poll < 30.0

    @property
    def ready(self) -> bool:
        return self.consumer is not None and bool(self.consumer.assignment())

    # ------------------------------------------------------------------ poll
    async def _poll_loop(self) -> None:
        assert self.consumer is not None
        consumer = self.consumer
        while not self._stopping:
            self._backpressure(consumer)
            try:
                batch = await consumer.getmany(
                    timeout_ms=200, max_records=self.settings.kafka_max_poll_records
                )
            except KafkaError as exc:
                log.warning("poll failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            self.last_poll = self.clock()
            if batch:
                await self.ingest(batch)

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        unsettled = self.unsettled
        bound = self.settings.max_pending_items
        if unsettled >= bound:
            consumer.pause(*consumer.assignment())  # also covers newly assigned partitions
            if not self._paused:
                self._paused = True
                self.metrics.paused.labels(self._label).set(1)
                log.info("fetching paused: %d unsettled messages", unsettled)
        elif self._paused and unsettled <= bound // 2:
            consumer.resume(*consumer.assignment())
            self._paused = False
            self.metrics.paused.labels(self._label).set(0)
            log.info("fetching resumed: %d unsettled messages", unsettled)

    async def ingest(self, batch: Mapping[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Decode and buffer one poll's records; settle the invalid ones at once."""
        invalid: list[OutRecord] = []
        settled: list[Source] = []
        decode = self.service.decode
        add = self.coalescer.add
        keep = self.service.keeps_messages
        for tp, records in batch.items():
            tracker = self.trackers.get(tp)
            if tracker is None:
                tracker = self.trackers[tp] = PartitionTracker(tp.topic, tp.partition)
                tracker.hold_until = self._assigned_ends.pop(tp, None)
            for rec in records:
                tracker.add(rec.offset)
                try:
                    d = decode(rec.key, rec.value, rec.headers)
                except InvalidMessage as exc:
                    invalid += self._invalid_records(
                        rec, exc.error_class, exc.reason, exc.account_token, exc.key
                    )
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                except Exception as exc:  # a decoder bug must not stop consumption
                    log.exception("decoder failed on %s[%d]@%d", tp.topic, tp.partition, rec.offset)
                    invalid += self._invalid_records(rec, type(exc).__name__, str(exc), None, None)
                    settled.append(Source(tracker, rec.offset, rec.key))
                    continue
                source = (
                    Source(
                        tracker,
                        rec.offset,
                        rec.key,
                        d.event_id,
                        rec.value,
                        tuple(rec.headers or ()),
                    )
                    if keep
                    else Source(tracker, rec.offset, rec.key, d.event_id)
                )
                add(d.account_token, d.operation, d.key, d.payload, source)
            if records:
                tracker.caught_up(records[-1].offset)
            self.metrics.consumed.labels(self._label, tp.topic).inc(len(records))
        if invalid:
            await self._settle(invalid, settled)
        self._wake.set()

    def _invalid_records(
        self,
        rec: ConsumerRecord[Any, Any],
        error_class: str,
        reason: str,
        account: str | None,
        key: str | None,
    ) -> list[OutRecord]:
        self.metrics.invalid.labels(self._label, error_class).inc()
        self.metrics.dlq.labels(self._label, error_class).inc()
        headers = dlq_headers(
            error_class, reason, rec.topic, rec.partition, rec.offset, list(rec.headers or ())
        )
        key_text = key if key is not None else _text(rec.key)
        result = ResultRecord(
            status="failed",
            account_token=account,
            operation="decode",
            error=ErrorInfo(code=error_class, message=reason),
            source=SourceRef(topic=rec.topic, partition=rec.partition, offset=rec.offset),
        )
        setattr(result, self.service.key_field, key_text)
        return [
            OutRecord(self.dlq_topic, rec.key, rec.value, headers, rec.partition),
            OutRecord(self.results_topic, rec.key, _json(result), (), rec.partition),
        ]

    # ------------------------------------------------------------------ schedule
    async def _schedule_loop(self) -> None:
        max_items = self.coalescer.max_items
        while not self._closed:
            self._wake.clear()
            now = self.clock()
            wake_at = now + 1.0
            for bucket in list(self.coalescer):
                if not bucket.items or bucket.in_flight:
                    continue
                urgent = self._draining or self._holds_revoking(bucket)
                token_free = urgent
                ready = len(bucket) >= max_items or self.coalescer.lingered(bucket, now)
                if not urgent and ready and now >= bucket.not_before and not self._held(bucket):
                    token_free, ready_at = await self._token_free(bucket.key.account_token, now)
                    if not token_free:
                        wake_at = min(wake_at, ready_at)
                if self.coalescer.due(bucket, now, token_free, urgent):
                    self._launch(bucket)
                elif (
                    deadline := self.coalescer.next_deadline(bucket)
                ) is not None and deadline > now:
                    wake_at = min(wake_at, deadline)
            self._gauges(now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, wake_at - self.clock())):
                    await self._wake.wait()

    async def _token_free(self, account: str, now: float) -> tuple[bool, float]:
        ready_at = self._ready_at.get(account, 0.0)
        if ready_at > now:
            return False, ready_at
        wait = await self.limiter.ready_in(account)
        if wait > 0:
            self._ready_at[account] = now + wait
            return False, now + wait
        return True, now

    def _held(self, bucket: Bucket) -> bool:
        """Items of partitions still catching up after an assignment wait (within the
        memory bound) so that re-read older updates merge with their newer successors."""
        if not any(t.hold_until is not None for t in self.trackers.values()):
            return False
        if self.unsettled >= self.settings.max_pending_items:
            return False
        return any(p.sources[0].tracker.hold_until is not None for p in bucket.items.values())

    def _holds_revoking(self, bucket: Bucket) -> bool:
        revoking = self._revoking
        return bool(revoking) and any(
            p.sources[0].tracker in revoking for p in bucket.items.values()
        )

    def _gauges(self, now: float) -> None:
        self.metrics.pending.labels(self._label).set(self.unsettled)
        oldest = min((o for b in self.coalescer if (o := b.oldest()) is not None), default=None)
        self.metrics.oldest_pending.labels(self._label).set(0.0 if oldest is None else now - oldest)

    def _launch(self, bucket: Bucket) -> None:
        batch = self.coalescer.take(bucket)
        task = asyncio.create_task(self._flush(bucket, batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    # ------------------------------------------------------------------ flush
    async def _flush(self, bucket: Bucket, batch: list[Pending]) -> None:
        account, operation = bucket.key.account_token, bucket.key.operation
        self.metrics.batch_size.labels(self._label, operation).observe(len(batch))
        for pending in batch:
            pending.attempts += 1
        try:
            outcomes = await self.service.send(
                self.client, account, operation, [p.payload for p in batch]
            )
        except Unauthorized:
            self.metrics.auth_failures.labels(self._label, account).inc()
            log.error(
                "M2E answered 401 for account %s: pausing it for %.0fs; its messages "
                "stay uncommitted",
                account,
                self.settings.auth_backoff_s,
            )
            self._give_back(bucket, batch, self.settings.auth_backoff_s)
            return
        except TransientFailure as exc:
            self._give_back(bucket, batch, self._backoff(bucket))
            log.warning("batch of %d for account %s given back: %s", len(batch), account, exc)
            return
        except asyncio.CancelledError:
            self._give_back(bucket, batch, 0.0)
            raise
        except Exception:
            log.exception("unexpected error sending a batch for account %s", account)
            self._give_back(bucket, batch, self._backoff(bucket))
            return
        finally:
            bucket.in_flight = False
            self._wake.set()
            self._progress.set()
        self._failures.pop(bucket.key, None)
        if len(outcomes) != len(batch):
            raise RuntimeError(
                f"{self.service.name}.send returned {len(outcomes)} outcomes for {len(batch)} items"
            )
        records, sources = self._result_records(account, operation, batch, outcomes)
        await self._settle(records, sources)
        self.metrics.last_success.labels(self._label).set(time.time())

    def _give_back(self, bucket: Bucket, batch: list[Pending], backoff_s: float) -> None:
        self.coalescer.requeue(bucket, batch)
        bucket.not_before = self.clock() + backoff_s

    def _backoff(self, bucket: Bucket) -> float:
        n = self._failures[bucket.key] = self._failures.get(bucket.key, 0) + 1
        cap = self.settings.failure_backoff_cap_s
        return float(min(cap, 0.5 * 2.0 ** (n - 1)) * (0.5 + random.random() / 2))

    def _result_records(
        self, account: str, operation: str, batch: list[Pending], outcomes: list[ItemOutcome]
    ) -> tuple[list[OutRecord], list[Source]]:
        batch_id = uuid.uuid4().hex[:16]
        key_field, topic = self.service.key_field, self.results_topic
        records: list[OutRecord] = []
        sources: list[Source] = []
        items = self.metrics.items
        placeholder = SourceRef(topic=topic, partition=0, offset=0)  # replaced per message
        for pending, outcome in zip(batch, outcomes, strict=True):
            op = outcome.operation or operation
            for status, group in (
                (outcome.status, pending.sources),
                ("superseded", pending.superseded),
            ):
                if not group:
                    continue
                items.labels(self._label, account, op, status).inc(len(group))
                settled = status != "superseded"
                result = ResultRecord(
                    status=status,
                    account_token=account,
                    operation=op,
                    http_status=outcome.http_status if settled else None,
                    error=outcome.error if settled else None,
                    source=placeholder,
                    batch_id=batch_id,
                    attempts=pending.attempts,
                )
                # The entity's key: the payload's own field where it has one (an invoice is
                # coalesced per order and invoice number, but its result names the order).
                setattr(result, key_field, pending.payload.get(key_field, pending.key))
                template = ResultTemplate(result, topic=self.input_topic)
                for src in group:
                    value = template.render(src.partition, src.offset, src.event_id)
                    records.append(OutRecord(topic, src.key, value, (), src.partition))
                    sources.append(src)
                    if settled and outcome.dead_letter and outcome.error is not None:
                        records.append(self._dead_letter(src, outcome.error))
        return records, sources

    def _dead_letter(self, src: Source, error: ErrorInfo) -> OutRecord:
        self.metrics.dlq.labels(self._label, error.code).inc()
        headers = dlq_headers(
            error.code, error.message, src.topic, src.partition, src.offset, src.headers
        )
        return OutRecord(self.dlq_topic, src.key, src.value, headers, src.partition)

    async def _settle(self, records: list[OutRecord], sources: list[Source]) -> None:
        """Publish, then mark the sources done. Publishing is retried until it succeeds."""
        delay = 0.5
        while True:
            try:
                await self.publisher.publish(records)
                break
            except KafkaError as exc:
                log.warning("publishing %d records failed, retrying: %s", len(records), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for src in sources:
            src.tracker.done(src.offset)
        self._progress.set()

    # ------------------------------------------------------------------ commit
    async def _commit_loop(self) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while not self._closed:
            await asyncio.sleep(interval)
            await self.commit()

    async def commit(self, only: set[PartitionTracker] | None = None) -> None:
        """Commit the watermark of every owned partition that moved."""
        consumer = self.consumer
        if consumer is None:
            return
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            chosen: list[tuple[PartitionTracker, int]] = []
            for tp, tracker in self.trackers.items():
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
            self.metrics.commits.labels(self._label).inc()

    # ------------------------------------------------------------------ rebalance
    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        )
        if self.consumer is None or not assigned:
            return
        try:
            ends = await self.consumer.end_offsets(list(assigned))
        except KafkaError as exc:  # only coalescing after a restart is lost
            log.warning("end offsets unavailable, no catch-up hold: %s", exc)
            return
        self._assigned_ends.update({tp: end for tp, end in ends.items() if end > 0})

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        trackers = {self.trackers[tp] for tp in revoked if tp in self.trackers}
        if trackers:
            self._revoking |= trackers
            self._wake.set()
            deadline = self.clock() + self.settings.revoke_flush_deadline_s
            await self._wait_until(lambda: not any(t.pending for t in trackers), deadline)
            await self.commit(trackers)
            dropped = self.coalescer.drop_partitions(trackers)
            for tracker in trackers:
                tracker.alive = False
            self._revoking -= trackers
            if dropped:
                log.warning("dropped %d buffered items of revoked partitions", dropped)
        for tp in revoked:
            self.trackers.pop(tp, None)
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))


def _json(result: ResultRecord) -> bytes:
    return result.model_dump_json(exclude_none=True).encode()


def _text(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", "replace")
