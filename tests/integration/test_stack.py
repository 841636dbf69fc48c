"""The stack is real: a Kafka 4.x broker any client can use, and a Redis server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.registry import all_topics

from .fixtures import TopicFactory


async def _consume(
    bootstrap: str, topic: str, n: int, group: str | None = None, commit: bool = False
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=500, max_records=n - len(got))
                for records in batch.values():
                    got += [r.value for r in records if r.value is not None]
        if commit:
            await consumer.commit()
        return got
    finally:
        await consumer.stop()


async def test_broker_is_kafka_4_with_the_project_topics(bootstrap_servers: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        topics = set(await admin.list_topics())
        versions = admin._client.cluster
        assert versions.brokers(), "the broker answered a metadata request"
    finally:
        await admin.close()
    assert {t.name for t in all_topics()} <= topics


async def test_produce_and_consume(bootstrap_servers: str, new_topic: TopicFactory) -> None:
    topic = await new_topic("roundtrip")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
    finally:
        await producer.stop()
    assert await _consume(bootstrap_servers, topic, 10) == [f"m{i}".encode() for i in range(10)]


async def test_group_commit_is_resumed_by_a_fresh_consumer(
    bootstrap_servers: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("resume")
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, f"m{i}".encode())
    finally:
        await producer.stop()

    # First consumer reads 3 and commits exactly offset 3 for the partition.
    first = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await first.start()
    tp = TopicPartition(topic, 0)
    try:
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < 3:
                batch = await first.getmany(timeout_ms=500, max_records=3 - len(got))
                got += [r.value for rs in batch.values() for r in rs if r.value is not None]
        await first.commit({tp: 3})
        assert await first.committed(tp) == 3
    finally:
        await first.stop()

    rest = await _consume(bootstrap_servers, topic, 3, group=group)
    assert rest == [b"m3", b"m4", b"m5"]


async def test_redis_round_trip(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        key = f"test:{uuid.uuid4().hex}"
        await client.set(key, "v", ex=30)
        assert await client.get(key) == b"v"
        # Server time is what the shared limiter relies on.
        seconds, _micros = await client.time()
        assert seconds > 1_700_000_000
        await client.delete(key)
    finally:
        await client.aclose()


async def test_kcat_and_aiokafka_interoperate(
    bootstrap_servers: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("kcat")
    # kcat (librdkafka, a client nobody here wrote) produces; aiokafka consumes.
    done = subprocess.run(
        ["kcat", "-b", bootstrap_servers, "-P", "-t", topic, "-K", ":"],
        input=b"sku-1:from-kcat\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert await _consume(bootstrap_servers, topic, 1) == [b"from-kcat"]

    # aiokafka produces; kcat consumes.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"from-aiokafka", key=b"sku-2")
    finally:
        await producer.stop()
    out = subprocess.run(
        [
            "kcat",
            "-b",
            bootstrap_servers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["sku-1=from-kcat", "sku-2=from-aiokafka"]


def test_stack_up_again_is_idempotent_and_status_reports_it() -> None:
    cli = [sys.executable, "-m", "services.cli", "stack"]
    again = subprocess.run([*cli, "up"], capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "kafka  already running" in again.stdout
    assert "redis  already running" in again.stdout
    assert "0 created" in again.stdout
    status = subprocess.run(
        [*cli, "status"], capture_output=True, text=True, timeout=30, check=False
    )
    assert status.returncode == 0
    lines = status.stdout.splitlines()
    assert lines[0].startswith("kafka") and "running (pid" in lines[0]
    assert lines[1].startswith("redis") and "running (pid" in lines[1]
