"""Parking: a blocked account never holds back the others.

A partition's commit moves past a message only once it is settled, so an account that
keeps failing (its token revoked, or no send succeeding) would pin every partition's
watermark at its first message; the other accounts' finished messages would count as
pending, fetching would pause for everyone at the memory bound, and a restart would
re-read it all. So once an account has failed for `account_park_after_s` (at once while
the unsettled messages are past half the memory bound), its buffered items are *parked*:
each message goes, with its original bytes and headers plus the reason and a not-before
time, to partition p of `<input>.retry` (p: the partition it came from); a `deferred`
result is published, and the message counts as settled, so the watermarks move on.

The worker reads `<input>.retry` too, and the range assignor gives partition p of both
topics to the same consumer, so one process decides for both:

- Order: while an account has messages of partition p waiting in the retry topic, its new
  messages from p follow them there. The owner counts them per account: at assignment by
  reading the retry partition from its committed offset to its end, then as it parks and
  reads back. A message never overtakes an older one of its SKU. A failed trial parks its
  records again, behind newer ones of their SKUs not due yet; read back after those, an
  old record keeps only what the newer did not set (`in_order`; within one process: a
  restart between the newer one's commit and the old one's read back loses that memory).
- Delay: a retry record is read back when its not-before time has come, or at once when
  this process does not know its account to be failing (after a restart, or once the
  account works again). A record not yet due pauses its retry partition until then.
- Recovery: reading back a record of a parked account starts a new trial: its items are
  sent; if that works the account is healthy and the rest follows in order; if not, it is
  parked again after another interval. No operator action is needed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.clock import Clock
from shared.coalescer import Bucket, MergeRule, Payload, Pending
from shared.results import ErrorInfo, OutRecord
from shared.service import ItemOutcome
from shared.topics import retry_topic
from shared.worker.context import Context
from shared.worker.settle import Settler

ACCOUNT, NOT_BEFORE, REASON, ORIGIN, COUNT = (
    "retry.account",
    "retry.not-before-ms",
    "retry.reason",
    "retry.origin-offset",
    "retry.count",
)
BEHIND = "an older message of the account waits in the retry topic"


@dataclass(frozen=True, slots=True)
class RetryInfo:
    """What a retry record's headers say."""

    account: str
    not_before: float  # epoch seconds
    origin: int  # the message's offset in the input topic (same partition)
    count: int  # times parked


def retry_info(headers: Sequence[tuple[str, bytes]] | None) -> RetryInfo | None:
    found = {k: v for k, v in headers or () if k.startswith("retry.")}
    try:
        return RetryInfo(
            found[ACCOUNT].decode(),
            int(found[NOT_BEFORE]) / 1000,
            int(found[ORIGIN]),
            int(found.get(COUNT, b"1")),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None  # not written by a worker: read like an input message


UNAUTHORIZED = "M2E answered 401 Unauthorized"
BACKLOG = "the account's backlog is past MAX_PENDING_PER_ACCOUNT"


class AccountHealth:
    """Failure streaks per account: since when no send of it has succeeded, and why."""

    def __init__(self, park_after_s: float, clock: Clock) -> None:
        self._park_after_s = park_after_s
        self._clock = clock
        self._since: dict[str, float] = {}
        self._reason: dict[str, str] = {}

    def failed(self, account: str, reason: str) -> None:
        self._since.setdefault(account, self._clock())
        self._reason[account] = reason

    def succeeded(self, account: str) -> None:
        self._since.pop(account, None)
        self._reason.pop(account, None)

    def failing(self, account: str) -> bool:
        return account in self._since

    def parked(self, account: str, pressed: bool = False) -> bool:
        since = self._since.get(account)
        if since is None:
            return False
        return pressed or self._clock() - since >= self._park_after_s

    def retry(self, account: str) -> None:
        """A parked account's messages came back: give it a new trial interval."""
        if self.parked(account):
            self._since[account] = self._clock()

    def reason(self, account: str) -> str:
        return self._reason.get(account, BEHIND)

    def count_parked(self) -> int:
        return sum(1 for account in self._since if self.parked(account))


def draining(bucket: Bucket) -> bool:
    """The bucket's next batch comes from the retry topic (its oldest item was read back): a
    backlog, whose sends are paced over the window (`Limiter.take`) rather than burst at its
    start, when reading it back would take the CPU every other account waits for."""
    for pending in bucket.items.values():
        return pending.sources[0].origin is not None
    return False


class Parker:
    def __init__(
        self, ctx: Context, input_topic: str, settler: Settler, wall: Clock = time.time
    ) -> None:
        self._ctx = ctx
        self._settler = settler
        self._wall = wall
        self.retry_topic = retry_topic(input_topic)
        self.health = AccountHealth(ctx.settings.account_park_after_s, ctx.clock)
        # Per partition: messages of each account in the retry topic not read back yet.
        self.backlog: dict[int, Counter[str]] = {}
        # Assigned, not counted yet: none of their records may be read before.
        self.unready: set[TopicPartition] = set()
        # Per partition and account with records still waiting: per key, the newest record
        # read back (its input offset, its payload). See `in_order`.
        self._read: dict[tuple[int, str], dict[str, tuple[int, Payload]]] = {}

    def is_retry(self, topic: str) -> bool:
        return topic == self.retry_topic

    def must_follow(self, partition: int, account: str) -> bool:
        """A new message of `account` from input partition `partition` must go behind the
        account's messages waiting in the retry topic."""
        backlog = self.backlog.get(partition)
        return bool(backlog) and backlog[account] > 0  # type: ignore[index]

    def admit(self, info: RetryInfo) -> float:
        """Seconds until a retry record is due; 0 when it is (a parked account's is its trial)."""
        if self.health.failing(info.account):
            wait = info.not_before - self._wall()
            if wait > 0:
                return wait
            self.health.retry(info.account)
        return 0.0

    def read_back(self, partition: int, info: RetryInfo) -> None:
        backlog = self.backlog.setdefault(partition, Counter())
        backlog[info.account] -= 1
        if backlog[info.account] <= 0:
            del backlog[info.account]

    def in_order(
        self,
        partition: int,
        account: str,
        key: str,
        origin: int,
        payload: Payload,
        merge: MergeRule,
    ) -> Payload | None:
        """What of a record read back is still to be applied (None: nothing). A trial that
        fails parks its records again at the end of the retry partition, behind newer ones
        of their keys that were not due yet; read back after them, an old record keeps only
        what the newer one of its key did not set, so an older value never lands last."""
        seen = self._read.setdefault((partition, account), {})
        newest = seen.get(key)
        if newest is None or newest[0] <= origin:  # in order (or the same message again)
            seen[key] = (origin, payload)
            return payload
        merged, replaced = merge(payload, newest[1])
        return None if replaced or merged == newest[1] else merged

    def forget_read(self) -> None:
        """Accounts with nothing left in a retry partition: no older record of theirs can
        come back after the ones read (parked from now on, it follows them in memory)."""
        for partition, account in list(self._read):
            if not self.backlog.get(partition, Counter())[account]:
                del self._read[(partition, account)]

    def parkable(self, bucket: Bucket, pressed: bool) -> list[Pending]:
        """The bucket's items to park now: all of a parked account, else those that must
        follow older messages into the retry topic."""
        if self.health.parked(bucket.key.account_token, pressed):
            return list(bucket.items.values())
        return [p for p in bucket.items.values() if p.must_park]

    def overflow(self, bucket: Bucket, pressed: bool) -> list[Pending]:
        """While the worker is past half its memory bound (`pressed`), a hot account's items
        from the input past `max_pending_per_account`: all of them move aside (none read
        back from the retry topic: those are its backlog draining), so its order holds and
        fetching never pauses for the others because of it."""
        if not pressed or len(bucket.items) <= self._ctx.settings.max_pending_per_account:
            return []
        return [p for p in bucket.items.values() if all(s.origin is None for s in p.sources)]

    async def park(
        self, account: str, operation: str, items: list[Pending], *, backlog: bool = False
    ) -> None:
        """Write the items' messages to the retry topic, in their order per partition, with
        a `deferred` result for each one new to it; then they are settled. A failing
        account's wait `account_park_after_s`; a hot account's (`backlog`) are due at once."""
        reason = BACKLOG if backlog else self.health.reason(account)
        delay_s = 0.0 if backlog else self._ctx.settings.account_park_after_s
        not_before_ms = str(int((self._wall() + delay_s) * 1000))
        sources = sorted(
            (src for p in items for src in p.sources),
            key=lambda s: (s.partition, s.origin is None, s.offset),  # retried ones are older
        )
        records: list[OutRecord] = []
        for src in sources:
            info = retry_info(src.headers)
            headers = [(k, v) for k, v in src.headers if not k.startswith("retry.")]
            headers += [
                (ACCOUNT, account.encode()),
                (NOT_BEFORE, not_before_ms.encode()),
                (REASON, reason[:500].encode("utf-8", "replace")),
                (ORIGIN, str(src.input_offset).encode()),
                (COUNT, str(info.count + 1 if info else 1).encode()),
            ]
            records.append(
                OutRecord(self.retry_topic, src.key, src.value, headers, partition=src.partition)
            )
            self.backlog.setdefault(src.partition, Counter())[account] += 1
        # Results: `deferred` for the messages new to the retry topic; `superseded` for
        # those a newer message replaced (it carries their content).
        # A hot account's messages get no `deferred` result: they come back at once and
        # their final result follows (a third less work on the busiest path).
        fresh = [
            replace(p, sources=[] if backlog else [s for s in p.sources if s.origin is None])
            for p in items
        ]
        deferred = ItemOutcome("deferred", None, ErrorInfo(code="AccountBlocked", message=reason))
        results, settled = self._settler.results(account, operation, fresh, [deferred] * len(fresh))
        settled += [s for s in sources if backlog or s.origin is not None]
        await self._settler.settle(records + results, settled)
        self._ctx.metrics.parked.labels(self._ctx.label, self._ctx.metrics.account(account)).inc(
            len(sources)
        )

    async def scan(self, consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> None:
        """Count, per account, what the retry partitions among `tps` hold past their
        committed offsets: a new owner's knowledge of what its new messages must follow."""
        retry = [tp for tp in tps if self.is_retry(tp.topic)]
        if not retry:
            return
        ends = await consumer.end_offsets(retry)
        starts = await consumer.beginning_offsets(retry)
        todo: dict[TopicPartition, tuple[int, int]] = {}
        for tp in retry:
            self.backlog[tp.partition] = Counter()
            committed = await consumer.committed(tp)
            start = committed if committed is not None else starts[tp]
            if ends[tp] > start:
                todo[tp] = (start, ends[tp])
        if todo:
            await self._count(todo)

    async def _count(self, todo: dict[TopicPartition, tuple[int, int]]) -> None:
        s = self._ctx.settings
        reader = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **s.kafka_security(),
        )
        await reader.start()
        try:
            reader.assign(list(todo))
            for tp, (start, _) in todo.items():
                reader.seek(tp, start)
            while todo:
                batch = await reader.getmany(*todo, timeout_ms=500)
                for tp, records in batch.items():
                    end = todo[tp][1]
                    for rec in records:
                        info = retry_info(rec.headers)
                        if rec.offset < end and info is not None:
                            self.backlog[tp.partition][info.account] += 1
                for tp in [tp for tp, (_, end) in todo.items() if await reader.position(tp) >= end]:
                    reader.pause(tp)
                    del todo[tp]
        finally:
            await reader.stop()

    def unpaired(self, tps: Iterable[TopicPartition]) -> set[int]:
        """Partitions of which only the input or only the retry side is among `tps`."""
        retry = {tp.partition for tp in tps if self.is_retry(tp.topic)}
        inputs = {tp.partition for tp in tps if not self.is_retry(tp.topic)}
        return retry ^ inputs

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            if self.is_retry(tp.topic):
                self.backlog.pop(tp.partition, None)
        self.forget_read()

    def gauges(self) -> None:
        self._ctx.metrics.accounts_parked.labels(self._ctx.label).set(self.health.count_parked())
