"""The project's Kafka topics, named once (DESIGN §3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

INPUT_TOPICS: tuple[str, ...] = (
    "product-upserts",
    "variant-updates",
    "invoice-uploads",
    "order-poll-ticks",
)
ORDERS_TOPIC = "orders"
# Compacted state: the order poller's durable cursor per (channel, account).
ORDER_CURSORS_TOPIC = "m2e-sync.order-cursors"


def results_topic(input_topic: str) -> str:
    return f"{input_topic}.results"


def dlq_topic(input_topic: str) -> str:
    return f"{input_topic}.dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    compacted: bool = False


def all_topics() -> list[TopicSpec]:
    """Every topic the stack creates: inputs, their results and DLQs, orders, state."""
    specs = [TopicSpec(t) for t in INPUT_TOPICS]
    specs += [TopicSpec(results_topic(t)) for t in INPUT_TOPICS]
    specs += [TopicSpec(dlq_topic(t)) for t in INPUT_TOPICS]
    specs.append(TopicSpec(ORDERS_TOPIC))
    specs.append(TopicSpec(ORDER_CURSORS_TOPIC, compacted=True))
    return specs


async def partitions_of(
    bootstrap_servers: str, topic: str, kafka: Mapping[str, Any] | None = None, wait_s: float = 0.0
) -> list[TopicPartition]:
    """The topic's partitions, asked of the broker; a topic created a moment ago may need
    up to `wait_s`. Raises ValueError when the topic does not exist."""
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
                raise ValueError(f"topic {topic!r} does not exist")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
