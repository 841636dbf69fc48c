"""What the core tells a service beyond its payloads: the partition of each payload, the
partitions it owns, and that the process must stop (shared.service.Fatal)."""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import Any

from aiokafka import TopicPartition

from services.variant_sync import VariantSync
from shared.m2e.client import M2EClient
from shared.service import OK, PARTITIONS, Fatal, ItemOutcome

from .helpers import ACCT, TP, NullPublisher, record, worker

TP1 = TopicPartition(TP.topic, 1)
RETRY1 = TopicPartition(f"{TP.topic}.retry", 1)


class Recording(VariantSync):
    def __init__(self, fatal: bool = False) -> None:
        super().__init__({ACCT})
        self.fatal = fatal
        self.seen: list[list[tuple[str, int]]] = []
        self.events: list[tuple[str, set[int]]] = []

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        self.seen.append(
            [(p["sku"], part) for p, part in zip(payloads, PARTITIONS.get(), strict=True)]
        )
        if self.fatal:
            raise Fatal("producer fenced")
        return [OK] * len(payloads)

    async def assigned(self, partitions: Set[int]) -> None:
        self.events.append(("assigned", set(partitions)))

    async def revoked(self, partitions: Set[int]) -> None:
        self.events.append(("revoked", set(partitions)))


async def flush_all(w: Any) -> None:
    for bucket in list(w.coalescer):
        await w.scheduler._consider(bucket, 1000.0)
    await asyncio.gather(*w.scheduler.flushes)


async def test_a_service_sees_the_partition_of_each_payload() -> None:
    service = Recording()
    w = worker(service=service, batch_max_items=4)
    await w.poller.ingest({TP: [record(0, "A", 1.0)], TP1: [record(0, "B", 1.0, TP1)]})
    await flush_all(w)
    assert sorted(service.seen[0]) == [("A", 0), ("B", 1)]


async def test_a_fatal_error_stops_the_process_and_settles_nothing() -> None:
    service = Recording(fatal=True)
    w = worker(service=service, batch_max_items=4)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    w.poller.last_poll = w.clock()
    assert w.alive
    await flush_all(w)
    assert w.signals.stop.is_set() and w.signals.fatal == "producer fenced"
    assert not w.alive  # /healthz fails until the process has exited
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher) and publisher.published == []  # no DLQ
    assert w.coalescer.size == 2  # given back; never committed, so the next owner sends them
    assert w.partitions.trackers[TP].committable() is None


async def test_the_service_hears_of_its_input_partitions_only() -> None:
    service = Recording()
    w = worker(service=service)

    class Consumer:
        def assignment(self) -> set[TopicPartition]:
            return {TP1, RETRY1}

        def pause(self, *tps: Any) -> None:
            pass

        async def end_offsets(self, tps: Any) -> dict[TopicPartition, int]:
            return {tp: 0 for tp in tps}

        async def commit(self, offsets: Any) -> None:
            pass

    w.consumer = Consumer()  # type: ignore[assignment]

    async def no_scan(consumer: Any, assigned: Any) -> None:
        pass

    w.parker.scan = no_scan  # type: ignore[method-assign]
    await w.rebalance.on_partitions_assigned({TP1, RETRY1})
    await w.rebalance.on_partitions_revoked({TP1, RETRY1})
    assert service.events == [("assigned", {1}), ("revoked", {1})]
