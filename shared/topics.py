"""How the worker core names the topics around an input, and asks the broker about one.

Each input topic `T` has `T.results` (one result per message), `T.dlq` (what could not
be processed) and `T.retry` (messages of a blocked account, waiting). Input topics themselves are named by their services (services/registry.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code


def results_topic(input_topic: str) -> str:
    return f"{input_topic}.results"


def dlq_topic(input_topic: str) -> str:
    return f"{input_topic}.dlq"


def retry_topic(input_topic: str) -> str:
    """Where the messages of a blocked account wait (shared.worker.park): partition p holds
    what was parked from the input's partition p, so it has as many partitions."""
    return f"{input_topic}.retry"


class UnknownTopic(ValueError):
    """The broker has no topic of that name."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool = False


async def partitions_of(
    bootstrap_servers: str, topic: str, kafka: Mapping[str, Any] | None = None, wait_s: float = 0.0
) -> list[TopicPartition]:
    """The topic's partitions, asked of the broker; a topic created a moment ago may need
    up to `wait_s`. Raises UnknownTopic when the topic does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **dict(kafka or {}))
    await admin.start()
    deadline = time.monotonic() + wait_s
    try:
        while True:
            [described] = await admin.describe_topics([topic])
            parts = described.get("partitions") or []
            if parts:
                return sorted(TopicPartition(topic, p["partition"]) for p in parts)
            if time.monotonic() >= deadline:
                raise UnknownTopic(f"topic {topic!r} does not exist")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    kafka: Mapping[str, Any] | None = None,
    *,
    last: int | None = None,
    follow: bool = False,
    wait_s: float = 0.0,
    settled: bool = False,
) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """The topic's committed records (`read_committed`, no group) from the beginning, or the
    `last` N per partition, up to its end at the time of the call, or on and on (`follow`).

    The end is the last stable offset: a record committed after another producer's still
    open transaction began lies beyond it. `settled` reads to the high watermark instead,
    waiting until every transaction open at the time of the call has ended."""
    tps = await partitions_of(bootstrap_servers, topic, kafka, wait_s)
    consumer = await _reader(bootstrap_servers, kafka, "read_committed")
    try:
        consumer.assign(tps)
        if settled:
            ends = await _high_watermarks(bootstrap_servers, tps, kafka)
        else:
            ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - last) if last is not None else starts[tp])
        while True:
            if not follow and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                return
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    yield record
    finally:
        with suppress(asyncio.CancelledError):
            await consumer.stop()


async def _reader(
    bootstrap_servers: str, kafka: Mapping[str, Any] | None, isolation_level: str
) -> AIOKafkaConsumer:
    """A started consumer of no group, for reading by hand (assign, seek)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        **dict(kafka or {}),
    )
    await consumer.start()
    return consumer


async def _high_watermarks(
    bootstrap_servers: str, tps: list[TopicPartition], kafka: Mapping[str, Any] | None
) -> dict[TopicPartition, int]:
    # A read_committed consumer's end offsets are last stable offsets.
    consumer = await _reader(bootstrap_servers, kafka, "read_uncommitted")
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        with suppress(asyncio.CancelledError):
            await consumer.stop()


class RetryTopicError(RuntimeError):
    """The retry topic is missing and cannot be made, or does not match its input."""


async def ensure_retry_topic(
    bootstrap_servers: str, input_topic: str, kafka: Mapping[str, Any] | None = None
) -> str:
    """`<input>.retry` with the input's partition count, created (with the input's replication
    factor) when missing. A count that differs would break the partition-for-partition
    pairing, so it is an error, as is a topic the worker may not create."""
    retry = retry_topic(input_topic)
    inputs = await partitions_of(bootstrap_servers, input_topic, kafka, wait_s=5.0)
    try:
        have = await partitions_of(bootstrap_servers, retry, kafka)
    except UnknownTopic:
        have = []
    if have:
        if len(have) != len(inputs):
            raise RetryTopicError(
                f"topic {retry!r} has {len(have)} partitions but {input_topic!r} has "
                f"{len(inputs)}: they must match (recreate {retry!r} with {len(inputs)})"
            )
        return retry
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **dict(kafka or {}))
    await admin.start()
    try:
        [described] = await admin.describe_topics([input_topic])
        replicas = len(described["partitions"][0].get("replicas") or [1])
        response = await admin.create_topics([NewTopic(retry, len(inputs), replicas)])
        for _name, code, *_ in getattr(response, "topic_errors", ()):
            if code and code != TopicAlreadyExistsError.errno:  # another replica made it
                raise for_code(code)()
    except KafkaError as exc:
        raise RetryTopicError(
            f"topic {retry!r} does not exist and could not be created ({type(exc).__name__}); "
            f"create it with {len(inputs)} partitions, like {input_topic!r}"
        ) from None
    finally:
        await admin.close()
    await partitions_of(bootstrap_servers, retry, kafka, wait_s=10.0)
    return retry
