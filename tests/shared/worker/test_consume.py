"""The poll side without a broker: decoding, invalid messages, backpressure."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from .helpers import ACCT, TP, NullPublisher, record, worker


async def test_invalid_messages_are_settled_at_once() -> None:
    w = worker()
    bad = ConsumerRecord(TP.topic, 0, 0, 0, 0, b"A", b"{oops", None, 1, 5, [])
    await w.poller.ingest({TP: [bad]})
    publisher = w.publisher
    assert isinstance(publisher, NullPublisher)
    assert [r.topic for r in publisher.published] == [
        "variant-updates.dlq",
        "variant-updates.results",
    ]
    assert w.partitions.trackers[TP].committable() == 1


class RecordingConsumer:
    def __init__(self, position: int = 0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.at = position
        self._paused: set[TopicPartition] = set()
        self.sought: list[tuple[TopicPartition, int]] = []

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)
        self.calls.append(("pause", len(tps)))

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)
        self.calls.append(("resume", len(tps)))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


async def test_fetching_pauses_above_the_bound_and_resumes_below_half() -> None:
    w = worker(max_pending_items=4)
    consumer = RecordingConsumer()
    await w.poller.ingest({TP: [record(i, f"S{i}", 1.0) for i in range(4)]})
    w.poller._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1)]
    assert w.metrics.paused.labels("variant-sync")._value.get() == 1
    tracker = w.partitions.trackers[TP]
    tracker.done(0)
    w.poller._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1)]  # 3 unsettled: still above half of the bound
    tracker.done(1)
    w.poller._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1), ("resume", 1)]
    assert w.metrics.paused.labels("variant-sync")._value.get() == 0


async def test_the_position_past_a_transaction_marker_releases_a_held_partition() -> None:
    w = worker()
    w.partitions.assigned_ends[TP] = 4  # end offset 4: offset 3 is a commit marker
    await w.poller.ingest({TP: [record(0, "A", 1.0), record(1, "B", 1.0), record(2, "C", 1.0)]})
    bucket = next(iter(w.coalescer))
    assert w.scheduler._held(bucket)  # 2 + 1 < 4: the last record never reaches the end
    await w.poller._follow_positions(RecordingConsumer(position=4))  # type: ignore[arg-type]
    assert not w.scheduler._held(bucket)


async def test_memory_is_bounded_in_bytes_not_only_in_messages() -> None:
    """Four 1 MB inline invoices are far below 50,000 messages, and far above the bytes
    a 256 Mi pod can hold a hundred of: fetching pauses on bytes."""
    import base64
    import json

    from aiokafka import ConsumerRecord

    from services.invoice_upload import FetchPolicy, InvoiceUpload, MemoryLedger, SafeFetcher

    service = InvoiceUpload({ACCT}, SafeFetcher(FetchPolicy()), MemoryLedger(), 2)
    w = worker(service=service, max_pending_bytes=5_000_000)
    pdf = base64.b64encode(b"%PDF-1.7\n" + b"0" * 1_000_000).decode()
    tp = TopicPartition("invoice-uploads", 0)
    records = []
    for i in range(4):
        value = json.dumps(
            {
                "account_token": ACCT,
                "order_id": f"O{i}",
                "invoice_number": "I",
                "invoice_pdf_base64": pdf,
            }
        ).encode()
        records.append(
            ConsumerRecord(tp.topic, 0, i, 0, 0, b"O%d" % i, value, None, 2, len(value), [])
        )
    await w.poller.ingest({tp: records})
    assert w.partitions.unsettled == 4 and w.partitions.unsettled_bytes > 5_000_000
    consumer = RecordingConsumer()
    w.poller._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1)]
    for i in range(3):
        w.partitions.trackers[tp].done(i)
    w.poller._backpressure(consumer)  # type: ignore[arg-type]
    assert consumer.calls == [("pause", 1), ("resume", 1)]  # 1.3 MB left: below half


class RevokedDuringPosition(RecordingConsumer):
    """The group rebalances while the poll loop awaits a position: TP is no longer ours."""

    def __init__(self) -> None:
        super().__init__()
        self.owned = {TP}
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def position(self, tp: TopicPartition) -> int:
        self.owned.discard(tp)
        return 5

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if set(offsets) - self.owned:
            raise AssertionError("commit names a partition not assigned")  # as Kafka refuses
        self.committed.append(offsets)


async def test_a_partition_revoked_during_a_poll_leaves_no_tracker_behind() -> None:
    """A tracker made for a partition revoked meanwhile was never forgotten, and the
    commits that named it failed for every partition: the group stopped committing."""
    w = worker()
    consumer = RevokedDuringPosition()
    await w.poller._follow_positions(consumer)  # type: ignore[arg-type]
    assert TP not in w.partitions.trackers


async def test_commits_name_only_assigned_partitions() -> None:
    from aiokafka import TopicPartition as TP_

    w = worker()
    other = TP_(TP.topic, 1)
    consumer = RevokedDuringPosition()
    consumer.owned = {other}
    w.consumer = consumer  # type: ignore[assignment]
    for tp in (TP, other):
        tracker = w.partitions.tracker(tp)
        tracker.add(0)
        tracker.done(0)
    await w.committer.commit()
    assert consumer.committed == [{other: 1}]
