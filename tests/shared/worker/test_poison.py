"""Poison: an item whose send raises anything but an M2E error is isolated from its batch
(the rest proceeds) and, after POISON_MAX_ATTEMPTS, goes to the DLQ with the exception."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.variant_sync import VariantSync
from shared.m2e.client import M2EClient
from shared.service import OK, ItemOutcome

from .helpers import ACCT, TP, NullPublisher, record, worker


class PoisonSync(VariantSync):
    def __init__(self) -> None:
        super().__init__({ACCT})
        self.sent: list[list[str]] = []

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        self.sent.append([p["sku"] for p in payloads])
        if any(p["sku"] == "POISON" for p in payloads):
            raise ValueError("Out of range float values are not JSON compliant")
        return [OK] * len(payloads)


async def flush_all(w: Any, now: float) -> None:
    for bucket in list(w.coalescer):
        w.scheduler._not_before.clear()
        await w.scheduler._consider(bucket, now)
    await asyncio.gather(*w.scheduler.flushes)


async def test_messages_retried_forever_no_longer() -> None:
    service = PoisonSync()
    w = worker(service=service, batch_max_items=4, poison_max_attempts=3)
    skus = ["A", "POISON", "B", "C"]
    await w.poller.ingest({TP: [record(i, s, 1.0) for i, s in enumerate(skus)]})
    await flush_all(w, 1000.0)
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher)
    ok = [json.loads(r.value)["sku"] for r in publisher.published if r.topic.endswith(".results")]
    assert sorted(ok) == ["A", "B", "C"]  # the rest of the batch proceeded at once
    assert w.coalescer.size == 1  # the poison waits for its next attempt
    for _ in range(2):
        await flush_all(w, 1000.0)
    dead = [r for r in publisher.published if r.topic.endswith(".dlq")]
    assert len(dead) == 1 and dead[0].key == b"POISON"
    assert dead[0].value is not None and b'"sku": "POISON"' in dead[0].value  # the original
    headers = dict(dead[0].headers)
    assert headers["error.class"] == b"ValueError" and b"Out of range" in headers["error.message"]
    result = json.loads(
        next(
            r.value
            for r in publisher.published
            if r.key == b"POISON" and r.topic.endswith(".results")
        )
    )
    assert result["status"] == "failed" and result["attempts"] == 3
    assert w.coalescer.size == 0 and w.partitions.trackers[TP].committable() == 4
    assert sum(s == ["POISON"] for s in service.sent) == 3  # bounded: three tries alone


async def test_a_misbehaving_api_is_never_taken_for_poison() -> None:
    from shared.m2e.client import TransientFailure

    class Gateway(VariantSync):
        async def send(self, *args: Any) -> list[ItemOutcome]:
            raise TransientFailure("malformed body (JSONDecodeError) on PATCH /x", 5)

    w = worker(service=Gateway({ACCT}), batch_max_items=4, poison_max_attempts=1)
    await w.poller.ingest({TP: [record(i, s, 1.0) for i, s in enumerate("ABCD")]})
    for _ in range(5):
        await flush_all(w, 1000.0)
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher) and publisher.published == []  # no DLQ
    assert w.coalescer.size == 4  # kept, to be tried again
