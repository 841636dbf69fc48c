"""The flush rule, whole, with a clock and a budget moved by hand (no sleeping)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from services.variant_sync import VariantSync
from shared.coalescer import Bucket
from shared.service import OK
from shared.worker import Worker

from .helpers import ACCT, TP, FakeLimiter, HandClock, NullPublisher, record, worker


def setup(**settings: object) -> tuple[Worker, FakeLimiter, HandClock]:
    budget, clock = FakeLimiter(), HandClock()
    return worker(budget, clock, **{"batch_linger_ms": 1000, **settings}), budget, clock


def only_bucket(w: Worker) -> Bucket:
    [bucket] = list(w.coalescer)
    return bucket


def in_flight(w: Worker, bucket: Bucket) -> bool:
    return w.scheduler._in_flight.busy(bucket.key)


async def test_full_bucket_waits_for_a_token_and_keeps_merging_meanwhile() -> None:
    w, budget, clock = setup(batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = only_bucket(w)
    budget.wait = 3.0
    assert await w.scheduler._consider(bucket, clock.now) == clock.now + 3.0
    assert not in_flight(w, bucket)
    await w.poller.ingest({TP: [record(2, "A", 2.0)]})  # merges into the waiting batch
    assert bucket.items["A"].payload["price"] == 2.0
    assert await w.scheduler._consider(bucket, clock.now + 1) == clock.now + 3.0  # remembered
    budget.wait = 0.0
    await w.scheduler._consider(bucket, clock.now + 3.0)
    assert in_flight(w, bucket) and not bucket.items


async def test_partial_bucket_waits_for_linger_then_a_free_token() -> None:
    w, budget, clock = setup(batch_max_items=3)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    bucket = only_bucket(w)
    assert await w.scheduler._consider(bucket, clock.now) == clock.now + 1.0  # linger
    assert budget.asked == []  # not due: the budget is not even asked
    budget.wait = 0.5
    assert await w.scheduler._consider(bucket, clock.now + 1.0) == clock.now + 1.5
    budget.wait = 0.0
    w.scheduler._ready_at.clear()
    await w.scheduler._consider(bucket, clock.now + 1.0)
    assert in_flight(w, bucket)


async def test_draining_sends_at_once_without_asking_the_budget() -> None:
    w, budget, clock = setup(batch_max_items=3)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    budget.wait = 30.0
    w.scheduler.draining = True
    await w.scheduler._consider(only_bucket(w), clock.now)
    assert in_flight(w, only_bucket(w)) and budget.asked == []


async def test_in_flight_bucket_is_never_due_so_keys_stay_in_order() -> None:
    w, _budget, clock = setup(batch_max_items=1)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)
    await w.poller.ingest({TP: [record(1, "A", 2.0)]})
    assert await w.scheduler._consider(bucket, clock.now + 10) == math.inf
    assert bucket.items["A"].payload["price"] == 2.0
    await asyncio.gather(*w.scheduler.flushes)  # the first batch ends, settled
    assert not in_flight(w, bucket)
    await w.scheduler._consider(bucket, clock.now + 10)
    assert in_flight(w, bucket)


async def test_batches_of_other_keys_go_alongside_up_to_the_limit_and_never_a_key_twice() -> None:
    # Found by the burst benchmark: 20 full batches for one account went one round trip
    # after another (~70 ms each) though the window had room for all of them at once.
    w, _budget, clock = setup(batch_max_items=1, batch_max_in_flight=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0), record(2, "C", 1.0)]})
    bucket = only_bucket(w)
    await w.poller.ingest({TP: [record(3, "A", 2.0)]})  # merges: A is not in flight yet
    assert await w.scheduler._consider(bucket, clock.now) == clock.now  # look again at once
    assert await w.scheduler._consider(bucket, clock.now) == math.inf  # two in flight: full
    assert len(w.scheduler.flushes) == 2 and list(bucket.items) == ["C"]
    carried = sorted(p.key for batch in w.scheduler._batches.values() for p in batch)
    assert carried == ["A", "B"]
    await w.poller.ingest({TP: [record(4, "A", 3.0)]})  # A again, while its batch flies
    await asyncio.gather(*w.scheduler.flushes)
    await w.scheduler._consider(bucket, clock.now)
    await w.scheduler._consider(bucket, clock.now)
    carried = sorted(p.key for batch in w.scheduler._batches.values() for p in batch)
    assert carried == ["A", "C"]  # A's newer value only after its older one settled


async def test_a_partial_batch_waits_for_the_one_in_flight_even_past_its_linger() -> None:
    # Found by the many-merchants benchmark: a hot account's backlog, still being fetched,
    # went in pieces alongside its full batches (478 items per request, not 495), each
    # piece a request of its budget.
    w, _budget, clock = setup(batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)  # full: A and B fly
    await w.poller.ingest({TP: [record(2, "C", 1.0)]})
    assert await w.scheduler._consider(bucket, clock.now + 10) == math.inf  # linger long past
    assert len(w.scheduler.flushes) == 1
    await asyncio.gather(*w.scheduler.flushes)
    await w.scheduler._consider(bucket, clock.now + 10)
    assert [p.key for batch in w.scheduler._batches.values() for p in batch] == ["C"]


async def test_a_batch_ending_has_the_budget_asked_again() -> None:
    # Found by the burst benchmark: the second batch, asked before the first answer stated
    # the window, waited out an even-spacing interval (0.6 s at 100 per 60 s) though the
    # answer that came 30 ms later said the window had room for all of them.
    w, budget, clock = setup(batch_max_items=1)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)  # A flies
    budget.wait = 0.6
    assert await w.scheduler._consider(bucket, clock.now) == clock.now + 0.6
    budget.wait = 0.0  # the answer to A: the window has room
    await asyncio.gather(*w.scheduler.flushes)
    await w.scheduler._consider(bucket, clock.now)
    assert [p.key for batch in w.scheduler._batches.values() for p in batch] == ["B"]


async def test_a_key_in_flight_is_left_out_of_the_next_batch() -> None:
    w, _budget, clock = setup(batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)  # A and B fly
    await w.poller.ingest({TP: [record(2, "A", 2.0), record(3, "C", 1.0), record(4, "D", 1.0)]})
    await w.scheduler._consider(bucket, clock.now)
    second = [p.key for p in list(w.scheduler._batches.values())[1]]
    assert second == ["C", "D"] and list(bucket.items) == ["A"]


async def test_backoff_holds_a_bucket() -> None:
    w, _budget, clock = setup(batch_max_items=1)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    bucket = only_bucket(w)
    w.scheduler._not_before[bucket.key] = clock.now + 5
    assert await w.scheduler._consider(bucket, clock.now) == clock.now + 5
    assert not in_flight(w, bucket)
    await w.scheduler._consider(bucket, clock.now + 5)
    assert in_flight(w, bucket)


async def test_items_of_a_partition_catching_up_are_held_until_it_caught_up() -> None:
    w, _budget, clock = setup()
    w.partitions.assigned_ends[TP] = 4  # the partition held offsets 0..3 when it was assigned
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    bucket = only_bucket(w)
    assert len(bucket) == 2 and w.scheduler._held(bucket)  # full, but older values may come
    assert await w.scheduler._consider(bucket, clock.now) == math.inf
    await w.poller.ingest({TP: [record(2, "A", 2.0), record(3, "B", 3.0)]})
    assert not w.scheduler._held(bucket)
    assert {k: p.payload["price"] for k, p in bucket.items.items()} == {"A": 2.0, "B": 3.0}


async def test_a_hold_never_outlasts_a_pause_of_fetching() -> None:
    """Paused at the bound, some items settle: below the bound but above the resume
    point, a hold would stop sending while fetching stays paused — a deadlock."""
    from .test_consume import RecordingConsumer

    w, _budget, _clock = setup(max_pending_items=4, batch_max_items=1)
    w.partitions.assigned_ends[TP] = 100  # far from caught up
    await w.poller.ingest({TP: [record(i, f"S{i}", 1.0) for i in range(4)]})
    w.poller._backpressure(RecordingConsumer())  # type: ignore[arg-type]
    w.partitions.trackers[TP].done(0)  # 3 unsettled: under 4, over the resume point 2
    assert not w.scheduler._held(next(iter(w.coalescer)))


async def test_the_memory_bound_wins_over_a_hold() -> None:
    w, _budget, _clock = setup(max_pending_items=2)
    w.partitions.assigned_ends[TP] = 100
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    assert not w.scheduler._held(only_bucket(w))


async def test_a_sent_batch_takes_one_token_in_one_look() -> None:
    """The scheduler's look takes the slot its batch's first request uses (through the
    client: one owner of the budget): one round trip, one token, not two."""
    w, budget, clock = setup(batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    await w.scheduler._consider(only_bucket(w), clock.now)
    await asyncio.gather(*w.scheduler.flushes)
    assert budget.taken == 1 and len(budget.asked) == 1 and budget.calls == 1
    assert budget.feedback_seen[0].sent  # the answer fed back for that very slot
    assert w.partitions.trackers[TP].committable() == 2


async def test_a_slot_taken_for_a_batch_gone_meanwhile_is_given_back() -> None:
    """The partition is revoked while the look is awaited: nothing is sent, and the slot
    taken for it is released rather than left counted until it expires."""
    w, budget, clock = setup(batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    budget.on_take = lambda: setattr(w.partitions.trackers[TP], "alive", False)
    await w.scheduler._consider(only_bucket(w), clock.now)
    await asyncio.sleep(0)  # the release runs in a task of its own
    assert not w.scheduler.flushes and budget.taken == 1
    assert [f.sent for f in budget.feedback_seen] == [False]


async def test_a_slot_taken_for_a_batch_that_makes_no_request_is_given_back() -> None:
    class Quiet(VariantSync):
        async def send(self, client: Any, account: str, operation: str, payloads: Any) -> Any:
            return [OK] * len(payloads)  # decided without asking M2E

    budget, clock = FakeLimiter(), HandClock()
    w = worker(budget, clock, service=Quiet({ACCT}), batch_linger_ms=1000, batch_max_items=2)
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0)]})
    await w.scheduler._consider(only_bucket(w), clock.now)
    await asyncio.gather(*w.scheduler.flushes)
    await asyncio.sleep(0)
    assert budget.taken == 1 and [f.sent for f in budget.feedback_seen] == [False]


async def test_a_newer_batch_for_a_key_waits_until_the_older_ones_results_are_published() -> None:
    class SlowPublisher(NullPublisher):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def publish(self, records: Any) -> None:
            await self.release.wait()
            await super().publish(records)

    publisher = SlowPublisher()
    budget, clock = FakeLimiter(), HandClock()
    w = worker(budget, clock, publisher=publisher, batch_max_items=1)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)
    await asyncio.sleep(0.01)  # sent; its results are being published
    await w.poller.ingest({TP: [record(1, "A", 2.0)]})
    await w.scheduler._consider(bucket, clock.now + 10)
    assert "A" in bucket.items  # not sent: the first batch's results are not out yet
    publisher.release.set()
    await asyncio.gather(*w.scheduler.flushes)
    await w.scheduler._consider(bucket, clock.now + 10)
    await asyncio.gather(*w.scheduler.flushes)
    offsets = [json.loads(r.value)["source"]["offset"] for r in publisher.published]
    assert offsets == [0, 1]


async def test_an_idle_account_costs_nothing_per_wake() -> None:
    """1,000 merchants trickling: the loop looks at the buckets that hold something, not
    at every account ever seen."""
    w, _, clock = setup(batch_linger_ms=0)
    await w.poller.ingest({TP: [record(0, "A", 1.0)]})
    bucket = only_bucket(w)
    await w.scheduler._consider(bucket, clock.now)
    assert in_flight(w, bucket)
    assert await w.scheduler._consider(bucket, clock.now) == math.inf
    assert list(w.coalescer) == [bucket]  # in flight: kept
    await asyncio.gather(*w.scheduler.flushes)
    await w.scheduler._consider(bucket, clock.now)
    assert list(w.coalescer) == []  # settled and empty: dropped
    await w.poller.ingest({TP: [record(1, "A", 2.0)]})  # the account's next event
    fresh = only_bucket(w)
    await w.scheduler._consider(fresh, clock.now)
    await asyncio.gather(*w.scheduler.flushes)
    assert w.partitions.trackers[TP].committable() == 2
