"""The worker core under adversity, against the real broker and the sandbox: each test is
named after the scenario it reproduces."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.variant_sync import VariantSync
from shared.bootstrap import build_parts

from .harness import (
    ACCT_A,
    CREDENTIALS,
    TOKEN_A,
    create_topics,
    produce,
    read_all,
    sandbox_config,
    update,
    wait_all_committed,
    worker_settings,
)


async def test_a_partition_whose_tail_is_a_transaction_marker_releases_its_items(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    """An upstream producer with transactions (Kafka Streams, Connect exactly-once): the
    partition ends with a commit marker, then aborted data and an abort marker. The end
    offset at assignment is past the last record the consumer will ever see."""
    sandbox = await sandbox_server(sandbox_config())
    skus = [f"TX{i}" for i in range(5)]
    await sandbox.seed_variants(TOKEN_A, skus)
    topic = await create_topics(bootstrap_servers, "variant-updates", partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, transactional_id=f"it-tx-{uuid.uuid4().hex[:6]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for key, value in [update(ACCT_A, s, price=9.25) for s in skus]:
                await producer.send(topic, json.dumps(value).encode(), key=key.encode())
        await producer.begin_transaction()
        await producer.send(
            topic, json.dumps(update(ACCT_A, "TX0", price=1.0)[1]).encode(), key=b"TX0"
        )
        await producer.abort_transaction()
    finally:
        await producer.stop()

    settings = worker_settings(bootstrap_servers, sandbox.base_url, topic, tmp_path)
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = await read_all(bootstrap_servers, f"{topic}.results", 5, timeout_s=20)
        assert len(results) == 5, "items stayed held behind the transaction marker"
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=20)
    finally:
        await parts.worker.stop()
    assert all(sandbox.variant(TOKEN_A, s)["price"] == 9.25 for s in skus)  # type: ignore[index]


async def test_a_misbehaving_gateway_never_loses_an_update_nor_fakes_an_ok(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    """HTML 502s, 200s whose body is a gateway's page or cut short, garbage rate-limit
    headers: half the requests. Every update still lands, each result is an honest ok,
    nothing goes to the DLQ as poison."""
    faults = {
        "html_error_rate": 0.15,
        "malformed_body_rate": 0.15,
        "truncated_body_rate": 0.1,
        "bad_ratelimit_headers_rate": 0.1,
        "seed": 5,
    }
    sandbox = await sandbox_server(sandbox_config(faults=faults))
    skus = [f"MB{i:03d}" for i in range(200)]
    await sandbox.seed_variants(TOKEN_A, skus)
    topic = await create_topics(bootstrap_servers, "variant-updates")
    await produce(
        bootstrap_servers,
        topic,
        [update(ACCT_A, s, price=float(i + 1)) for i, s in enumerate(skus)],
    )
    settings = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        topic,
        tmp_path,
        batch_max_items=20,
        m2e_retry_attempts=10,
        m2e_retry_base_s=0.01,
        m2e_retry_cap_s=0.05,
        failure_backoff_cap_s=0.5,
    )
    parts = build_parts(VariantSync(set(CREDENTIALS)), settings)
    await parts.worker.start()
    try:
        results = await read_all(bootstrap_servers, f"{topic}.results", len(skus), timeout_s=60)
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=30)
    finally:
        await parts.worker.stop()
    assert sorted(json.loads(r.value)["status"] for r in results) == ["ok"] * len(skus)
    assert await read_all(bootstrap_servers, f"{topic}.dlq", 1, timeout_s=2) == []
    for i, sku in enumerate(skus):
        assert sandbox.variant(TOKEN_A, sku)["price"] == float(i + 1)  # type: ignore[index]
    codes = {code for r in sandbox.requests() for code in [r["status"]]}
    assert {502, 200} <= codes  # the faults did happen
    malformed = parts.metrics.api_requests.labels(
        "variant-sync", ACCT_A, "PATCH /catalog/product/variant/", "malformed"
    )._value.get()
    assert malformed > 0
