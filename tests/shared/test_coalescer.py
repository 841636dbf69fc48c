"""The buffers and the merge rules (the flush rule is the scheduler's: tests/shared/worker)."""

from __future__ import annotations

from shared.coalescer import MAX_BATCH_ITEMS, Coalescer, Source, last_write_wins, merge_fields
from shared.offsets import PartitionTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(max_items: int = 3) -> tuple[Coalescer, Clock, PartitionTracker]:
    clock = Clock()
    rules = {"v": merge_fields, "p": last_write_wins}
    return Coalescer(rules, max_items, clock), clock, PartitionTracker("t", 0)


def src(tracker: PartitionTracker, offset: int) -> Source:
    tracker.add(offset)
    return Source(tracker, offset)


def test_batch_size_is_capped_at_500_whatever_the_setting() -> None:
    c = Coalescer({}, 10_000, Clock())
    assert c.max_items == MAX_BATCH_ITEMS


def test_take_is_oldest_first_and_at_most_max_items_and_merging_goes_on_until_then() -> None:
    c, clock, t = make(max_items=2)
    for i in range(3):
        clock.now += 1
        c.add("acct", "v", f"sku{i}", {"sku": f"sku{i}", "price": i}, src(t, i))
    c.add("acct", "v", "sku0", {"sku": "sku0", "quantity": 4}, src(t, 3))
    bucket = next(iter(c))
    assert bucket.oldest() == 101.0
    batch = c.take(bucket)
    assert [p.key for p in batch] == ["sku0", "sku1"]
    assert batch[0].payload == {"sku": "sku0", "price": 0, "quantity": 4}
    assert list(bucket.items) == ["sku2"] and c.size == 1


def test_field_merge_keeps_every_field_and_every_source() -> None:
    c, _clock, t = make()
    c.add("acct", "v", "a", {"sku": "a", "price": 1.0}, src(t, 0))
    c.add("acct", "v", "a", {"sku": "a", "quantity": 5}, src(t, 1))
    c.add("acct", "v", "a", {"sku": "a", "price": 2.0}, src(t, 2))
    bucket = next(iter(c))
    [pending] = c.take(bucket)
    assert pending.payload == {"sku": "a", "price": 2.0, "quantity": 5}
    assert [s.offset for s in pending.sources] == [0, 1, 2]
    assert pending.superseded == []
    assert c.size == 0


def test_last_write_wins_marks_older_messages_superseded() -> None:
    c, _clock, t = make()
    c.add("acct", "p", "a", {"sku": "a", "title": "old"}, src(t, 0))
    c.add("acct", "p", "a", {"sku": "a", "title": "new"}, src(t, 1))
    [pending] = c.take(next(iter(c)))
    assert pending.payload == {"sku": "a", "title": "new"}
    assert [s.offset for s in pending.sources] == [1]
    assert [s.offset for s in pending.superseded] == [0]


def test_buckets_are_per_account_and_operation() -> None:
    c, _clock, t = make()
    c.add("a1", "v", "x", {"sku": "x"}, src(t, 0))
    c.add("a2", "v", "x", {"sku": "x"}, src(t, 1))
    c.add("a1", "p", "x", {"sku": "x"}, src(t, 2))
    assert {(b.key.account_token, b.key.operation) for b in c} == {
        ("a1", "v"),
        ("a2", "v"),
        ("a1", "p"),
    }
    assert c.size == 3


def test_requeue_puts_a_failed_batch_first_and_merges_newer_arrivals() -> None:
    c, _clock, t = make(max_items=10)
    c.add("acct", "v", "a", {"sku": "a", "price": 1}, src(t, 0))
    c.add("acct", "v", "b", {"sku": "b", "price": 1}, src(t, 1))
    bucket = next(iter(c))
    batch = c.take(bucket)
    c.add("acct", "v", "c", {"sku": "c", "price": 3}, src(t, 2))
    c.add("acct", "v", "a", {"sku": "a", "quantity": 9}, src(t, 3))
    c.requeue(bucket, batch)
    assert list(bucket.items) == ["a", "b", "c"]
    assert bucket.items["a"].payload == {"sku": "a", "price": 1, "quantity": 9}
    assert [s.offset for s in bucket.items["a"].sources] == [0, 3]
    assert c.size == 3


def test_dropping_revoked_partitions() -> None:
    c, _clock, t0 = make(max_items=10)
    t1 = PartitionTracker("t", 1)
    c.add("acct", "v", "a", {"sku": "a"}, src(t0, 0))
    c.add("acct", "v", "b", {"sku": "b"}, src(t1, 0))
    assert c.drop_partitions({t0}) == 1
    assert list(next(iter(c)).items) == ["b"] and c.size == 1


def test_merges_follow_event_time_when_events_arrive_out_of_order() -> None:
    from shared.coalescer import AT, by_event_time, last_write_wins, merge_fields

    fields = by_event_time(merge_fields)
    newer, older = {"price": 2, "qty": 5, AT: 200.0}, {"price": 1, AT: 100.0}
    assert fields(newer, older) == ({"price": 2, "qty": 5, AT: 200.0}, False)
    assert fields(older, newer)[0] == {"price": 2, "qty": 5, AT: 200.0}
    assert fields({"price": 1}, {"price": 3})[0] == {"price": 3}  # untimed: arrival order
    whole = by_event_time(last_write_wins)
    assert whole(newer, older) == (newer, False)  # the late old event does not replace
    assert whole(older, newer) == (newer, True)
