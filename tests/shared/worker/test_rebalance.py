"""Revocation while a batch is in flight: the old owner never sends it again, whether it
was failing (retries, a long 429 pause) or about to succeed late."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.variant_sync import VariantSync
from shared.m2e.client import M2EClient, TransientFailure
from shared.service import OK, ItemOutcome

from .helpers import ACCT, TP, record, worker


class StuckSync(VariantSync):
    """A send that hangs (a slow API, retries) until released, then fails or succeeds."""

    def __init__(self, fail: bool) -> None:
        super().__init__({ACCT})
        self.sent: list[list[dict[str, Any]]] = []
        self.release = asyncio.Event()
        self.fail = fail

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        self.sent.append(payloads)
        await self.release.wait()
        if self.fail:
            raise TransientFailure("HTTP 503 on PATCH /catalog/product/variant/", 5)
        return [OK] * len(payloads)


@pytest.mark.parametrize("fail", [True, False], ids=["fails-late", "succeeds-late"])
async def test_stale_resend_after_a_rebalance_never_happens(fail: bool) -> None:
    service = StuckSync(fail)
    w = worker(
        clock=time.monotonic, service=service, batch_max_items=2, revoke_flush_deadline_s=0.05
    )
    await w.poller.ingest({TP: [record(0, "X", 1.0), record(1, "Y", 1.0)]})
    [bucket] = list(w.coalescer)
    await w.scheduler._consider(bucket, time.monotonic())
    await asyncio.sleep(0)
    assert len(service.sent) == 1 and w.scheduler.flushes  # price 1 is in flight

    # The partition moves to replica B, which sends price 2 and commits.
    await w.rebalance.on_partitions_revoked({TP})
    assert not w.scheduler.flushes  # cancelled: it cannot land after B's batch
    service.release.set()  # the API answers at last
    await asyncio.sleep(0.05)
    for bucket in list(w.coalescer):
        await w.scheduler._consider(bucket, time.monotonic() + 60)
    await asyncio.sleep(0.05)
    assert len(service.sent) == 1, "the old owner sent the revoked items again"
    assert w.coalescer.size == 0 and TP not in w.partitions.trackers


async def test_items_of_other_partitions_in_a_cancelled_batch_are_put_back() -> None:
    from aiokafka import TopicPartition

    other = TopicPartition(TP.topic, 1)
    service = StuckSync(fail=False)
    w = worker(
        clock=time.monotonic, service=service, batch_max_items=2, revoke_flush_deadline_s=0.05
    )
    await w.poller.ingest({TP: [record(0, "X", 1.0)], other: [record(0, "Z", 1.0, other)]})
    [bucket] = list(w.coalescer)
    await w.scheduler._consider(bucket, time.monotonic())
    await asyncio.sleep(0)
    await w.rebalance.on_partitions_revoked({TP})
    assert list(bucket.items) == ["Z"]  # still ours: sent again later, nothing lost
