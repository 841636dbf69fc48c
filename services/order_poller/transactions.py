"""order-poller's Kafka transactions: one transactional producer per owned tick partition.

The ticks of one (channel, account) are keyed alike, so they all come from one tick
partition, and whoever owns that partition polls the account. The producer that publishes
its orders and cursor has the transactional id `<ORDER_TRANSACTIONAL_ID>.<partition>`: the
id follows the work, not the pod. When partition p moves (a replica stops, scales down, is
rescheduled under a new name, or is SIGKILLed), its new owner starts the producer `….p`
before it reads anything of p; the broker then fences the previous owner and ends its open
transaction (an abort, or the commit it had already asked for), so the cursor read next is
the latest committed one. A previous owner that lives on (a zombie: paused past its session
timeout) is refused at its next transaction (`ProducerFenced`) and stops (shared.service.Fatal)
instead of publishing what the new owner publishes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Set
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)

from shared.service import Fatal

log = logging.getLogger("m2e_sync.order_poller")

# The broker refuses these for good: a producer that got one can never commit again.
FENCED = (
    ProducerFenced,
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    TransactionalIdAuthorizationFailed,
)

Record = tuple[str, bytes, bytes | None]  # topic, key, value (None: a tombstone)


class Transactions:
    def __init__(
        self, bootstrap_servers: str, id_prefix: str, kafka: Mapping[str, Any] | None = None
    ) -> None:
        self._bootstrap = bootstrap_servers
        self.id_prefix = id_prefix
        self._kafka = dict(kafka or {})
        self._producers: dict[int, AIOKafkaProducer] = {}
        # One producer, many accounts of its partition polled at once: one transaction at a time.
        self._locks: dict[int, asyncio.Lock] = {}
        self.fenced: str | None = None  # once one producer was: the process is going down

    def _refuse(self) -> None:
        if self.fenced is not None:
            raise Fatal(self.fenced)

    def transactional_id(self, partition: int) -> str:
        return f"{self.id_prefix}.{partition}"

    @property
    def partitions(self) -> Set[int]:
        return self._producers.keys()

    async def own(self, partitions: Iterable[int]) -> None:
        """Start the producers of newly owned partitions; each start fences the partition's
        previous owner and waits until its open transaction has ended."""
        for p in sorted(set(partitions) - set(self._producers)):
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                transactional_id=self.transactional_id(p),
                enable_idempotence=True,
                acks="all",
                **self._kafka,
            )
            await producer.start()
            try:
                # An empty transaction: returns once the broker gave this id a new epoch.
                await producer.begin_transaction()
                await producer.abort_transaction()
            except BaseException:
                await producer.stop()
                raise
            self._producers[p] = producer
            self._locks[p] = asyncio.Lock()

    async def release(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            producer = self._producers.pop(p, None)
            self._locks.pop(p, None)
            if producer is not None:
                with contextlib.suppress(KafkaError):  # a fenced one re-raises its error
                    await producer.stop()

    async def close(self) -> None:
        await self.release(list(self._producers))

    async def publish(self, partition: int, records: list[Record]) -> None:
        """`records` in one transaction of `partition`'s producer: all visible, or none."""
        self._refuse()
        if partition not in self._producers:
            # Read back from the retry topic, or an assignment this process missed: the
            # partition is ours (its messages are), so its producer is started now.
            await self.own([partition])
        producer, lock = self._producers[partition], self._locks[partition]
        async with lock:
            self._refuse()  # fenced while this waited for the lock
            deliveries: list[asyncio.Future[Any]] = []
            try:
                async with producer.transaction():
                    for topic, key, value in records:
                        deliveries.append(await producer.send(topic, value, key=key))
            except FENCED as exc:
                for delivery in deliveries:  # their error is this one: not "never retrieved"
                    delivery.add_done_callback(_retrieve)
                self.fenced = (
                    f"transactional producer {self.transactional_id(partition)!r} was fenced "
                    f"({type(exc).__name__}): another process owns tick partition "
                    f"{partition} now (two deployments with one ORDER_TRANSACTIONAL_ID, or "
                    f"this process lost its partitions while paused)"
                )
                raise Fatal(self.fenced) from None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
