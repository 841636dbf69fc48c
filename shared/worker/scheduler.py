"""The scheduler: the one place that decides when a bucket's batch is sent, and sends it.

The flush rule, whole: a bucket with items and no batch in flight, past any back-off,
is sent

- at once while draining (shutdown) or when it holds items of a partition being revoked;
- otherwise when it is full (`max_items`) or its oldest item has waited `linger_s`, its
  items are not held (a partition still catching up after an assignment), *and* the
  account's budget has a token free. Until it has one, the batch keeps filling and
  merging instead of being sent half full.

A bucket has up to `batch_max_in_flight` batches in flight, never two with one key
(shared.worker.flights), so two events for one key never reach the API out of order.
Each send runs in a task of its own: a throttled or failing account never holds up
another. A batch that fails transiently, or whose account answers 401, is put
back unsettled and its bucket backs off: nothing is ever dropped. An account failing for
long is parked instead (shared.worker.park): its items, and any that must follow them,
move to the retry topic, before anything else is considered for its bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import random
import uuid
from collections.abc import Set

from shared.coalescer import Bucket, BucketKey, Pending
from shared.m2e.client import Abandoned, M2EClient, TransientFailure, Unauthorized, UnknownAccount
from shared.m2e.flight import FLIGHT, Flight
from shared.offsets import PartitionTracker
from shared.results import ErrorInfo
from shared.service import Fatal, ItemOutcome
from shared.worker.context import Context
from shared.worker.flights import Flights
from shared.worker.park import UNAUTHORIZED, Parker, draining
from shared.worker.poison import send_isolating
from shared.worker.settle import Settler

log = logging.getLogger("m2e_sync.worker")

IDLE_WAKE_S = 1.0  # look again at least this often, to keep the gauges fresh


class Scheduler:
    def __init__(self, ctx: Context, client: M2EClient, settler: Settler, parker: Parker) -> None:
        self._ctx = ctx
        self._client = client
        self._settler = settler
        self._parker = parker
        self.linger_s = ctx.settings.batch_linger_ms / 1000
        self.flushes: set[asyncio.Task[None]] = set()
        self._batches: dict[asyncio.Task[None], list[Pending]] = {}  # what each flush carries
        self._flights: dict[asyncio.Task[None], Flight] = {}  # and its requests
        self._in_flight = Flights(ctx.settings.batch_max_in_flight)
        self._not_before: dict[BucketKey, float] = {}  # back-off after a failure or a 401
        self._failures: dict[BucketKey, int] = {}  # consecutive failed sends
        self._ready_at: dict[str, float] = {}  # account → when its budget expects a token
        self.draining = False  # flush everything, linger or not
        self.closed = False  # the loop ends

    @property
    def idle(self) -> bool:
        """Nothing buffered to send now and nothing in flight (items set aside to be sent
        later stay unsettled: a stop leaves them to the next owner)."""
        coalescer = self._ctx.coalescer
        return not (coalescer.size - coalescer.held or self.flushes)

    async def run(self) -> None:
        while not self.closed:
            self._ctx.signals.wake.clear()
            now = self._ctx.clock()
            wake_at = now + IDLE_WAKE_S
            for bucket in list(self._ctx.coalescer):
                wake_at = min(wake_at, await self._consider(bucket, now))
            self._gauges(now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, wake_at - self._ctx.clock())):
                    await self._ctx.signals.wake.wait()

    async def _consider(self, bucket: Bucket, now: float) -> float:
        """Send the bucket's next batch if it is due; else say when to look again. An empty
        bucket with nothing in flight is dropped: the loop costs per busy account, not per
        account ever seen."""
        if not (bucket.items or bucket.waiting or self._in_flight.busy(bucket.key)):
            if self._not_before.get(bucket.key, 0.0) <= now:
                self._not_before.pop(bucket.key, None)
                self._ctx.coalescer.discard(bucket)
            return math.inf
        waiting = self._ctx.coalescer.release_due(bucket, now) if bucket.waiting else math.inf
        return min(waiting, await self._consider_items(bucket, now))

    async def _consider_items(self, bucket: Bucket, now: float) -> float:
        key = bucket.key
        if not bucket.items or self._in_flight.full(key):
            return math.inf  # woken when items arrive or a batch ends
        # Nothing is moved aside while a batch flies: failed, it comes back behind newer
        # values of its keys that would already be parked (found: an update overtaken).
        if not self._in_flight.busy(key):
            pressed = self._pressed()
            if parked := self._parker.parkable(bucket, pressed):
                self._ctx.coalescer.remove(bucket, parked)
                await self._parker.park(key.account_token, key.operation, parked)
            if hot := self._parker.overflow(bucket, pressed):
                self._ctx.coalescer.remove(bucket, hot)
                await self._parker.park(key.account_token, key.operation, hot, backlog=True)
        ready = self._in_flight.ready(bucket)
        if not ready:
            return math.inf  # every key is in flight: woken when a batch ends
        not_before = self._not_before.get(key, 0.0)
        if now < not_before:
            return not_before
        ticket = None  # a slot taken for the batch's first request
        if not (self.draining or self._holds_revoking(bucket)):
            # A partial batch waits for its linger, and goes alongside another of the
            # bucket's only when full: a backlog still arriving is not sent in pieces.
            lingered_at = bucket.oldest() + self.linger_s
            if ready < self._ctx.coalescer.max_items:
                if now < lingered_at:
                    return lingered_at
                if self._in_flight.busy(key):
                    return math.inf  # woken when that batch ends
            if self._held(bucket):
                return math.inf  # woken when its partition catches up
            ready_at, ticket = await self._token_at(key.account_token, now, draining(bucket))
            if ready_at > now:
                return ready_at
        self._launch(bucket, ticket)
        # Another batch of other keys may go alongside: look again at once.
        return now if bucket.items and not self._in_flight.full(key) else math.inf

    async def _token_at(self, account: str, now: float, paced: bool) -> tuple[float, str | None]:
        """When the account's budget has a token, remembered so a busy account is not asked
        again before then; `now` and a ticket: one was free and is taken for the batch."""
        ready_at = self._ready_at.get(account, 0.0)
        if ready_at > now:
            return ready_at, None
        ticket = uuid.uuid4().hex
        try:
            wait = await self._client.take(account, ticket, paced)
        except UnknownAccount:
            return now, None  # the send fails it with the reason
        if wait > 0:
            self._ready_at[account] = now + wait
            return now + wait, None
        return now, ticket

    def _held(self, bucket: Bucket) -> bool:
        """Items of partitions still catching up after an assignment wait, so that re-read
        older updates merge with their newer successors — but never while fetching is
        paused or at the memory bound: the partition cannot catch up then, and holding
        would stop both reading and sending."""
        partitions, s = self._ctx.partitions, self._ctx.settings
        if not partitions.catching_up or partitions.fetching_paused:
            return False
        if partitions.full(s.max_pending_items, s.max_pending_bytes):
            return False
        return any(p.sources[0].tracker.hold_until is not None for p in bucket.items.values())

    def _pressed(self) -> bool:
        """Past half the memory bound: a failing account is parked without waiting."""
        s = self._ctx.settings
        return not self._ctx.partitions.below_half(s.max_pending_items, s.max_pending_bytes)

    def _holds_revoking(self, bucket: Bucket) -> bool:
        revoking = self._ctx.partitions.revoking
        return bool(revoking) and any(
            p.sources[0].tracker in revoking for p in bucket.items.values()
        )

    def _gauges(self, now: float) -> None:
        self._ctx.metrics.pending.labels(self._ctx.label).set(self._ctx.partitions.unsettled)
        oldest = min((b.oldest() for b in self._ctx.coalescer), default=math.inf)
        self._ctx.metrics.oldest_pending.labels(self._ctx.label).set(
            0.0 if oldest == math.inf else now - oldest
        )
        self._parker.gauges()

    def _launch(self, bucket: Bucket, ticket: str | None) -> None:
        batch = self._ctx.coalescer.take(bucket, skip=self._in_flight.keys(bucket.key))
        batch = [p for p in batch if p.sources[0].tracker.alive]  # revoked: the new owner's
        if not batch:
            if ticket is not None:
                self._client.release(bucket.key.account_token, ticket)
            return
        self._in_flight.start(bucket.key, [p.key for p in batch])
        flight = Flight(prepaid=None if ticket is None else (bucket.key.account_token, ticket))
        context = contextvars.copy_context()
        context.run(FLIGHT.set, flight)
        task = asyncio.create_task(self._flush(bucket, batch), context=context)
        self.flushes.add(task)
        self._batches[task] = batch
        self._flights[task] = flight
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self.flushes.discard(task)
        self._batches.pop(task, None)
        self._flights.pop(task, None)

    async def abandon(self, trackers: set[PartitionTracker] | None = None) -> int:
        """Stop every send still carrying items of `trackers` (partitions revoked, their
        flush deadline past), or every send (shutdown): the partitions' next owner sends
        them, and an old batch must not reach M2E after it — by a late success or a retry.
        Nothing more is sent for such a batch; a request already on the wire is waited for
        (at most one request timeout), since the server may apply it anyway. The batches'
        other items are put back. Returns the batches stopped."""
        doomed = [
            task
            for task, batch in self._batches.items()
            if trackers is None or any(p.sources[0].tracker in trackers for p in batch)
        ]
        flights = [self._flights[task] for task in doomed]
        for flight in flights:
            flight.abandoned = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._ctx.settings.m2e_timeout_s + 1.0):
                await asyncio.gather(*(f.landed.wait() for f in flights))
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        return len(doomed)

    async def _flush(self, bucket: Bucket, batch: list[Pending]) -> None:
        self._ctx.metrics.batch_size.labels(self._ctx.label, bucket.key.operation).observe(
            len(batch)
        )
        for pending in batch:
            pending.attempts += 1
        try:
            await self._send_and_settle(bucket, batch)
        finally:
            if (flight := FLIGHT.get()) and flight.prepaid:  # no request used its slot
                self._client.release(*flight.prepaid)
            # Only once its results are published: the bucket's next batch (a newer event
            # for the same key among it) may not publish its results first.
            self._in_flight.end(bucket.key, [p.key for p in batch])
            # Its answer may have stated the window (the first one does): ask the budget
            # again rather than wait out a wait computed without it.
            self._ready_at.pop(bucket.key.account_token, None)
            self._ctx.signals.wake.set()
            self._ctx.signals.progress.set()

    async def _send_and_settle(self, bucket: Bucket, batch: list[Pending]) -> None:
        account, operation = bucket.key.account_token, bucket.key.operation
        try:
            outcomes = await send_isolating(self._ctx, self._client, account, operation, batch)
        except Unauthorized:
            self._parker.health.failed(account, UNAUTHORIZED)
            self._ctx.metrics.auth_failures.labels(
                self._ctx.label, self._ctx.metrics.account(account)
            ).inc()
            log.error(
                "M2E answered 401 for account %s: pausing it for %.0fs; its messages "
                "move to the retry topic if it lasts %.0fs",
                account,
                self._ctx.settings.auth_backoff_s,
                self._ctx.settings.account_park_after_s,
            )
            self._give_back(bucket, batch, self._ctx.settings.auth_backoff_s)
            return
        except TransientFailure as exc:
            self._parker.health.failed(account, f"{type(exc).__name__}: {exc}")
            self._give_back(bucket, batch, self._backoff(bucket.key))
            log.warning("batch of %d for account %s given back: %s", len(batch), account, exc)
            return
        except Abandoned:
            self._give_back(bucket, batch, 0.0)
            return
        except UnknownAccount:  # removed from the credentials file while these waited
            error = ErrorInfo(
                code="UnknownAccount", message=f"no access token configured for {account}"
            )
            gone = ItemOutcome("failed", None, error, dead_letter=True)
            records, sources = self._settler.results(account, operation, batch, [gone] * len(batch))
            await self._settler.settle(records, sources)
            return
        except Fatal as exc:
            if self._ctx.signals.fatal is None:
                log.error("%s: stopping the process: %s", self._ctx.service.name, exc)
            self._ctx.signals.fail(str(exc))
            self._give_back(bucket, batch, self._ctx.settings.shutdown_grace_s)
            return
        except asyncio.CancelledError:
            self._give_back(bucket, batch, 0.0)
            raise
        except Exception as exc:  # an M2E error about the account, not its items
            self._parker.health.failed(account, type(exc).__name__)
            log.exception("unexpected error sending a batch for account %s", account)
            self._give_back(bucket, batch, self._backoff(bucket.key))
            return
        self._failures.pop(bucket.key, None)
        self._parker.health.succeeded(account)
        done = [(p, o) for p, o in zip(batch, outcomes, strict=True) if o is not None]
        again = [p for p, o in zip(batch, outcomes, strict=True) if o is None]
        if again:
            self._give_back(bucket, again, self._backoff(bucket.key))
        later = {id(p): p for p, o in done if self._later(p, o)}
        if later:
            self._ctx.coalescer.hold(bucket, list(later.values()))
            done = [(p, o) for p, o in done if id(p) not in later]
        if done:
            records, sources = self._settler.results(
                account, operation, [p for p, _ in done], [o for _, o in done]
            )
            await self._settler.settle(records, sources)
            self._settler.succeeded()

    def _later(self, pending: Pending, outcome: ItemOutcome) -> bool:
        """Whether an item answered "not yet" is sent again (and when), or settles now."""
        if outcome.retry_for_s is None or not pending.sources[0].tracker.alive:
            return False
        now = self._ctx.clock()
        if pending.failing_since is None:
            pending.failing_since = now
        if now - pending.failing_since >= outcome.retry_for_s:
            return False
        cap = self._ctx.settings.failure_backoff_cap_s
        pending.not_before = now + min(cap, 0.5 * 2.0 ** (pending.attempts - 1))
        return True

    def retry_now(self, accounts: Set[str]) -> None:
        """These accounts' tokens changed: forget their back-off and budget waits."""
        for key in [k for k in self._not_before if k.account_token in accounts]:
            del self._not_before[key]
            self._failures.pop(key, None)
        for account in accounts:
            self._ready_at.pop(account, None)
        self._ctx.signals.wake.set()

    def waiting(self, account: str) -> bool:
        """Waiting for its budget now."""
        return self._ready_at.get(account, 0.0) > self._ctx.clock()

    def _give_back(self, bucket: Bucket, batch: list[Pending], backoff_s: float) -> None:
        # Items of a partition revoked meanwhile belong to its new owner: never re-sent here.
        batch = [p for p in batch if p.sources[0].tracker.alive]
        self._ctx.coalescer.requeue(bucket, batch)
        self._not_before[bucket.key] = self._ctx.clock() + backoff_s

    def _backoff(self, key: BucketKey) -> float:
        n = self._failures[key] = self._failures.get(key, 0) + 1
        cap = self._ctx.settings.failure_backoff_cap_s
        return float(min(cap, 0.5 * 2.0 ** (n - 1)) * (0.5 + random.random() / 2))
