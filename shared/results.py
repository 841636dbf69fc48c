"""Results and DLQ records, published on one idempotent producer (acks=all).

One result per input message, keyed like it. Records are grouped per (topic, partition)
into aiokafka batches: a keyed batch publish that FastStream's publisher API does not
offer, and 2–3× the throughput of one `send` per record on this machine. A record is
keyed like its input, so it lands in the partition the key hashes to.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from pydantic import AfterValidator, BaseModel, ConfigDict, create_model, field_validator

Status = Literal["ok", "failed", "superseded", "duplicate-skipped", "deferred"]


class SourceRef(BaseModel):
    topic: str
    partition: int
    offset: int


# Under the broker's default message.max.bytes (1,048,588) with room for batch overhead.
RECORD_LIMIT = 1_000_000
TEXT_LIMIT = 1024  # keys and key fields echoed into results; a hostile 1 MB SKU stays out


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more characters]"


class ErrorInfo(BaseModel):
    code: str
    message: str

    @field_validator("message", mode="after")
    @classmethod
    def _short(cls, value: str) -> str:
        return clip(value, 2000) or ""


class ResultRecord(BaseModel):
    """What happened to one input message (`<input-topic>.results`). A service's results
    also name its entity, in the field `keyed_result` adds (`sku`, `order_id`, …)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    status: Status
    account_token: str | None
    operation: str
    http_status: int | None = None
    error: ErrorInfo | None = None
    source: SourceRef
    batch_id: str | None = None
    attempts: int = 0
    event_id: str | None = None

    @field_validator("event_id", mode="after")
    @classmethod
    def _clipped(cls, value: str | None) -> str | None:
        return clip(value)


ClippedText = Annotated[str | None, AfterValidator(clip)]


@functools.cache
def keyed_result(*key_fields: str) -> type[ResultRecord]:
    """`ResultRecord` with the fields that name a service's entity, e.g. `keyed_result("sku")`."""
    fields: dict[str, Any] = {name: (ClippedText, None) for name in key_fields}
    return create_model(
        "ResultRecord",
        __base__=ResultRecord,
        __doc__="What happened to one input message (`<input-topic>.results`).",
        **fields,
    )


class ResultTemplate:
    """One item's result rendered once by `ResultRecord`; only `source` (and `event_id`)
    differ between the messages behind it, so they are spliced in per message."""

    __slots__ = ("_head", "_topic")

    def __init__(self, record: ResultRecord, topic: str) -> None:
        body = record.model_dump_json(exclude_none=True, exclude={"source", "event_id"})
        self._head = body[:-1].encode()  # without the closing brace
        self._topic = json.dumps(topic).encode()

    def render(self, partition: int, offset: int, event_id: str | None = None) -> bytes:
        event = b"" if event_id is None else b',"event_id":' + json.dumps(event_id).encode()
        return b'%s,"source":{"topic":%s,"partition":%d,"offset":%d}%s}' % (
            self._head,
            self._topic,
            partition,
            offset,
            event,
        )


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    fallback_partition: int = 0  # for records without a key: the source partition
    partition: int | None = None  # this partition, whatever the key (the retry topic)


def dlq_headers(
    error_class: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    original: Sequence[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    """DLQ headers: the reason and the source; the original headers are kept after them."""
    return [
        ("error.class", error_class.encode()),
        ("error.message", message[:1000].encode("utf-8", "replace")),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
        *[(k, v) for k, v in original if not k.startswith(("error.", "source."))],
    ]


def record_size(record: OutRecord) -> int:
    return (
        len(record.key or b"")
        + len(record.value or b"")
        + sum(len(k) + len(v) + 8 for k, v in record.headers)
        + 64
    )


def fit(record: OutRecord, limit: int = RECORD_LIMIT) -> OutRecord:
    """The record cut to what a topic with default limits takes: a key over 1 KiB first,
    then the value, each noted in a `truncated.*` header with its original size. Only a
    dead letter of a message already near the broker's limit gets here; its source.*
    headers still point at the whole original."""
    if record_size(record) <= limit:
        return record
    key, value, headers = record.key, record.value, list(record.headers)
    if key is not None and len(key) > TEXT_LIMIT:
        headers.append(("truncated.key-bytes", str(len(key)).encode()))
        key = key[:TEXT_LIMIT]
    if value is not None and record_size(replace(record, key=key, headers=headers)) > limit:
        headers.append(("truncated.value-bytes", str(len(value)).encode()))
        over = record_size(replace(record, key=key, headers=headers)) - limit
        value = value[: max(0, len(value) - over)]
    return replace(record, key=key, value=value, headers=headers)


SMALL_SLOT = 64  # records per (topic, partition) below which a publish shares open batches


class Publisher:
    """Publishes records and returns once every one of them is acknowledged."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._key_partition: dict[tuple[str, bytes], int] = {}  # murmur2 is slow in Python

    @classmethod
    def create(cls, bootstrap_servers: str, **kwargs: Any) -> Publisher:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1 << 20,
            **kwargs,
        )
        return cls(producer)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def _partitions_for(self, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            found = await self._producer.partitions_for(topic)
            parts = self._partitions[topic] = sorted(found)
        return parts

    async def _partition_of(self, record: OutRecord) -> int:
        parts = await self._partitions_for(record.topic)
        if record.partition is not None:
            return record.partition
        if record.key is None:
            return parts[record.fallback_partition % len(parts)]
        slot_key = (record.topic, record.key)
        partition = self._key_partition.get(slot_key, -1)
        if partition < 0:
            if len(self._key_partition) > 200_000:
                self._key_partition.clear()
            partition = self._key_partition[slot_key] = self._partitioner(record.key, parts, parts)
        return partition

    async def _send_batches(
        self, topic: str, partition: int, records: list[OutRecord]
    ) -> list[asyncio.Future[Any]]:
        """A big slot in batches of its own (cheaper per record than one send each)."""
        sent = []
        batch = self._producer.create_batch()
        for r in records:
            headers = list(r.headers)
            if batch.append(key=r.key, value=r.value, timestamp=None, headers=headers) is None:
                sent.append(await self._producer.send_batch(batch, topic, partition=partition))
                batch = self._producer.create_batch()
                batch.append(key=r.key, value=r.value, timestamp=None, headers=headers)
        if batch.record_count():
            sent.append(await self._producer.send_batch(batch, topic, partition=partition))
        return sent

    async def publish(self, records: Sequence[OutRecord]) -> None:
        slots: dict[tuple[str, int], list[OutRecord]] = {}
        for record in map(fit, records):
            partition = await self._partition_of(record)
            slots.setdefault((record.topic, partition), []).append(record)
        sent: list[asyncio.Future[Any]] = []
        for (topic, partition), slot in slots.items():
            if len(slot) < SMALL_SLOT:
                # Into the partition's open batch, shared with every other small publish:
                # thousands of small flushes a second make a few requests, where a batch of
                # their own each would queue behind one another (one per partition in
                # flight) until they time out and are sent twice.
                for r in slot:
                    sent.append(
                        await self._producer.send(
                            topic, r.value, key=r.key, partition=partition, headers=list(r.headers)
                        )
                    )
            else:
                sent += await self._send_batches(topic, partition, slot)
        if sent:
            await asyncio.gather(*sent)
