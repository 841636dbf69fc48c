"""The Worker: one input topic, consumed with a loop of our own, its parts wired together.

    worker = Worker(service, settings, client, publisher, metrics)
    await worker.start()      # consumer joins the group; poll, schedule, commit tasks run
    await worker.stop()       # flush, publish, commit within SHUTDOWN_GRACE_S, then leave

The parts, each in a module of its own:

- `consume.Poller`: poll → decode → coalesce, backpressure;
- `scheduler.Scheduler`: the flush rule, the sends, give-back and back-off;
- `settle.Settler`: result and dead-letter records, publish, mark done;
- `commits.Committer` and `commits.Rebalance`: per-partition commits, revocation and
  assignment;
- `park.Parker`: a blocked account's messages moved to `<input>.retry` and read back;
- `partitions.Partitions`: the owned partitions' trackers; `signals.Signals`: how the
  tasks wake each other.

FastStream's batch subscriber can neither linger across polls nor commit per partition
only what is done, so the consume loop is ours (aiokafka, auto-commit off,
`read_committed`; a new group starts from the earliest offset). It reads the input and
its retry topic with the range assignor, which gives partition p of both to one consumer,
and joins the group with one request for both assignors (`join`). aiokafka does not call
`on_partitions_revoked` on `stop()`, so `stop` flushes and commits itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from shared.clock import Clock
from shared.coalescer import Coalescer
from shared.config import WorkerSettings
from shared.m2e.client import M2EClient
from shared.m2e.credentials import Change
from shared.metrics import Metrics
from shared.results import Publisher
from shared.service import Service
from shared.topics import ensure_retry_topic
from shared.worker.accounts import AccountBook, AccountsView, backlogs
from shared.worker.commits import Committer, Rebalance
from shared.worker.consume import Poller
from shared.worker.context import Context
from shared.worker.join import use_one_join
from shared.worker.park import UNAUTHORIZED, Parker
from shared.worker.partitions import Partitions
from shared.worker.scheduler import Scheduler
from shared.worker.settle import Settler
from shared.worker.signals import Signals

log = logging.getLogger("m2e_sync.worker")

STALL_S = 30.0  # a poll loop silent this long is not alive (/healthz)


class Worker:
    def __init__(
        self,
        service: Service,
        settings: WorkerSettings,
        client: M2EClient,
        publisher: Publisher,
        metrics: Metrics,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        book: AccountBook | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.client = client
        self.publisher = publisher
        self.metrics = metrics
        self.clock = clock
        self.input_topic = settings.kafka_input_topic or service.input_topic
        self.consumer: AIOKafkaConsumer | None = None
        self.partitions = Partitions()
        self.signals = Signals(clock)
        self.coalescer = Coalescer(dict(service.merge_rules), settings.batch_max_items, clock)
        ctx = Context(
            service, settings, metrics, clock, self.partitions, self.coalescer, self.signals
        )
        self.settler = Settler(ctx, self.input_topic, publisher)
        self.parker = Parker(ctx, self.input_topic, self.settler, wall)
        self.scheduler = Scheduler(ctx, client, self.settler, self.parker)
        self.poller = Poller(ctx, self.settler, self.parker)
        self.committer = Committer(ctx, lambda: self.consumer)
        self.rebalance = Rebalance(
            ctx, self.committer, self.scheduler, self.parker, lambda: self.consumer
        )
        self.book = book or AccountBook(settings.budget_period_s, clock, wall)
        self.accounts = AccountsView(
            service.name,
            self.book,
            client.credentials,
            self._health_state,
            lambda: backlogs(self.coalescer, self.parker.backlog.values(), self.clock()),
            self.scheduler.waiting,
            settings.rate_limit_requests,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _health_state(self, account: str) -> str | None:
        health = self.parker.health
        if not health.failing(account):
            return None
        if health.reason(account) == UNAUTHORIZED:
            return "unauthorized"
        return "parked" if health.parked(account) else "failing"

    def credentials_changed(self, change: Change) -> None:
        """A reload gave accounts a new token (or added them): what waited for a working
        token is tried at once — back-offs, 401 pauses, parked messages."""
        fresh = change.added | change.rotated
        for account in fresh:
            self.parker.health.succeeded(account)
        self.poller.retry_now()
        self.scheduler.retry_now(fresh)

    @property
    def results_topic(self) -> str:
        return self.settler.results_topic

    @property
    def dlq_topic(self) -> str:
        return self.settler.dlq_topic

    def _make_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        use_one_join()
        return AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id(self.service.name),
            group_instance_id=s.kafka_group_instance_id,
            client_id=f"m2e-sync.{self.service.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group starts from the beginning
            isolation_level="read_committed",
            # Round-robin second: replicas of a version before the retry topic know only it,
            # and a rolling upgrade must not stall on a group that cannot agree.
            partition_assignment_strategy=(RangePartitionAssignor, RoundRobinPartitionAssignor),
            session_timeout_ms=s.kafka_session_timeout_ms,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=32 << 20,
            **s.kafka_security(),
        )

    async def start(self) -> None:
        await self.service.start()
        await self.publisher.start()
        s = self.settings
        await ensure_retry_topic(s.kafka_bootstrap_servers, self.input_topic, s.kafka_security())
        self.consumer = self._make_consumer()
        self.consumer.subscribe(
            [self.input_topic, self.parker.retry_topic], listener=self.rebalance
        )
        await self.consumer.start()
        self._tasks = [
            asyncio.create_task(self.poller.run(self.consumer), name="poll"),
            asyncio.create_task(self.scheduler.run(), name="schedule"),
            asyncio.create_task(
                self.committer.run(self.settings.commit_interval_ms / 1000), name="commit"
            ),
        ]
        log.info(
            "worker started",
            extra={"service": self.service.name, "topic": self.input_topic},
        )

    async def stop(self) -> None:
        """Flush, publish and commit everything, then leave; bounded by the grace period."""
        if self.consumer is None:
            return
        self.poller.stopping = True
        deadline = self.clock() + self.settings.shutdown_grace_s
        if self._tasks:  # let the poll loop finish its current getmany
            poll = self._tasks[0]
            try:
                await asyncio.wait_for(
                    asyncio.shield(poll), timeout=max(0.1, deadline - self.clock())
                )
            except TimeoutError:
                poll.cancel()
        scheduler = self.scheduler
        scheduler.draining = True
        self.signals.wake.set()
        await self.signals.wait_until(lambda: scheduler.idle, deadline)
        scheduler.closed = self.committer.closed = True
        self.signals.wake.set()
        # Past the grace period: what is still in flight is stopped, but a request on the
        # wire is waited for before the group hears we left — its partitions' next owner
        # must not send before it lands.
        await scheduler.abandon()
        unsettled = self.coalescer.size + self.unsettled
        await self.committer.commit()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.consumer.stop()
        await self.publisher.stop()
        await self.service.stop()
        self.consumer = None
        log.info("worker stopped", extra={"service": self.service.name, "unsettled": unsettled})

    @property
    def unsettled(self) -> int:
        """Messages consumed from owned partitions whose results are not published yet."""
        return self.partitions.unsettled

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    @property
    def alive(self) -> bool:
        return self.signals.fatal is None and self.clock() - self.poller.last_poll < STALL_S

    @property
    def ready(self) -> bool:
        return self.consumer is not None and bool(self.consumer.assignment())
