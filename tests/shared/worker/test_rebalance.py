"""Revocation while a batch is in flight: the old owner never sends it again, whether it
was failing (retries, a long 429 pause) or about to succeed late."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from services.variant_sync import VariantSync
from shared.m2e.client import Credentials, M2EClient, TransientFailure
from shared.service import OK, ItemOutcome
from tests.shared.fakes import FakeLimiter

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


class SlowApi:
    """An API answering each request after `seconds`: with `status` (503: a gateway's page)
    or, for 200, the count of variants it updated. Records what it received."""

    def __init__(self, status: int, seconds: float = 0.3) -> None:
        self.status, self.seconds = status, seconds
        self.skus: list[list[str]] = []
        self.answered = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.skus.append([v["sku"] for v in body["variants"]])
        await asyncio.sleep(self.seconds)
        self.answered.set()
        if self.status != 200:
            return httpx.Response(self.status, text="<html>busy</html>")
        return httpx.Response(200, json={"updated": len(self.skus[-1])})


def slow_worker(api: SlowApi, **settings: Any) -> Any:
    w = worker(clock=time.monotonic, **settings)
    w.scheduler._client = M2EClient(
        "http://x", Credentials({ACCT: "t"}), FakeLimiter(), transport=httpx.MockTransport(api)
    )
    return w


async def test_a_request_on_the_wire_at_the_deadline_lands_before_the_partition_moves() -> None:
    """The server applies a request it received whatever the client does: cancelling it
    would let it land after the new owner's. The old owner waits for its answer, then
    sends nothing more for the batch, even though the answer is a 503."""
    api = SlowApi(503)  # answers after longer than the revoke deadline
    w = slow_worker(api, batch_max_items=2, revoke_flush_deadline_s=0.05)
    await w.poller.ingest({TP: [record(0, "X", 1.0), record(1, "Y", 1.0)]})
    [bucket] = list(w.coalescer)
    await w.scheduler._consider(bucket, time.monotonic())
    await asyncio.sleep(0.01)
    assert len(api.skus) == 1  # on the wire
    await w.rebalance.on_partitions_revoked({TP})
    assert api.answered.is_set(), "the partition was let go with its request still on the wire"
    await asyncio.sleep(0.3)
    assert len(api.skus) == 1, "the old owner retried a batch it had given up"
    assert not w.scheduler.flushes and w.coalescer.size == 0


async def test_shutdown_past_its_grace_waits_for_a_request_on_the_wire() -> None:
    """The same at SIGTERM: the group hears we left only once the request has landed."""
    api = SlowApi(503)

    class Consumer:
        stopped_after_answer: bool | None = None

        def assignment(self) -> set[Any]:
            return {TP}

        async def commit(self, offsets: Any) -> None:
            pass

        async def stop(self) -> None:
            Consumer.stopped_after_answer = api.answered.is_set()

    w = slow_worker(api, batch_max_items=2, shutdown_grace_s=0.05)
    w.consumer = Consumer()
    await w.poller.ingest({TP: [record(0, "X", 1.0), record(1, "Y", 1.0)]})
    [bucket] = list(w.coalescer)
    await w.scheduler._consider(bucket, time.monotonic())
    await asyncio.sleep(0.01)
    await w.stop()
    assert Consumer.stopped_after_answer is True
    await asyncio.sleep(0.3)
    assert len(api.skus) == 1


async def test_nothing_of_a_revoked_partition_is_sent_while_its_revocation_waits() -> None:
    """Found by `make chaos`: while the revocation waited for a request on the wire, the
    scheduler's loop saw the partition's other buffered items — still marked urgent —
    and sent them, in a batch no one waited for: it landed after the new owner's."""
    api = SlowApi(200)
    w = slow_worker(api, batch_max_items=1, batch_max_in_flight=1, revoke_flush_deadline_s=0.05)
    await w.poller.ingest({TP: [record(0, "X", 1.0), record(1, "Y", 1.0)]})
    loop = asyncio.create_task(w.scheduler.run())
    try:
        await asyncio.sleep(0.05)
        assert api.skus == [["X"]]  # on the wire; Y waits for it (one batch at a time)
        await w.rebalance.on_partitions_revoked({TP})
        await asyncio.sleep(0.5)
    finally:
        w.scheduler.closed = True
        w.signals.wake.set()
        await loop
    assert api.skus == [["X"]], "the old owner sent a revoked partition's item"


async def test_no_periodic_commit_between_a_revocation_and_the_next_assignment() -> None:
    """A commit sent while the member rejoins carries the old generation; aiokafka, failing
    it, resets the generation the join just got, and the member restarts the rebalance for
    the whole group — in a loop (seen in `make chaos`: generation 40 and counting)."""
    w = worker(clock=time.monotonic)
    commits: list[float] = []

    async def commit(only: Any = None) -> None:
        commits.append(time.monotonic())

    w.committer.commit = commit  # type: ignore[method-assign]
    loop = asyncio.create_task(w.committer.run(0.005))
    try:
        await asyncio.sleep(0.03)
        assert commits
        await w.rebalance.on_partitions_revoked(set())
        commits.clear()
        await asyncio.sleep(0.05)
        assert commits == []  # rejoining: nothing is committed
        await w.rebalance.on_partitions_assigned(set())
        await asyncio.sleep(0.03)
        assert commits
    finally:
        loop.cancel()
