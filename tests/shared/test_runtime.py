"""The worker's scheduling decisions, driven without a broker: holds and flush gating."""

from __future__ import annotations

import json
from typing import Any

import httpx
from aiokafka import ConsumerRecord, TopicPartition

from services.variant_sync import VariantSync
from shared.config import load_settings
from shared.limiter import UnlimitedLimiter
from shared.m2e.client import Credentials, M2EClient
from shared.metrics import Metrics
from shared.results import Publisher
from shared.runtime import Worker

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"
TP = TopicPartition("variant-updates", 0)


class NullPublisher(Publisher):
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, records: Any) -> None:
        self.published += records


def record(offset: int, sku: str, price: float) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps({"account_token": ACCT, "sku": sku, "price": price}).encode()
    return ConsumerRecord(
        TP.topic, TP.partition, offset, 0, 0, sku.encode(), value, None, len(sku), len(value), []
    )


def worker(**settings: Any) -> Worker:
    s = load_settings(batch_max_items=2, **settings)
    client = M2EClient(
        "http://x",
        Credentials({ACCT: "t"}),
        UnlimitedLimiter(),
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
    )
    return Worker(
        VariantSync({ACCT}), s, client, UnlimitedLimiter(), NullPublisher(), Metrics("variant-sync")
    )


async def test_items_of_a_partition_catching_up_are_held_until_it_caught_up() -> None:
    w = worker()
    w._assigned_ends[TP] = 4  # the partition held offsets 0..3 when it was assigned
    await w.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = next(iter(w.coalescer))
    assert len(bucket) == 2 and w._held(bucket)  # full, but older values may still come
    await w.ingest({TP: [record(2, "A", 2.0), record(3, "B", 3.0)]})
    assert not w._held(bucket)
    assert {k: p.payload["price"] for k, p in bucket.items.items()} == {"A": 2.0, "B": 3.0}


async def test_the_memory_bound_wins_over_a_hold() -> None:
    w = worker(max_pending_items=2)
    w._assigned_ends[TP] = 100
    await w.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    assert not w._held(next(iter(w.coalescer)))


async def test_invalid_messages_are_settled_at_once() -> None:
    w = worker()
    bad = ConsumerRecord(TP.topic, 0, 0, 0, 0, b"A", b"{oops", None, 1, 5, [])
    await w.ingest({TP: [bad]})
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher)
    assert [r.topic for r in publisher.published] == [
        "variant-updates.dlq",
        "variant-updates.results",
    ]
    assert w.trackers[TP].committable() == 1


class RecordingConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *tps: TopicPartition) -> None:
        self.calls.append(("pause", len(tps)))

    def resume(self, *tps: TopicPartition) -> None:
        self.calls.append(("resume", len(tps)))


async def test_fetching_pauses_above_the_bound_and_resumes_below_half() -> None:
    w = worker(max_pending_items=4)
    consumer = RecordingConsumer()
    await w.ingest({TP: [record(i, f"S{i}", 1.0) for i in range(4)]})
    w._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1)]
    assert w.metrics.paused.labels("variant-sync")._value.get() == 1
    tracker = w.trackers[TP]
    tracker.done(0)
    w._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1)]  # 3 unsettled: still above half of the bound
    tracker.done(1)
    w._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1), ("resume", 1)]
    assert w.metrics.paused.labels("variant-sync")._value.get() == 0
