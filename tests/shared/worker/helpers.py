"""A Worker over variant-sync with no broker: a recording publisher, a budget set by hand,
and a clock moved by hand."""

from __future__ import annotations

import json
from typing import Any

import httpx
from aiokafka import ConsumerRecord, TopicPartition

from services.variant_sync import VariantSync
from shared.clock import Clock
from shared.config import load_settings
from shared.m2e.client import Credentials, M2EClient
from shared.metrics import Metrics
from shared.results import Publisher
from shared.service import Service
from shared.worker import Worker
from tests.shared.fakes import FakeLimiter

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"
TP = TopicPartition("variant-updates", 0)


class NullPublisher(Publisher):
    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, records: Any) -> None:
        self.published += records

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rec(
    offset: int,
    account: str,
    sku: str,
    price: float,
    tp: TopicPartition = TP,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    """A variant update of `account` as the consumer hands it over."""
    value = json.dumps({"account_token": account, "sku": sku, "price": price}).encode()
    return ConsumerRecord(
        tp.topic,
        tp.partition,
        offset,
        0,
        0,
        sku.encode(),
        value,
        None,
        len(sku),
        len(value),
        headers or [],
    )


def record(
    offset: int, sku: str, price: float, tp: TopicPartition = TP
) -> ConsumerRecord[bytes, bytes]:
    return rec(offset, ACCT, sku, price, tp)


def worker(
    budget: FakeLimiter | None = None,
    clock: Clock | None = None,
    service: Service | None = None,
    publisher: Publisher | None = None,
    credentials: Credentials | None = None,
    **settings: Any,
) -> Worker:
    s = load_settings(**{"batch_max_items": 2, **settings})
    client = M2EClient(
        "http://x",
        credentials or Credentials({ACCT: "t"}),
        budget or FakeLimiter(),
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
    )
    return Worker(
        service or VariantSync({ACCT}),
        s,
        client,
        publisher or NullPublisher(),
        Metrics("variant-sync"),
        clock=clock or HandClock(),
    )
