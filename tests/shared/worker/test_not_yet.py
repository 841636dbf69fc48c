"""Items answered "not yet" (ItemOutcome.retry_for_s: a SKU whose product is on its way) are
sent again with back-off for a bounded window, without holding up the rest of their batch,
and nothing newer of their key overtakes them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.variant_sync import VariantSync
from shared.m2e.client import M2EClient
from shared.results import ErrorInfo
from shared.service import OK, ItemOutcome

from .helpers import ACCT, TP, HandClock, NullPublisher, record, worker

WINDOW_S = 30.0


class Catalog(VariantSync):
    """Fails SKUs it does not hold yet, as the API does with a 404."""

    def __init__(self) -> None:
        super().__init__({ACCT}, WINDOW_S)
        self.known = {"B"}
        self.applied: list[tuple[str, float]] = []

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        out = []
        for p in payloads:
            if p["sku"] in self.known:
                self.applied.append((p["sku"], p["price"]))
                out.append(OK)
            else:
                error = ErrorInfo(code="not_found", message="variant is not found")
                out.append(ItemOutcome("failed", 404, error, retry_for_s=WINDOW_S))
        return out


async def settle(w: Any) -> None:
    for bucket in list(w.coalescer):
        await w.scheduler._consider(bucket, w.clock())
    await asyncio.gather(*w.scheduler.flushes)


def results(w: Any) -> list[dict[str, Any]]:
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher)
    return [json.loads(r.value) for r in publisher.published if r.topic.endswith(".results")]


async def test_a_sku_not_created_yet_waits_alone_and_lands_once_it_exists() -> None:
    clock, service = HandClock(), Catalog()
    w = worker(service=service, clock=clock, batch_max_items=4, batch_linger_ms=0)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    await settle(w)
    assert [(r["sku"], r["status"]) for r in results(w)] == [("B", "ok")]  # not held up
    assert w.coalescer.size == 1
    # A newer event for A while it waits: it joins A instead of overtaking it.
    await w.poller.ingest({TP: [record(2, "A", 2.0), record(3, "B", 3.0)]})
    await settle(w)
    assert ("A", 2.0) not in service.applied and ("B", 3.0) in service.applied
    service.known.add("A")  # product-sync created it
    clock.now += 5.0
    await settle(w)
    assert service.applied[-1] == ("A", 2.0)
    statuses = {(r["sku"], r["source"]["offset"]): r["status"] for r in results(w)}
    assert statuses == {("A", 0): "ok", ("A", 2): "ok", ("B", 1): "ok", ("B", 3): "ok"}
    assert w.coalescer.size == 0 and w.partitions.trackers[TP].committable() == 4


async def test_a_sku_that_never_appears_fails_after_the_window() -> None:
    clock, service = HandClock(), Catalog()
    w = worker(
        service=service, clock=clock, batch_max_items=4, batch_linger_ms=0, failure_backoff_cap_s=4
    )
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    sends = 0
    while not results(w):
        await settle(w)
        sends += 1
        clock.now += 4.0
        assert clock.now < 100 + WINDOW_S + 10, "still waiting past its window"
    [result] = results(w)
    assert result["status"] == "failed" and result["error"]["code"] == "not_found"
    assert 4 <= result["attempts"] <= WINDOW_S / 4 + 2  # backed off, up to the cap
    assert w.partitions.trackers[TP].committable() == 1


async def test_a_stop_does_not_wait_for_an_item_set_aside() -> None:
    clock, service = HandClock(), Catalog()
    w = worker(service=service, clock=clock, batch_max_items=4, batch_linger_ms=0)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    await settle(w)
    assert w.coalescer.size == 1 and w.scheduler.idle  # A waits: nothing to send now
    assert w.partitions.trackers[TP].committable() is None  # A is the next to commit
