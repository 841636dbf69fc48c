"""Parking: a blocked account's messages move to the retry topic so the others' commits go
on, new messages of it follow them there, and they come back when due, in order."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from typing import Any

import pytest
from aiokafka import TopicPartition

from services.variant_sync import VariantSync
from shared.coalescer import last_write_wins
from shared.config import ConfigError, load_settings
from shared.m2e.client import M2EClient, Unauthorized
from shared.service import OK, ItemOutcome
from shared.worker.park import ACCOUNT, NOT_BEFORE, ORIGIN, retry_info

from .helpers import ACCT, TP, HandClock, NullPublisher, rec, worker

BLOCKED = "6f1c2d3e-0009-4a5b-8c9d-000000000009"
RETRY_TP = TopicPartition("variant-updates.retry", 0)


class Revocable(VariantSync):
    def __init__(self) -> None:
        super().__init__({ACCT, BLOCKED})
        self.revoked = True
        self.sent: list[tuple[str, list[tuple[str, float]]]] = []

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Any]
    ) -> list[ItemOutcome]:
        if account_token == BLOCKED and self.revoked:
            raise Unauthorized(account_token)
        self.sent.append((account_token, [(p["sku"], p["price"]) for p in payloads]))
        return [OK] * len(payloads)


class WallClock(HandClock):
    def __init__(self) -> None:
        self.now = 1_800_000_000.0


def setup(**settings: Any) -> tuple[Any, Revocable, HandClock, WallClock]:
    service, clock = Revocable(), HandClock()
    w = worker(service=service, clock=clock, batch_max_items=10, batch_linger_ms=0, **settings)
    wall = WallClock()
    w.parker._wall = wall
    return w, service, clock, wall


async def step(w: Any, now: float) -> None:
    """One look at every bucket, as the scheduler's loop does, and the sends it starts;
    `now` is past any linger."""
    for bucket in list(w.coalescer):
        w.scheduler._not_before.clear()
        await w.scheduler._consider(bucket, now)
    await asyncio.gather(*w.scheduler.flushes)


def published(w: Any, suffix: str) -> list[Any]:
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher)
    return [r for r in publisher.published if r.topic.endswith(suffix)]


async def test_one_blocked_account_stalls_every_account_no_longer() -> None:
    w, _, clock, _ = setup(account_park_after_s=60)
    await w.poller.ingest(
        {TP: [rec(0, BLOCKED, "X1", 1.0)] + [rec(i, ACCT, f"H{i}", 1.0) for i in range(1, 4)]}
    )
    await step(w, clock())
    tracker = w.partitions.trackers[TP]
    assert tracker.committable() is None  # the blocked account's first message pins it
    clock.now += 30
    await step(w, clock())
    assert tracker.committable() is None and published(w, ".retry") == []
    clock.now += 31
    await step(w, clock())
    assert tracker.committable() == 4  # parked: the others' finished messages commit
    [moved] = published(w, ".retry")
    assert moved.partition == 0 and moved.value == rec(0, BLOCKED, "X1", 1.0).value
    info = retry_info(moved.headers)
    assert info is not None and info.account == BLOCKED and info.origin == 0
    assert b"401" in dict(moved.headers)["retry.reason"]
    deferred = [json.loads(r.value) for r in published(w, ".results")]
    assert [r["status"] for r in deferred if r["account_token"] == BLOCKED] == ["deferred"]
    assert w.metrics.accounts_parked.labels("variant-sync")._value.get() == 0  # not gauged yet
    w.scheduler._gauges(clock())
    assert w.metrics.accounts_parked.labels("variant-sync")._value.get() == 1


async def test_nothing_is_parked_past_an_older_value_still_in_flight() -> None:
    # Found by test_adversity once batches of an account could fly side by side: a newer
    # value was parked while the older one was on the wire; that one failed (401), came
    # back and was parked after it, and the retry topic replayed them out of order.
    w, service, clock, _ = setup(account_park_after_s=60)
    await w.poller.ingest({TP: [rec(0, BLOCKED, "X1", 1.0)]})
    await step(w, clock())  # the first 401: failing from now
    hold = asyncio.Event()
    send = service.send

    async def held(*args: Any) -> list[ItemOutcome]:
        await hold.wait()
        return await send(*args)

    service.send = held  # type: ignore[method-assign]
    clock.now += 30
    [bucket] = [b for b in w.coalescer if b.key.account_token == BLOCKED]
    w.scheduler._not_before.clear()
    await w.scheduler._consider(bucket, clock())  # X1 at 1.0 flies, waiting for its 401
    await w.poller.ingest({TP: [rec(1, BLOCKED, "X1", 2.0)]})
    clock.now += 31  # past the park interval while it flies
    await w.scheduler._consider(bucket, clock())
    hold.set()
    await asyncio.gather(*w.scheduler.flushes)
    await step(w, clock())
    prices = [json.loads(r.value)["price"] for r in published(w, ".retry")]
    assert prices and prices[-1] == 2.0 and prices == sorted(prices), prices


async def test_a_failing_account_is_parked_at_once_past_half_the_memory_bound() -> None:
    w, _, clock, _ = setup(account_park_after_s=3600, max_pending_items=6)
    await w.poller.ingest({TP: [rec(i, BLOCKED, f"X{i}", 1.0) for i in range(4)]})
    await step(w, clock())  # the 401
    await step(w, clock())
    assert len(published(w, ".retry")) == 4 and w.partitions.trackers[TP].committable() == 4


async def test_new_messages_never_overtake_older_ones_waiting_in_the_retry_topic() -> None:
    w, service, clock, wall = setup(account_park_after_s=10)
    await w.poller.ingest({TP: [rec(0, BLOCKED, "X1", 1.0)]})
    await step(w, clock())
    clock.now += 11
    await step(w, clock())
    assert len(published(w, ".retry")) == 1
    # The token works again, but the parked message is not read back yet: a newer update of
    # the same SKU (and any other of the account) must go behind it, not to M2E.
    service.revoked = False
    await w.poller.ingest({TP: [rec(1, BLOCKED, "X1", 2.0), rec(2, BLOCKED, "X2", 2.0)]})
    await step(w, clock())
    assert service.sent == []
    moved = published(w, ".retry")
    assert [json.loads(r.value)["price"] for r in moved] == [1.0, 2.0, 2.0]
    # Read back in order (the account is still known to fail here, so when due): sent in
    # order, merged, the newest last.
    wall.now += 10
    await read_back(w, moved)
    assert w.parker.backlog[0] == {}
    await step(w, clock() + 1)  # linger
    assert service.sent == [(BLOCKED, [("X1", 2.0), ("X2", 2.0)])]
    # A message arriving now goes straight to M2E.
    await w.poller.ingest({TP: [rec(3, BLOCKED, "X1", 3.0)]})
    await step(w, clock() + 2)
    assert service.sent[-1] == (BLOCKED, [("X1", 3.0)])
    finals = [json.loads(r.value) for r in published(w, ".results") if b'"deferred"' not in r.value]
    assert sorted(r["source"]["offset"] for r in finals) == [0, 1, 2, 3]  # input offsets
    assert {r["source"]["topic"] for r in finals} == {"variant-updates"}
    assert w.partitions.trackers[RETRY_TP].committable() == 3


async def read_back(w: Any, moved: list[Any]) -> None:
    """The retry records `moved` as the worker reads them back (offsets from 0), when due."""
    back = [
        rec(i, BLOCKED, (v := json.loads(r.value))["sku"], v["price"], RETRY_TP, list(r.headers))
        for i, r in enumerate(moved)
    ]
    await w.poller.ingest(w.poller._due(FakeConsumer(), {RETRY_TP: back}))


class FakeConsumer:
    def __init__(self) -> None:
        self.sought: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


def retry_headers(account: str, not_before_s: float, origin: int) -> list[tuple[str, bytes]]:
    return [
        (ACCOUNT, account.encode()),
        (NOT_BEFORE, str(int(not_before_s * 1000)).encode()),
        (ORIGIN, str(origin).encode()),
    ]


async def test_a_retry_record_not_due_waits_and_pauses_only_its_partition() -> None:
    w, _, clock, wall = setup(account_park_after_s=10)
    w.parker.health.failed(BLOCKED, "401")
    later = wall.now + 30
    records = [
        rec(0, ACCT, "H1", 1.0, RETRY_TP, retry_headers(ACCT, later, 7)),  # not failing: due
        rec(1, BLOCKED, "X1", 1.0, RETRY_TP, retry_headers(BLOCKED, later, 8)),
        rec(2, ACCT, "H2", 1.0, RETRY_TP, retry_headers(ACCT, later, 9)),
    ]
    consumer = FakeConsumer()
    due = w.poller._due(consumer, {RETRY_TP: records, TP: [rec(5, BLOCKED, "X9", 1.0)]})
    assert [r.offset for r in due[RETRY_TP]] == [0] and len(due[TP]) == 1
    assert consumer.sought == [(RETRY_TP, 1)]
    assigned = {TP, RETRY_TP}
    assert w.poller._waiting_retries(assigned) == {RETRY_TP}
    clock.now += 29
    assert w.poller._waiting_retries(assigned) == {RETRY_TP}
    clock.now += 2
    assert w.poller._waiting_retries(assigned) == set()
    wall.now = later  # due now: and the parked account gets a new trial
    clock.now += 10
    assert w.parker.health.parked(BLOCKED)
    assert len(w.poller._due(consumer, {RETRY_TP: records[1:]})[RETRY_TP]) == 2
    assert not w.parker.health.parked(BLOCKED)


async def test_a_retry_partition_holding_a_batch_of_unsettled_messages_pauses() -> None:
    w, _, _, wall = setup(account_park_after_s=10)
    records = [
        rec(i, BLOCKED, f"X{i}", 1.0, RETRY_TP, retry_headers(BLOCKED, wall.now, i))
        for i in range(10)
    ]
    await w.poller.ingest({RETRY_TP: records})
    assert w.poller._waiting_retries({TP, RETRY_TP}) == {RETRY_TP}
    w.partitions.trackers[RETRY_TP].done(0)
    assert w.poller._waiting_retries({TP, RETRY_TP}) == set()


async def test_a_message_read_back_never_replaces_a_newer_one_of_its_sku() -> None:
    """After a restart the new owner reads an old parked update and a newer one from the
    input in one poll, the newer first: the newer one must win."""
    w, service, clock, wall = setup(account_park_after_s=10)
    service.revoked = False
    w.parker.backlog[0] = Counter({BLOCKED: 1})  # what the assignment's count found
    old = rec(0, BLOCKED, "X1", 1.0, RETRY_TP, retry_headers(BLOCKED, wall.now, 3))
    await w.poller.ingest({TP: [rec(4, BLOCKED, "X1", 2.0)], RETRY_TP: [old]})
    await step(w, clock() + 1)
    moved = published(w, ".retry")  # both go behind, the older first (partial updates)
    assert [json.loads(r.value)["price"] for r in moved] == [1.0, 2.0] and service.sent == []
    assert [retry_info(r.headers).origin for r in moved] == [3, 4]  # type: ignore[union-attr]
    statuses = [json.loads(r.value) for r in published(w, ".results")]
    assert [(r["source"]["offset"], r["status"]) for r in statuses] == [(4, "deferred")]
    back = [
        rec(i, BLOCKED, "X1", json.loads(r.value)["price"], RETRY_TP, list(r.headers))
        for i, r in enumerate(moved, start=1)
    ]
    await w.poller.ingest(w.poller._due(FakeConsumer(), {RETRY_TP: back}))
    await step(w, clock() + 2)
    assert service.sent == [(BLOCKED, [("X1", 2.0)])]


async def test_a_whole_message_read_back_never_replaces_a_newer_one_of_its_sku() -> None:
    """The same with whole-entity updates (last write wins, as product-sync): the old one
    is superseded by the newer, which alone goes behind."""
    w, service, clock, wall = setup(account_park_after_s=10)
    w.coalescer._rules = {op: last_write_wins for op in w.coalescer._rules}
    service.revoked = False
    w.parker.backlog[0] = Counter({BLOCKED: 1})
    old = rec(0, BLOCKED, "X1", 1.0, RETRY_TP, retry_headers(BLOCKED, wall.now, 3))
    await w.poller.ingest({TP: [rec(4, BLOCKED, "X1", 2.0)], RETRY_TP: [old]})
    await step(w, clock() + 1)
    moved = published(w, ".retry")
    assert [json.loads(r.value)["price"] for r in moved] == [2.0] and service.sent == []
    statuses = [json.loads(r.value) for r in published(w, ".results")]
    assert sorted((r["source"]["offset"], r["status"]) for r in statuses) == [
        (3, "superseded"),
        (4, "deferred"),
    ]


async def test_a_hot_accounts_backlog_moves_aside_and_comes_back_at_once_in_order() -> None:
    """1,000 merchants, one of them with a 500,000-message backlog: past
    MAX_PENDING_PER_ACCOUNT its messages wait in the retry topic, due at once, so the
    others' messages are never stuck behind the memory bound that backlog would fill.
    (Only under pressure: with room to spare, nothing is moved.)"""
    w, service, clock, wall = setup(max_pending_per_account=10, max_pending_items=30)
    service.revoked = False
    hot = [rec(i, BLOCKED, f"X{i}", 1.0) for i in range(15)]
    await w.poller.ingest({TP: [*hot, rec(15, ACCT, "H1", 1.0)]})
    await step(w, clock())
    moved = published(w, ".retry")
    assert [json.loads(r.value)["sku"] for r in moved] == [f"X{i}" for i in range(15)]
    info = retry_info(moved[0].headers)
    assert info is not None and info.not_before == wall.now  # due at once: not blocked
    assert service.sent == [(ACCT, [("H1", 1.0)])]  # the other account is not held back
    assert w.partitions.trackers[TP].committable() == 16
    results = [json.loads(r.value) for r in published(w, ".results")]
    assert [r["status"] for r in results] == ["ok"]  # the hot account's come once, final
    # A newer message of the hot account follows its backlog into the retry topic.
    await w.poller.ingest({TP: [rec(16, BLOCKED, "X0", 2.0)]})
    await step(w, clock())
    assert json.loads(published(w, ".retry")[-1].value) == {
        "account_token": BLOCKED,
        "sku": "X0",
        "price": 2.0,
    }
    # Read back: sent in order, and never moved aside again for being many.
    await read_back(w, published(w, ".retry"))
    await step(w, clock() + 1)
    await step(w, clock() + 2)  # two batches of 10
    sent = [item for account, items in service.sent if account == BLOCKED for item in items]
    assert len(published(w, ".retry")) == 16  # nothing parked twice
    assert ("X0", 2.0) in sent and ("X0", 1.0) not in sent  # merged: the newer won
    assert len(sent) == 15


async def test_a_backlog_read_back_asks_its_budget_for_paced_slots() -> None:
    """What comes back from the retry topic is a backlog: its window is spent evenly (the
    limiter's `paced`), so reading it back and sending it is spread over the window instead
    of all falling in the window's first seconds, when every other account waits for the
    CPU. Fresh messages still go at once."""
    w, service, clock, _ = setup()
    service.revoked = False
    budget = w.client._limiter
    await w.poller.ingest({TP: [rec(0, ACCT, "H1", 1.0)]})
    await step(w, clock())
    back = [rec(i, ACCT, f"X{i}", 1.0, RETRY_TP, retry_headers(ACCT, 0, i)) for i in range(3)]
    await w.poller.ingest(w.poller._due(FakeConsumer(), {RETRY_TP: back}))
    await step(w, clock() + 1)
    assert service.sent == [(ACCT, [("H1", 1.0)]), (ACCT, [("X0", 1.0), ("X1", 1.0), ("X2", 1.0)])]
    assert budget.paced == [False, True]


def test_a_per_account_bound_below_a_batch_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigError, match="MAX_PENDING_PER_ACCOUNT"):
        load_settings(max_pending_per_account=100, batch_max_items=500)


async def test_with_room_to_spare_a_busy_account_keeps_its_messages() -> None:
    w, service, clock, _ = setup(max_pending_per_account=10, max_pending_items=1000)
    service.revoked = False
    await w.poller.ingest({TP: [rec(i, BLOCKED, f"X{i}", 1.0) for i in range(15)]})
    await step(w, clock())
    assert published(w, ".retry") == [] and len(service.sent[0][1]) == 10


async def read_back_one(w: Any, offset: int, price: float, origin: int, **fields: Any) -> None:
    """A record of BLOCKED's X1 read back from the retry topic (offset `offset`), due now."""
    record = rec(offset, BLOCKED, "X1", price, RETRY_TP, retry_headers(BLOCKED, 0, origin))
    if fields:
        value = {**json.loads(record.value), **fields}
        record = dataclasses.replace(record, value=json.dumps(value).encode())
    await w.poller.ingest(w.poller._due(FakeConsumer(), {RETRY_TP: [record]}))


async def test_an_older_record_parked_again_behind_a_newer_one_never_overwrites_it() -> None:
    """Found under load: a trial read back an old update of a SKU while a newer one waited
    in the retry topic, not yet due; the trial failed and parked the old one again, behind
    the newer. Read back in that order, the old value was sent last (a newer update
    overtaken, or a stale price left in M2E)."""
    w, service, clock, _ = setup(account_park_after_s=10)
    service.revoked = False
    w.parker.backlog[0] = Counter({BLOCKED: 3})  # what the assignment's count found
    await read_back_one(w, 0, 2.0, origin=8)  # the newer one, then the old one: one batch
    await read_back_one(w, 1, 1.0, origin=3)
    await step(w, clock() + 1)
    assert service.sent == [(BLOCKED, [("X1", 2.0)])]
    await read_back_one(w, 2, 0.5, origin=2)  # another old one, after the newer was applied
    await step(w, clock() + 2)
    assert service.sent == [(BLOCKED, [("X1", 2.0)])]  # nothing older sent after it
    results = [json.loads(r.value) for r in published(w, ".results")]
    assert sorted((r["source"]["offset"], r["status"]) for r in results) == [
        (2, "superseded"),
        (3, "superseded"),
        (8, "ok"),
    ]
    assert w.partitions.trackers[RETRY_TP].committable() == 3
    assert w.parker._read == {}  # nothing of the account waits: nothing remembered


async def test_an_older_partial_update_behind_a_newer_one_keeps_only_what_the_newer_left() -> None:
    """Partial updates: the old record's fields that the newer one did not set still
    land; those it set keep the newer values."""
    w, service, clock, _ = setup(account_park_after_s=10)
    service.revoked = False
    w.parker.backlog[0] = Counter({BLOCKED: 2})
    sent: list[dict[str, Any]] = []
    original = service.send

    async def send(client: Any, account: str, operation: str, payloads: list[Any]) -> Any:
        sent.extend(dict(p) for p in payloads)
        return await original(client, account, operation, payloads)

    service.send = send  # type: ignore[method-assign]
    await read_back_one(w, 0, 2.0, origin=8)
    await step(w, clock() + 1)
    await read_back_one(w, 1, 1.0, origin=3, quantity=7)
    await step(w, clock() + 2)
    assert [(p["price"], p.get("quantity")) for p in sent] == [(2.0, None), (2.0, 7)]
