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
